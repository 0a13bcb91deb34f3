// Package runtime owns the loop that makes the economy live: every cycle it
// clears the market, and for each winning bid it opens the execution, writes
// env.json into the agent's workspace, runs the agent in the sandbox and
// records how it ended. At start-up it recovers from a crash: orphaned
// sandboxes are removed and executions left running are closed as killed.
//
// The runtime never moves money or decides winners itself (the economy does),
// and never runs agent code outside an ExecutionSandbox.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bpagents/bpagents/internal/agents"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/store"
)

// Config tunes the loop.
type Config struct {
	Cycle       time.Duration
	ServiceURL  string
	OutputLimit int
	MaxProcs    int64
	StopGrace   time.Duration
}

// Runtime runs executions.
type Runtime struct {
	eco *economy.Economy
	sb  sandbox.ExecutionSandbox
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	running  map[string]sandbox.Handle
	stopping bool
	wg       sync.WaitGroup
	// cycleDone, when set, is called after each clearing (tests, metrics).
	cycleDone func(economy.ClearResult)
	// started and finished, when set, observe each execution (metrics).
	started  func(backend string, took time.Duration)
	finished func(reason string)
}

// New returns a runtime over eco and sb.
func New(eco *economy.Economy, sb sandbox.ExecutionSandbox, cfg Config, log *slog.Logger) *Runtime {
	return &Runtime{eco: eco, sb: sb, cfg: cfg, log: log, running: map[string]sandbox.Handle{}}
}

// OnCycle registers a function called after every clearing.
func (r *Runtime) OnCycle(fn func(economy.ClearResult)) { r.cycleDone = fn }

// OnSandboxStart registers a function called with how long the sandbox took
// to start each execution (until the agent's process runs). Register hooks
// before Run; they must not block.
func (r *Runtime) OnSandboxStart(fn func(backend string, took time.Duration)) { r.started = fn }

// OnFinished registers a function called with the termination reason of
// every execution once its result is recorded.
func (r *Runtime) OnFinished(fn func(reason string)) { r.finished = fn }

// Recover removes orphaned sandboxes and closes executions a previous
// process left running. Call it once before Run.
func (r *Runtime) Recover(ctx context.Context) error {
	orphans, err := r.sb.ReapOrphans(ctx)
	if err != nil {
		return fmt.Errorf("reap orphaned sandboxes: %w", err)
	}
	if len(orphans) > 0 {
		r.log.Warn("removed orphaned sandboxes", "count", len(orphans), "executions", orphans)
	}
	closed, err := r.eco.RecoverExecutions(ctx, "the system stopped while this execution ran")
	if err != nil {
		return fmt.Errorf("recover executions: %w", err)
	}
	if len(closed) > 0 {
		r.log.Warn("closed executions left running by a previous run", "count", len(closed), "executions", closed)
	}
	return nil
}

// Run clears the market every cycle and runs the winners until ctx ends.
// Executions left queued by an earlier run start first. On return every
// execution it started has been stopped and recorded.
func (r *Runtime) Run(ctx context.Context) error {
	queued, err := r.eco.QueuedExecutions(ctx)
	if err != nil {
		return err
	}
	for _, ex := range queued {
		r.launch(ex)
	}
	t := time.NewTicker(r.cfg.Cycle)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.drain()
			return nil
		case <-t.C:
			r.Tick(ctx)
		}
	}
}

// Tick runs one cycle: clear, then launch every new execution.
func (r *Runtime) Tick(ctx context.Context) {
	res, err := r.eco.Clear(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("clearing failed", "err", err)
		}
		return
	}
	if res.Winners > 0 || res.Expired > 0 {
		r.log.Info("market cleared", "cycle", res.Cycle, "pending", res.Pending, "winners", res.Winners,
			"expired", res.Expired, "took_ms", float64(res.Took.Microseconds())/1000)
	}
	for _, ex := range res.Queued {
		r.launch(ex)
	}
	if r.cycleDone != nil {
		r.cycleDone(res)
	}
}

// Running returns how many executions are in a sandbox now.
func (r *Runtime) Running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.running)
}

// Kill ends a running execution at once.
func (r *Runtime) Kill(ctx context.Context, executionID string) error {
	r.mu.Lock()
	h, ok := r.running[executionID]
	r.mu.Unlock()
	if !ok {
		return &economy.Error{Code: economy.CodeConflict, Detail: fmt.Sprintf("execution %s is not running here", executionID)}
	}
	return h.Kill(ctx)
}

// Wait blocks until every launched execution has been recorded.
func (r *Runtime) Wait() { r.wg.Wait() }

func (r *Runtime) launch(ex store.Execution) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.execute(ex)
	}()
}

// drain stops every running execution (SIGTERM, then SIGKILL after the
// grace period) and waits until all are recorded.
func (r *Runtime) drain() {
	r.mu.Lock()
	r.stopping = true
	handles := make([]sandbox.Handle, 0, len(r.running))
	for _, h := range r.running {
		handles = append(handles, h)
	}
	r.mu.Unlock()
	if len(handles) > 0 {
		r.log.Info("stopping running executions", "count", len(handles))
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StopGrace+10*time.Second)
	defer cancel()
	for _, h := range handles {
		go h.Stop(ctx, r.cfg.StopGrace)
	}
	r.wg.Wait()
}

// execute runs one execution from queued to finished. Its bookkeeping uses a
// background context so that a shutdown still records how it ended.
func (r *Runtime) execute(ex store.Execution) {
	ctx := context.Background()
	log := r.log.With("execution_id", ex.ID, "agent_id", ex.AgentID)
	st, err := r.eco.StartExecution(ctx, ex.ID, r.sb.Name(), r.cfg.ServiceURL)
	if err != nil {
		log.Error("cannot start execution", "err", err)
		return
	}
	res := r.runSandbox(ctx, st, log)
	r.mu.Lock()
	interrupted := r.stopping && res.Reason == sandbox.ReasonKilled
	r.mu.Unlock()
	record := r.eco.FinishExecution
	if interrupted {
		// The system cut it short: the agent is not charged and keeps its turn.
		record = r.eco.InterruptExecution
	}
	fin, err := record(ctx, ex.ID, res)
	if err != nil {
		log.Error("cannot record execution result", "err", err)
		return
	}
	if r.finished != nil {
		r.finished(fin.Reason)
	}
	log.Info("execution finished", "reason", fin.Reason, "exit_code", fin.ExitCode,
		"wall_ms", fin.Ended.Sub(fin.Started).Milliseconds(), "cpu_seconds", fin.CPUSeconds)
}

func (r *Runtime) runSandbox(ctx context.Context, st economy.Started, log *slog.Logger) sandbox.Result {
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
	stopping := r.stopping
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
	if r.stopping {
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
