//go:build linux

package process

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/sandbox/capture"
)

// killTimeout bounds how long killing a sandbox's processes may take.
const killTimeout = 5 * time.Second

// outputGrace is how long output is still read after every process of the
// sandbox is gone (only a process that escaped the sandbox could hold the
// pipe open longer).
const outputGrace = time.Second

// handle is one execution. Its run goroutine owns the process: it waits for
// it, reaps it, builds the result and cleans up.
type handle struct {
	sb        *Sandbox
	spec      sandbox.Spec
	limits    groupLimits
	group     *execGroup // nil without cgroups
	proc      *os.Process
	pid       int
	startedAt time.Time
	timer     *time.Timer

	out     *capture.Buffer
	outR    *os.File
	outDone chan struct{}

	execDone chan struct{} // closed once the agent was exec'd or could not be
	done     chan struct{} // closed once result is final

	mu           sync.Mutex
	execErr      string         // the helper's failure message
	intent       sandbox.Reason // why we ended it, if we did
	intentDetail string
	exited       bool
	result       sandbox.Result

	sigMu  sync.Mutex // held while signalling, so a reaped pid is never signalled
	reaped bool
}

func newHandle(s *Sandbox, spec sandbox.Spec, p plan) *handle {
	return &handle{
		sb:       s,
		spec:     spec,
		limits:   p.limits,
		out:      capture.New(spec.OutputLimit),
		outDone:  make(chan struct{}),
		execDone: make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// discard undoes what launch did before the helper started.
func (h *handle) discard() {
	if h.group != nil {
		h.group.remove(context.Background())
	}
}

// armDeadline kills the execution at deadline with ReasonTimeout.
func (h *handle) armDeadline(deadline time.Time) {
	if deadline.IsZero() {
		return
	}
	d := time.Until(deadline)
	detail := fmt.Sprintf("deadline passed after %s of wall-clock time", d.Round(time.Millisecond))
	h.timer = time.AfterFunc(d, func() { h.terminate(sandbox.ReasonTimeout, detail) })
}

func (h *handle) readOutput() {
	defer close(h.outDone)
	defer h.outR.Close()
	copyOutput(h.out, h.outR)
}

// run follows the execution from exec to cleanup.
func (h *handle) run(status *os.File) {
	msg := readStatus(status)
	h.mu.Lock()
	h.execErr = msg
	h.mu.Unlock()
	close(h.execDone)

	waitExited(h.pid) // the zombie keeps the pid and process group reserved
	h.mu.Lock()
	h.exited = true
	h.mu.Unlock()
	if h.timer != nil {
		h.timer.Stop()
	}
	// Execution is existence: nothing the agent left behind keeps running.
	h.killAll()
	h.sigMu.Lock()
	h.reaped = true
	h.sigMu.Unlock()
	state, err := h.proc.Wait()
	ended := time.Now()
	h.awaitOutput()

	var u groupUsage
	if h.group != nil {
		u = h.group.usage()
	}
	res := h.buildResult(state, err, u)
	res.EndedAt = ended
	h.cleanup()
	h.mu.Lock()
	h.result = res
	h.mu.Unlock()
	close(h.done)
	h.sb.log.Debug("execution ended", "execution_id", h.spec.ExecutionID, "reason", res.Reason,
		"exit_code", res.ExitCode, "cpu_seconds", res.CPUSeconds, "detail", res.Detail)
}

// waitExited blocks until pid has exited, without reaping it.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// awaitOutput lets the output reader drain, then stops it.
func (h *handle) awaitOutput() {
	t := time.NewTimer(outputGrace)
	defer t.Stop()
	select {
	case <-h.outDone:
	case <-t.C:
		h.sb.log.Warn("sandbox output still open after its processes ended", "execution_id", h.spec.ExecutionID)
		h.outR.Close() // unblocks the reader
		<-h.outDone
	}
}

// cleanup removes the execution's cgroup and pid file.
func (h *handle) cleanup() {
	if h.group != nil {
		ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		if err := h.group.remove(ctx); err != nil {
			h.sb.log.Warn("cannot remove sandbox cgroup", "execution_id", h.spec.ExecutionID, "err", err)
		}
		cancel()
	}
	h.sb.removePidFile(h.spec.ExecutionID)
	h.sb.unregister(h.spec.ExecutionID)
}

// setIntent records why we are ending the execution; the first reason wins
// and nothing is recorded once the process has exited by itself.
func (h *handle) setIntent(reason sandbox.Reason, detail string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.intent == "" && !h.exited {
		h.intent, h.intentDetail = reason, detail
	}
}

// terminate ends the execution at once for reason.
func (h *handle) terminate(reason sandbox.Reason, detail string) {
	h.setIntent(reason, detail)
	h.killAll()
}

// killAll SIGKILLs every process of the sandbox: the process group, the
// PID namespace's init (which takes the namespace with it) and every
// process in the cgroup.
func (h *handle) killAll() {
	h.sigMu.Lock()
	defer h.sigMu.Unlock()
	if h.reaped {
		return
	}
	syscall.Kill(-h.pid, syscall.SIGKILL)
	syscall.Kill(h.pid, syscall.SIGKILL)
	if h.group != nil {
		ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		defer cancel()
		if err := h.group.kill(ctx); err != nil {
			h.sb.log.Warn("cannot empty sandbox cgroup", "execution_id", h.spec.ExecutionID, "err", err)
		}
	}
}

// signal sends sig to the process group and every process in the cgroup.
func (h *handle) signal(sig syscall.Signal) {
	h.sigMu.Lock()
	defer h.sigMu.Unlock()
	if h.reaped {
		return
	}
	syscall.Kill(-h.pid, sig)
	if h.group != nil {
		pids, _ := h.group.procs()
		for _, pid := range pids {
			syscall.Kill(pid, sig)
		}
	}
}

// Wait implements sandbox.Handle.
func (h *handle) Wait(ctx context.Context) (sandbox.Result, error) {
	select {
	case <-h.done:
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.result, nil
	case <-ctx.Done():
		return sandbox.Result{}, ctx.Err()
	}
}

// Stop implements sandbox.Handle: SIGTERM, then SIGKILL after grace.
// An agent that is its PID namespace's init only receives SIGTERM when it
// has installed a handler for it.
func (h *handle) Stop(ctx context.Context, grace time.Duration) error {
	h.setIntent(sandbox.ReasonKilled, fmt.Sprintf("stopped on request (SIGTERM, SIGKILL after %s)", grace))
	h.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-h.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	h.killAll()
	return h.waitDone(ctx)
}

// Kill implements sandbox.Handle.
func (h *handle) Kill(ctx context.Context) error {
	h.terminate(sandbox.ReasonKilled, "killed on request")
	return h.waitDone(ctx)
}

func (h *handle) waitDone(ctx context.Context) error {
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for execution %s to end: %w", h.spec.ExecutionID, ctx.Err())
	}
}

// Inspect implements sandbox.Handle. Memory is the current use while
// running and the peak once ended.
func (h *handle) Inspect(ctx context.Context) (sandbox.Status, error) {
	if err := ctx.Err(); err != nil {
		return sandbox.Status{}, err
	}
	select {
	case <-h.done:
		h.mu.Lock()
		defer h.mu.Unlock()
		return sandbox.Status{CPUSeconds: h.result.CPUSeconds, Memory: h.result.PeakMemory}, nil
	default:
	}
	st := sandbox.Status{Running: true}
	if h.group != nil {
		u := h.group.usage()
		st.CPUSeconds, st.Memory = u.cpuSeconds, u.memory
		return st, nil
	}
	h.sigMu.Lock()
	defer h.sigMu.Unlock()
	if !h.reaped {
		st.CPUSeconds, st.Memory = procUsage(h.pid)
	}
	return st, nil
}

// procUsage reads a process's CPU seconds and resident memory from /proc.
func procUsage(pid int) (float64, int64) {
	var cpu float64
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		f := statFields(string(data))
		if len(f) > 12 {
			ut, _ := strconv.ParseFloat(f[11], 64)
			st, _ := strconv.ParseFloat(f[12], 64)
			cpu = (ut + st) / clockTicks
		}
	}
	var rss int64
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for line := range strings.Lines(string(data)) {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				rss = kb << 10
			}
		}
	}
	return cpu, rss
}

// clockTicks is USER_HZ, fixed at 100 on Linux.
const clockTicks = 100

// statFields returns the fields of /proc/<pid>/stat after the command name,
// starting with the state (field 3).
func statFields(stat string) []string {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(stat[i+1:])
}
