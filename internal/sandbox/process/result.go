//go:build linux

package process

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bpagents/bpagents/internal/sandbox"
)

// buildResult turns the reaped process and the cgroup's accounting into a
// Result (everything but EndedAt).
func (h *handle) buildResult(state *os.ProcessState, waitErr error, u groupUsage) sandbox.Result {
	r := sandbox.Result{
		StartedAt:     h.startedAt,
		Output:        h.out.Bytes(),
		OutputDropped: h.out.Dropped(),
	}
	if waitErr != nil || state == nil {
		r.Reason, r.ExitCode = sandbox.ReasonError, -1
		r.Detail = fmt.Sprintf("wait for the agent process: %v", waitErr)
		return r
	}
	ws, _ := state.Sys().(syscall.WaitStatus)
	r.ExitCode = exitCode(ws)
	ru, _ := state.SysUsage().(*syscall.Rusage)
	switch {
	case u.hasCPU:
		r.CPUSeconds = u.cpuSeconds
	case ru != nil:
		r.CPUSeconds = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
	}
	switch {
	case u.peak > 0:
		r.PeakMemory = u.peak
	case ru != nil:
		r.PeakMemory = ru.Maxrss << 10 // kilobytes on Linux
	}
	r.Reason, r.Detail = h.reason(ws, r.ExitCode, u)
	return r
}

// reason decides why the execution ended. Our own decisions (exec failure,
// deadline, stop, kill) come first, then the kernel's OOM killer, then the
// agent's own exit.
func (h *handle) reason(ws syscall.WaitStatus, code int, u groupUsage) (sandbox.Reason, string) {
	h.mu.Lock()
	execErr, intent, detail := h.execErr, h.intent, h.intentDetail
	h.mu.Unlock()
	switch {
	case execErr != "":
		return sandbox.ReasonError, execErr
	case intent != "":
		return intent, detail
	}
	oom := u.oomKills > 0 || u.failcnt > 0 && ws.Signaled() && ws.Signal() == syscall.SIGKILL
	limit := formatBytes(h.limits.memory)
	switch {
	case oom && code != 0:
		return sandbox.ReasonOOM, fmt.Sprintf("killed by the kernel: memory limit of %s exceeded", limit)
	case oom:
		return sandbox.ReasonExited, fmt.Sprintf("a process of the agent was killed for exceeding the memory limit of %s", limit)
	case ws.Signaled():
		return sandbox.ReasonExited, h.signalDetail(ws.Signal())
	case code != 0 && h.group == nil && h.limits.memory > 0:
		return sandbox.ReasonExited, fmt.Sprintf("exited with code %d; memory is capped at %s by an address-space rlimit "+
			"(no cgroups here), so an allocation beyond it fails inside the agent rather than being reported as oom", code, limit)
	}
	return sandbox.ReasonExited, ""
}

func (h *handle) signalDetail(sig syscall.Signal) string {
	d := fmt.Sprintf("terminated by signal %s (%d), not sent by the sandbox", unix.SignalName(sig), int(sig))
	switch {
	case sig == syscall.SIGXCPU || sig == syscall.SIGKILL && h.group == nil:
		d += "; the CPU-time rlimit backstop sends SIGXCPU and then SIGKILL"
	case sig == syscall.SIGSEGV || sig == syscall.SIGBUS:
		d += "; the agent crashed"
	}
	return d
}

// exitCode is the exit status, or 128+signal for a killed process.
func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// formatBytes renders a byte count for humans ("64 MiB").
func formatBytes(n int64) string {
	switch {
	case n <= 0:
		return "none"
	case n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
