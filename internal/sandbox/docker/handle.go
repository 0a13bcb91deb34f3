package docker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"

	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/sandbox/capture"
)

const (
	// engineTimeout bounds one engine call made on the execution's behalf
	// (kill, inspect, remove).
	engineTimeout = 15 * time.Second
	// waitSlack is how long past its deadline the engine may take to report
	// a killed container's exit before the execution is ended as an error.
	waitSlack = 30 * time.Second
	// outputGrace is how long output is still read after the container
	// exited.
	outputGrace = time.Second
)

// errGone says the container was removed behind this sandbox's back (by
// another backend of the same instance reaping orphans, or by hand).
var errGone = errors.New("the container was removed outside this sandbox")

// handle is one execution. Its run goroutine owns the container: it waits
// for it, reads its state and usage, builds the result and removes it.
type handle struct {
	sb        *Sandbox
	spec      sandbox.Spec
	limits    container.Resources
	id        string
	startedAt time.Time
	timer     *time.Timer

	out     *capture.Buffer
	attach  types.HijackedResponse
	outDone chan struct{}
	stats   *statsSample // nil with cgroup accounting
	done    chan struct{}

	mu           sync.Mutex
	intent       sandbox.Reason // why we ended it, if we did
	intentDetail string
	exited       bool
	result       sandbox.Result
}

func newHandle(s *Sandbox, spec sandbox.Spec, p plan) *handle {
	h := &handle{
		sb:      s,
		spec:    spec,
		limits:  p.host.Resources,
		out:     capture.New(spec.OutputLimit),
		outDone: make(chan struct{}),
		done:    make(chan struct{}),
	}
	if s.acct == nil {
		h.stats = &statsSample{}
	}
	return h
}

// engineCtx is a fresh bounded context for one engine call.
func engineCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), engineTimeout)
}

// discard removes a container that never ran.
func (h *handle) discard() {
	ctx, cancel := engineCtx()
	defer cancel()
	h.sb.cli.ContainerRemove(ctx, h.id, container.RemoveOptions{Force: true})
	if h.sb.acct != nil {
		h.sb.acct.remove(h.spec.ExecutionID)
	}
}

// armDeadline kills the execution at deadline with ReasonTimeout.
func (h *handle) armDeadline(deadline time.Time) {
	if deadline.IsZero() {
		return
	}
	d := time.Until(deadline)
	detail := fmt.Sprintf("deadline passed %s after the container started", d.Round(time.Millisecond))
	if d <= 0 {
		detail = fmt.Sprintf("the deadline had passed %s before the container started: the engine was slow to start it",
			(-d).Round(time.Millisecond))
	}
	h.timer = time.AfterFunc(d, func() { h.terminate(sandbox.ReasonTimeout, detail) })
}

// run follows the execution from start to removal.
func (h *handle) run(deadline time.Time) {
	code, waitErr := h.wait(deadline)
	ended := time.Now()
	h.mu.Lock()
	h.exited = true
	h.mu.Unlock()
	if h.timer != nil {
		h.timer.Stop()
	}
	h.awaitOutput()
	oom, stateErr := h.state()
	u := h.usage()
	if !oom && code == 137 && stateErr == nil && !h.intended() {
		oom = h.oomAfterAll(u)
	}
	if h.cleanup() && stateErr == nil {
		stateErr = errGone
	}
	res := h.buildResult(code, waitErr, oom, stateErr, u)
	res.EndedAt = ended
	h.mu.Lock()
	h.result = res
	h.mu.Unlock()
	h.sb.unregister(h.spec.ExecutionID)
	close(h.done)
	h.sb.log.Debug("execution ended", "execution_id", h.spec.ExecutionID, "reason", res.Reason,
		"exit_code", res.ExitCode, "cpu_seconds", res.CPUSeconds, "detail", res.Detail)
}

// wait blocks until the container stops, at most waitSlack past the
// deadline, riding out a broken connection to the engine.
func (h *handle) wait(deadline time.Time) (int, error) {
	ctx := context.Background()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(waitSlack))
		defer cancel()
	}
	for {
		respC, errC := h.sb.cli.ContainerWait(ctx, h.id, container.WaitConditionNotRunning)
		select {
		case r := <-respC:
			if r.Error != nil && r.Error.Message != "" {
				return int(r.StatusCode), fmt.Errorf("engine: %s", r.Error.Message)
			}
			return int(r.StatusCode), nil
		case err := <-errC:
			if errdefs.IsNotFound(err) {
				return -1, errGone
			}
			if ctx.Err() != nil {
				h.kill()
				return -1, fmt.Errorf("the container did not stop within %s of its deadline", waitSlack)
			}
			h.sb.log.Warn("waiting for a container failed, retrying", "execution_id", h.spec.ExecutionID, "err", err)
			select {
			case <-time.After(250 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
}

// awaitOutput lets the output stream drain, then closes it.
func (h *handle) awaitOutput() {
	t := time.NewTimer(outputGrace)
	defer t.Stop()
	select {
	case <-h.outDone:
	case <-t.C:
		h.sb.log.Warn("container output still open after it exited", "execution_id", h.spec.ExecutionID)
	}
	h.attach.Close()
	<-h.outDone
}

// state asks the engine whether the kernel's OOM killer struck.
func (h *handle) state() (bool, error) {
	ctx, cancel := engineCtx()
	defer cancel()
	insp, err := h.sb.cli.ContainerInspect(ctx, h.id)
	if errdefs.IsNotFound(err) {
		return false, errGone
	}
	if err != nil {
		return false, fmt.Errorf("inspect container: %w", err)
	}
	if insp.ContainerJSONBase == nil || insp.State == nil {
		return false, errors.New("inspect container: no state")
	}
	return insp.State.OOMKilled, nil
}

// oomAfterAll decides whether a SIGKILL nobody here sent came from the
// kernel's OOM killer when the engine did not say so (yet): the engine
// learns of it by an event that can arrive after the exit, so it is asked
// again briefly; on cgroup v2 the parent cgroup counts OOM kills below it;
// on v1 it does not, but its high-water mark shows the tree reached its
// limit.
func (h *handle) oomAfterAll(u usage) bool {
	if u.oomKills > 0 || h.limits.Memory > 0 && u.peak >= h.limits.Memory-256<<10 {
		return true
	}
	for range 4 {
		time.Sleep(50 * time.Millisecond)
		if oom, err := h.state(); err != nil || oom {
			return oom
		}
	}
	return false
}

func (h *handle) intended() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.intent != ""
}

// usage is what the execution used, from its cgroup or the last sample.
func (h *handle) usage() usage {
	if h.sb.acct != nil {
		u, err := h.sb.acct.read(h.spec.ExecutionID)
		if err != nil {
			h.sb.log.Warn("cannot read execution cgroup", "execution_id", h.spec.ExecutionID, "err", err)
		}
		return u
	}
	return h.stats.get()
}

// cleanup removes the container and its parent cgroup. It reports whether
// someone else had removed, or was removing, the container.
func (h *handle) cleanup() (gone bool) {
	ctx, cancel := engineCtx()
	defer cancel()
	err := h.sb.cli.ContainerRemove(ctx, h.id, container.RemoveOptions{Force: true})
	switch {
	case errdefs.IsNotFound(err) || errdefs.IsConflict(err):
		gone = true
	case err != nil:
		h.sb.log.Warn("cannot remove container; it is removed at the next start-up", "execution_id", h.spec.ExecutionID, "err", err)
	}
	if h.sb.acct != nil {
		if err := h.sb.acct.remove(h.spec.ExecutionID); err != nil {
			h.sb.log.Warn("cannot remove execution cgroup", "execution_id", h.spec.ExecutionID, "err", err)
		}
	}
	return gone
}

// setIntent records why we are ending the execution; the first reason wins
// and nothing is recorded once the container has exited by itself.
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
	h.kill()
}

// kill sends SIGKILL to the container; the engine kills every process in it.
func (h *handle) kill() { h.signal("KILL") }

func (h *handle) signal(sig string) {
	ctx, cancel := engineCtx()
	defer cancel()
	err := h.sb.cli.ContainerKill(ctx, h.id, sig)
	if err != nil && !errdefs.IsNotFound(err) && !errdefs.IsConflict(err) {
		h.sb.log.Debug("cannot signal container", "execution_id", h.spec.ExecutionID, "signal", sig, "err", err)
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

// Stop implements sandbox.Handle: SIGTERM (the container's init passes it
// to the agent), then SIGKILL after grace.
func (h *handle) Stop(ctx context.Context, grace time.Duration) error {
	h.setIntent(sandbox.ReasonKilled, fmt.Sprintf("stopped on request (SIGTERM, SIGKILL after %s)", grace))
	h.signal("TERM")
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-h.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	h.kill()
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
	u := h.usage()
	return sandbox.Status{Running: true, CPUSeconds: u.cpuSeconds, Memory: u.current}, nil
}
