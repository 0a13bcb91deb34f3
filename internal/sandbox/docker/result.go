package docker

import (
	"errors"
	"fmt"

	"github.com/bpagents/bpagents/internal/sandbox"
)

// buildResult turns the container's exit, state and usage into a Result
// (everything but EndedAt).
func (h *handle) buildResult(code int, waitErr error, oom bool, stateErr error, u usage) sandbox.Result {
	r := sandbox.Result{
		ExitCode:      code,
		StartedAt:     h.startedAt,
		Output:        h.out.Bytes(),
		OutputDropped: h.out.Dropped(),
		CPUSeconds:    u.cpuSeconds,
		PeakMemory:    u.peak,
	}
	h.mu.Lock()
	intent, detail := h.intent, h.intentDetail
	h.mu.Unlock()
	limit := formatBytes(h.limits.Memory)
	switch {
	case errors.Is(waitErr, errGone) || errors.Is(stateErr, errGone):
		r.Reason, r.Detail = sandbox.ReasonKilled, errGone.Error()
	case waitErr != nil:
		r.Reason, r.Detail = sandbox.ReasonError, "wait for the container: "+waitErr.Error()
	case intent != "":
		r.Reason, r.Detail = intent, detail
	case stateErr != nil:
		r.Reason, r.Detail = sandbox.ReasonExited, "exit state unknown: "+stateErr.Error()
	case oom && code != 0:
		r.Reason, r.Detail = sandbox.ReasonOOM, fmt.Sprintf("killed by the kernel: memory limit of %s exceeded", limit)
	case oom:
		r.Reason, r.Detail = sandbox.ReasonExited, fmt.Sprintf("a process of the agent was killed for exceeding the memory limit of %s", limit)
	case code > 128 && code < 128+65:
		r.Reason, r.Detail = sandbox.ReasonExited, fmt.Sprintf("terminated by signal %d, not sent by the sandbox", code-128)
	default:
		r.Reason = sandbox.ReasonExited
	}
	return r
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
