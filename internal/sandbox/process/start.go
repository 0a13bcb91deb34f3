//go:build linux

package process

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/sandbox/capture"
	"github.com/bpagents/bpagents/internal/sandbox/ownership"
)

// plan is everything Start derived from a Spec before launching.
type plan struct {
	limits   groupLimits
	uid, gid int // -1: the agent keeps this process's identity
	deadline time.Time
	init     initConfig
}

// Start implements sandbox.ExecutionSandbox. It returns once the agent's
// program has been exec'd inside its limits; a command that cannot be
// exec'd gives a handle whose result is ReasonError.
func (s *Sandbox) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := s.plan(spec)
	if err != nil {
		return nil, fmt.Errorf("process sandbox: %w", err)
	}
	h := newHandle(s, spec, p)
	if err := s.register(spec.ExecutionID, h); err != nil {
		return nil, fmt.Errorf("process sandbox: %w", err)
	}
	if err := s.launch(h, p); err != nil {
		s.unregister(spec.ExecutionID)
		return nil, fmt.Errorf("process sandbox: start %s: %w", spec.ExecutionID, err)
	}
	select {
	case <-h.execDone:
		return h, nil
	case <-ctx.Done():
		h.terminate(sandbox.ReasonKilled, "start cancelled")
		return nil, fmt.Errorf("process sandbox: start %s: %w", spec.ExecutionID, ctx.Err())
	}
}

// plan validates spec and works out limits, identity and the helper's config.
func (s *Sandbox) plan(spec sandbox.Spec) (plan, error) {
	if err := checkName("ExecutionID", spec.ExecutionID); err != nil {
		return plan{}, err
	}
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return plan{}, fmt.Errorf("execution %s: empty command", spec.ExecutionID)
	}
	if err := ownership.CheckDir(spec.Workspace); err != nil {
		return plan{}, err
	}
	l := spec.Limits
	if l.CPUMillis < 0 || l.MemoryBytes < 0 || l.Duration < 0 || l.MaxProcs < 0 {
		return plan{}, fmt.Errorf("execution %s: negative limit in %+v", spec.ExecutionID, l)
	}
	env, err := agentEnv(spec)
	if err != nil {
		return plan{}, err
	}
	p := plan{uid: -1, gid: -1, deadline: spec.Deadline}
	if p.deadline.IsZero() && l.Duration > 0 {
		p.deadline = time.Now().Add(l.Duration)
	}
	if !p.deadline.IsZero() && !time.Now().Before(p.deadline) {
		return plan{}, fmt.Errorf("execution %s: deadline %s has already passed", spec.ExecutionID, p.deadline)
	}
	procs := l.MaxProcs
	if procs == 0 {
		procs = s.cfg.MaxProcs
	}
	p.limits = groupLimits{memory: l.MemoryBytes, cpuMillis: l.CPUMillis, procs: max(procs, minProcs)}
	if s.uids {
		uid := int64(s.cfg.UIDBase) + spec.AgentNum
		if spec.AgentNum < 0 || uid > maxUID {
			return plan{}, fmt.Errorf("execution %s: AgentNum %d gives no valid uid", spec.ExecutionID, spec.AgentNum)
		}
		p.uid, p.gid = int(uid), int(uid)
	}
	p.init = initConfig{
		Namespaces: s.ns,
		Hostname:   agentHostname(spec.AgentID),
		UID:        p.uid,
		GID:        p.gid,
		Dir:        spec.Workspace,
		Argv:       slices.Clone(spec.Command),
		Env:        env,
		Rlimits:    s.rlimits(p, l),
	}
	return p, nil
}

// agentEnv is spec.Env plus PATH, HOME and LANG, which the backend owns.
func agentEnv(spec sandbox.Spec) ([]string, error) {
	env := make([]string, 0, len(spec.Env)+3)
	for k, v := range spec.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
			return nil, fmt.Errorf("execution %s: invalid environment variable %q", spec.ExecutionID, k)
		}
		if k == "PATH" || k == "HOME" || k == "LANG" {
			continue
		}
		env = append(env, k+"="+v)
	}
	env = append(env, "PATH="+agentPATH, "HOME="+spec.Workspace, "LANG=C.UTF-8")
	slices.Sort(env)
	return env, nil
}

// rlimits are always a core-dump ban and a CPU-time backstop; without
// cgroups they also carry the memory and process limits.
func (s *Sandbox) rlimits(p plan, l sandbox.Limits) []rlimit {
	rl := []rlimit{{Resource: unix.RLIMIT_CORE}}
	wall := l.Duration
	if wall == 0 && !p.deadline.IsZero() {
		wall = time.Until(p.deadline)
	}
	if wall > 0 {
		cores := float64(runtime.NumCPU())
		if l.CPUMillis > 0 {
			cores = float64(l.CPUMillis) / 1000
		}
		sec := uint64(math.Ceil(cores*wall.Seconds())) + 1
		rl = append(rl, rlimit{Resource: unix.RLIMIT_CPU, Cur: sec, Max: sec + 1})
	}
	if s.tree != nil {
		return rl
	}
	if l.MemoryBytes > 0 {
		m := uint64(l.MemoryBytes)
		rl = append(rl, rlimit{Resource: unix.RLIMIT_AS, Cur: m, Max: m})
	}
	if n := nprocLimit(p.uid, p.limits.procs); n > 0 {
		rl = append(rl, rlimit{Resource: unix.RLIMIT_NPROC, Cur: n, Max: n})
	}
	return rl
}

// nprocLimit turns a process limit into RLIMIT_NPROC, which counts every
// task of the agent's real uid on the whole host. With a uid of its own the
// agent gets exactly procs. Sharing this process's uid it gets procs on top
// of what the uid already runs (an approximation). The kernel ignores the
// limit for root, so none is set then.
func nprocLimit(agentUID int, procs int64) uint64 {
	if agentUID >= 0 {
		return uint64(procs)
	}
	uid := os.Getuid()
	if uid == 0 {
		return 0
	}
	return uint64(countTasks(uid) + procs)
}

// countTasks counts the threads whose real uid is uid.
func countTasks(uid int) int64 {
	entries, _ := os.ReadDir("/proc")
	var n int64
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		var realUID, threads int64 = -1, 0
		for line := range strings.Lines(string(data)) {
			if v, ok := strings.CutPrefix(line, "Uid:"); ok {
				fmt.Sscan(v, &realUID)
			} else if v, ok := strings.CutPrefix(line, "Threads:"); ok {
				fmt.Sscan(v, &threads)
			}
		}
		if realUID == int64(uid) {
			n += threads
		}
	}
	return n
}

// launch prepares the workspace and cgroup, starts the helper, puts it in
// the cgroup, records it and lets it proceed.
func (s *Sandbox) launch(h *handle, p plan) error {
	if p.uid >= 0 {
		if err := ownership.Give(h.spec.Workspace, p.uid, p.gid); err != nil {
			return err
		}
	}
	if s.tree != nil {
		g, err := s.tree.create(h.spec.ExecutionID)
		if err != nil {
			return err
		}
		h.group = g
		if err := g.setLimits(p.limits); err != nil {
			g.remove(context.Background())
			return err
		}
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		h.discard()
		return fmt.Errorf("output pipe: %w", err)
	}
	hp, err := s.spawnHelper(s.ns, outW)
	outW.Close()
	if err != nil {
		outR.Close()
		h.discard()
		return err
	}
	h.proc, h.pid, h.startedAt = hp.proc, hp.proc.Pid, time.Now()
	if h.group != nil {
		if err := h.group.add(h.pid); err != nil {
			hp.abort()
			outR.Close()
			h.discard()
			return err
		}
	}
	s.writePidFile(h.spec.ExecutionID, h.pid)
	h.armDeadline(p.deadline)
	h.outR = outR
	go h.readOutput()
	go h.run(hp.status)
	if err := sendConfig(hp.config, p.init); err != nil {
		h.terminate(sandbox.ReasonError, err.Error())
	}
	return nil
}

// helperProc is a started init helper waiting for its config.
type helperProc struct {
	proc   *os.Process
	config *os.File // write end: the config, then EOF, lets it proceed
	status *os.File // read end: EOF without data means the agent was exec'd
}

// spawnHelper starts SelfExe as the init helper with out as its stdout and
// stderr. It blocks reading its config until sendConfig.
func (s *Sandbox) spawnHelper(ns bool, out *os.File) (*helperProc, error) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer devnull.Close()
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("config pipe: %w", err)
	}
	defer cfgR.Close()
	stR, stW, err := os.Pipe()
	if err != nil {
		cfgW.Close()
		return nil, fmt.Errorf("status pipe: %w", err)
	}
	defer stW.Close()
	sys := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if ns {
		sys.Cloneflags = syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS
	}
	proc, err := os.StartProcess(s.cfg.SelfExe, []string{s.cfg.SelfExe, initMarker}, &os.ProcAttr{
		Dir:   "/",
		Env:   []string{"GOMAXPROCS=1", helperEnvVar + "=1"},
		Files: []*os.File{devnull, out, out, cfgR, stW},
		Sys:   sys,
	})
	if err != nil {
		cfgW.Close()
		stR.Close()
		return nil, fmt.Errorf("start init helper %s: %w", s.cfg.SelfExe, err)
	}
	return &helperProc{proc: proc, config: cfgW, status: stR}, nil
}

// handshake sends cfg and returns what the helper reported on its status
// fd. The caller kills the helper when ctx ends, which ends the read.
func (hp *helperProc) handshake(ctx context.Context, cfg initConfig) (string, error) {
	if err := sendConfig(hp.config, cfg); err != nil {
		return "", err
	}
	msg := readStatus(hp.status)
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("init helper: %w", err)
	}
	return msg, nil
}

// abort kills a helper that never got its config and reaps it.
func (hp *helperProc) abort() {
	hp.proc.Kill()
	hp.config.Close()
	hp.status.Close()
	hp.proc.Wait()
}

// sendConfig writes cfg to the helper and closes the pipe, which is the
// helper's signal to proceed.
func sendConfig(w *os.File, cfg initConfig) error {
	data, err := json.Marshal(cfg)
	if err == nil {
		_, err = w.Write(data)
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("send config to init helper: %w", err)
	}
	return nil
}

// readStatus reads the helper's status fd to EOF: nothing means the agent
// was exec'd, anything else is the helper's error message.
func readStatus(f *os.File) string {
	defer f.Close()
	data, _ := io.ReadAll(io.LimitReader(f, 4096))
	return string(data)
}

// copyOutput copies r into out until r ends or is closed.
func copyOutput(out *capture.Buffer, r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			return
		}
	}
}
