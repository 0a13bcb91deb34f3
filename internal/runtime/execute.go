package runtime

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/bpagents/bpagents/internal/agents"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/store"
)

// execute runs one claimed execution from queued to finished. Its
// bookkeeping uses a background context so that a shutdown still records how
// it ended.
func (r *Runner) execute(ex store.Execution) {
	ctx := context.Background()
	log := r.log.With("execution_id", ex.ID, "agent_id", ex.AgentID)
	r.mu.Lock()
	stopping := r.stopping || r.fenced
	r.mu.Unlock()
	if stopping {
		// Never started: another runner (or this one, restarted) takes it.
		if err := r.eco.ReleaseExecution(ctx, r.cfg.ID, ex.ID, "runner "+r.cfg.ID+" stopped before starting it"); err != nil {
			log.Warn("cannot release a claimed execution", "err", err)
		}
		return
	}
	st, err := r.eco.StartClaimed(ctx, r.cfg.ID, ex.ID, r.sb.Name(), r.cfg.ServiceURL)
	if err != nil {
		log.Error("cannot start execution", "err", err)
		return
	}
	res := r.runSandbox(ctx, st, log)
	r.mu.Lock()
	interrupted := r.systemStop[ex.ID] && res.Reason == sandbox.ReasonKilled
	delete(r.systemStop, ex.ID)
	r.mu.Unlock()
	record := r.eco.FinishExecution
	if interrupted {
		// The system cut it short: the agent is not charged and keeps its turn.
		record = r.eco.InterruptExecution
	}
	fin, err := record(ctx, ex.ID, res)
	if err != nil {
		if e, ok := economy.AsError(err); ok && e.Code == economy.CodeConflict {
			// Closed for this runner already (it was declared lost).
			log.Warn("execution was closed meanwhile; its result is dropped", "reason", res.Reason, "err", err)
			return
		}
		log.Error("cannot record execution result", "err", err)
		return
	}
	if r.finished != nil {
		r.finished(fin.Reason)
	}
	log.Info("execution finished", "reason", fin.Reason, "exit_code", fin.ExitCode,
		"wall_ms", fin.Ended.Sub(fin.Started).Milliseconds(), "cpu_seconds", fin.CPUSeconds)
}

func (r *Runner) runSandbox(ctx context.Context, st economy.Started, log *slog.Logger) sandbox.Result {
	failed := func(reason sandbox.Reason, detail string) sandbox.Result {
		now := time.Now()
		return sandbox.Result{ExitCode: -1, Reason: reason, Detail: detail, StartedAt: now, EndedAt: now}
	}
	ws := st.Agent.Workspace
	envPath, err := agents.WriteEnv(ws, st.Env)
	if err != nil {
		return failed(sandbox.ReasonError, "cannot write env.json: "+err.Error())
	}
	cmd, err := sandbox.ResolveEntrypoint(ws)
	if errors.Is(err, sandbox.ErrNoEntrypoint) {
		return failed(sandbox.ReasonNoEntrypoint, err.Error())
	}
	if err != nil {
		return failed(sandbox.ReasonError, err.Error())
	}
	b := st.Execution.Bundle
	spec := sandbox.Spec{
		ExecutionID: st.Execution.ID,
		AgentID:     st.Agent.ID,
		AgentNum:    st.Agent.Num,
		Workspace:   ws,
		Command:     cmd,
		Env: map[string]string{
			"AGENT_ID":           st.Agent.ID,
			"EXECUTION_ID":       st.Execution.ID,
			"AGENT_TOKEN":        st.Token,
			"SYSTEM_SERVICE_URL": r.cfg.ServiceURL,
			"ENV_JSON_PATH":      envPath,
		},
		Limits: sandbox.Limits{
			CPUMillis:   b.CPUMillis,
			MemoryBytes: b.MemoryMB << 20,
			Duration:    time.Duration(b.DurationSeconds) * time.Second,
			MaxProcs:    r.cfg.MaxProcs,
		},
		Deadline:    st.Execution.Deadline,
		OutputLimit: r.cfg.OutputLimit,
	}
	r.mu.Lock()
	stopping := r.stopping || r.fenced
	if stopping {
		r.systemStop[st.Execution.ID] = true
	}
	r.mu.Unlock()
	if stopping {
		return failed(sandbox.ReasonKilled, "the system was shutting down")
	}
	startAt := time.Now()
	// The bundle buys duration seconds of running time: count them from
	// now, not from when the execution was opened (a busy engine may take
	// seconds to start a sandbox). env.json's deadline, written before, is
	// then a conservative bound, and the token stays valid until the kill.
	spec.Deadline = later(spec.Deadline, startAt.Add(spec.Limits.Duration))
	if spec.Deadline.Sub(st.Execution.Deadline) > deadlineSlack {
		if err := r.eco.ExtendDeadline(ctx, st.Execution.ID, spec.Deadline); err != nil {
			log.Warn("cannot move the execution's deadline", "err", err)
			spec.Deadline = st.Execution.Deadline
		}
	}
	h, err := r.sb.Start(ctx, spec)
	if err != nil {
		log.Warn("sandbox did not start", "err", err)
		return failed(sandbox.ReasonError, "sandbox start: "+err.Error())
	}
	if r.started != nil {
		r.started(r.sb.Name(), time.Since(startAt))
	}
	r.mu.Lock()
	r.running[st.Execution.ID] = h
	if r.stopping || r.fenced {
		r.systemStop[st.Execution.ID] = true
		go h.Stop(ctx, r.cfg.StopGrace)
	}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.running, st.Execution.ID)
		r.mu.Unlock()
	}()
	res, err := h.Wait(ctx)
	if err != nil {
		return failed(sandbox.ReasonError, "sandbox wait: "+err.Error())
	}
	return res
}

// deadlineSlack is how late a sandbox may start before its execution's
// recorded deadline is moved to match.
const deadlineSlack = 100 * time.Millisecond

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
