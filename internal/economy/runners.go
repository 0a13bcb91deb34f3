package economy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/store"
)

// ErrRunnerLost means a runner is no longer active in the registry: the
// leader scheduler declared it lost (its executions were closed for it), or
// it stopped. Whatever it still runs must be stopped.
var ErrRunnerLost = errors.New("runner is not active")

// RunnerInfo is what a runner process says about itself when it registers.
type RunnerInfo struct {
	ID      string
	Host    string
	PID     int64
	Sandbox string
	// Slots is how many executions it runs at once (0: no limit of its own).
	Slots int64
}

// RunnerCleanup lists what was closed for a runner that is gone: running
// executions closed as killed (their bids reinstated) and queued ones whose
// claim was released so that another runner takes them.
type RunnerCleanup struct {
	Interrupted []string
	Released    []string
}

// RegisterRunner records info as an active runner. When the registry already
// holds an active runner with that id, replace decides with the old row: it
// returns an error to refuse (another live process uses the id), nil to take
// over (the old process is gone). In the same transaction everything a
// previous process of this runner left is closed: executions it ran are
// closed as killed (InterruptExecution: the agent is not charged), queued
// ones it claimed are released. replace may run more than once.
func (e *Economy) RegisterRunner(ctx context.Context, info RunnerInfo, replace func(prev store.Runner) error) (RunnerCleanup, error) {
	if info.ID == "" {
		return RunnerCleanup{}, invalid("runner.id", "must not be empty")
	}
	var out RunnerCleanup
	err := e.write(ctx, func(tx store.Tx) error {
		out = RunnerCleanup{}
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		prev, err := tx.GetRunner(ctx, info.ID)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		case prev.Status == store.RunnerActive:
			if err := replace(prev); err != nil {
				return err
			}
		}
		if out, err = e.cleanupRunner(ctx, tx, s, info.ID,
			"runner "+info.ID+" restarted: this execution was running when its previous process ended"); err != nil {
			return err
		}
		r := store.Runner{ID: info.ID, Host: info.Host, PID: info.PID, Sandbox: info.Sandbox, Slots: info.Slots,
			Status: store.RunnerActive, Started: s.now, Heartbeat: s.now}
		if err := tx.PutRunner(ctx, r); err != nil {
			return err
		}
		return emit(ctx, tx, s, "runner.started", "", "runner:"+info.ID, map[string]any{"runner_id": info.ID,
			"host": info.Host, "pid": info.PID, "sandbox": info.Sandbox, "slots": info.Slots,
			"previous_status": prev.Status, "interrupted": out.Interrupted, "released": out.Released})
	})
	return out, err
}

// cleanupRunner closes what runnerID left: running executions as killed
// (bids reinstated) and released claims on queued ones.
func (e *Economy) cleanupRunner(ctx context.Context, tx store.Tx, s stamp, runnerID, detail string) (RunnerCleanup, error) {
	var out RunnerCleanup
	list, err := tx.ListExecutions(ctx, store.ExecutionFilter{RunnerID: runnerID,
		Statuses: []string{store.ExecQueued, store.ExecRunning}})
	if err != nil {
		return out, err
	}
	for i := len(list) - 1; i >= 0; i-- { // oldest first
		ex := list[i]
		if ex.Status == store.ExecQueued {
			if err := e.releaseTx(ctx, tx, s, ex, detail); err != nil {
				return out, err
			}
			out.Released = append(out.Released, ex.ID)
			continue
		}
		r := sandbox.Result{ExitCode: -1, Reason: sandbox.ReasonKilled, Detail: detail, EndedAt: s.now}
		if _, err := e.interruptTx(ctx, tx, s, ex, r); err != nil {
			return out, err
		}
		out.Interrupted = append(out.Interrupted, ex.ID)
	}
	return out, nil
}

// releaseTx gives a claimed queued execution back to the queue.
func (e *Economy) releaseTx(ctx context.Context, tx store.Tx, s stamp, ex store.Execution, why string) error {
	runner := ex.RunnerID
	ex.RunnerID, ex.Claimed = "", time.Time{}
	if err := tx.UpdateExecution(ctx, ex); err != nil {
		return err
	}
	return emit(ctx, tx, s, "execution.released", ex.AgentID, ex.ID, map[string]any{"execution_id": ex.ID,
		"runner_id": runner, "why": why})
}

// RunnerHeartbeat records that runner id is alive and returns the running
// executions of it whose stop the operator asked for (RequestKill). It fails
// with ErrRunnerLost when the runner is no longer active. It writes no event:
// a heartbeat changes nothing anyone audits.
func (e *Economy) RunnerHeartbeat(ctx context.Context, id string) ([]string, error) {
	var kill []string
	err := e.st.Write(ctx, func(tx store.Tx) error {
		kill = nil
		if err := tx.TouchRunner(ctx, id, e.now()); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("runner %s: %w", id, ErrRunnerLost)
			}
			return err
		}
		list, err := tx.ListExecutions(ctx, store.ExecutionFilter{RunnerID: id, Statuses: []string{store.ExecRunning}})
		for _, ex := range list {
			if !ex.KillRequested.IsZero() {
				kill = append(kill, ex.ID)
			}
		}
		return err
	})
	return kill, err
}

// ClaimExecutions gives the active runner up to limit queued executions no
// runner has claimed, oldest first, and records each claim with an
// execution.claimed event. A claimed execution is started by that runner
// only (StartClaimed). When nothing is queued it writes nothing, so runners
// may poll it often.
func (e *Economy) ClaimExecutions(ctx context.Context, runnerID string, limit int) ([]store.Execution, error) {
	if limit <= 0 {
		return nil, nil
	}
	var waiting []store.Execution
	if err := e.st.Read(ctx, func(tx store.Tx) error {
		var err error
		waiting, err = tx.ListExecutions(ctx, store.ExecutionFilter{Statuses: []string{store.ExecQueued},
			Unclaimed: true, Limit: 1})
		return err
	}); err != nil || len(waiting) == 0 {
		return nil, err
	}
	var out []store.Execution
	err := e.write(ctx, func(tx store.Tx) error {
		out = nil
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		if err := activeRunner(ctx, tx, runnerID); err != nil {
			return err
		}
		if out, err = tx.ClaimExecutions(ctx, runnerID, limit, s.now); err != nil {
			return err
		}
		for _, ex := range out {
			if err := emit(ctx, tx, s, "execution.claimed", ex.AgentID, ex.ID, map[string]any{
				"execution_id": ex.ID, "runner_id": runnerID}); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// activeRunner fails with ErrRunnerLost unless runner id is active.
func activeRunner(ctx context.Context, tx store.Tx, id string) error {
	r, err := tx.GetRunner(ctx, id)
	if errors.Is(err, store.ErrNotFound) || err == nil && r.Status != store.RunnerActive {
		return fmt.Errorf("runner %s: %w", id, ErrRunnerLost)
	}
	return err
}

// StartClaimed is StartExecution for an execution runnerID claimed: it
// refuses (CodeConflict) unless the claim is runnerID's and the runner is
// still active, so that an execution never starts on two runners.
func (e *Economy) StartClaimed(ctx context.Context, runnerID, id, sandboxName, serviceURL string) (Started, error) {
	return e.start(ctx, id, runnerID, sandboxName, serviceURL)
}

// ReleaseExecution gives a queued execution runnerID claimed back to the
// queue (a runner shutting down before it started it).
func (e *Economy) ReleaseExecution(ctx context.Context, runnerID, id, why string) error {
	return e.writeExecution(ctx, id, func(tx store.Tx, s stamp, ex store.Execution) error {
		if ex.Status != store.ExecQueued || ex.RunnerID != runnerID {
			return fail(CodeConflict, "execution %s is %s and claimed by %q, not a queued claim of %s",
				id, ex.Status, ex.RunnerID, runnerID)
		}
		return e.releaseTx(ctx, tx, s, ex, why)
	})
}

// StopRunner records that runner id shut down in order. Anything it still
// held (it should have recorded its executions first) is closed as for a
// restart: running executions as killed, queued claims released.
func (e *Economy) StopRunner(ctx context.Context, id string) (RunnerCleanup, error) {
	var out RunnerCleanup
	err := e.write(ctx, func(tx store.Tx) error {
		out = RunnerCleanup{}
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		r, err := tx.GetRunner(ctx, id)
		if err != nil {
			return err
		}
		if r.Status != store.RunnerActive {
			return nil // declared lost meanwhile: its executions were closed then
		}
		if out, err = e.cleanupRunner(ctx, tx, s, id, "runner "+id+" shut down"); err != nil {
			return err
		}
		r.Status, r.Ended = store.RunnerStopped, s.now
		if err := tx.PutRunner(ctx, r); err != nil {
			return err
		}
		return emit(ctx, tx, s, "runner.stopped", "", "runner:"+id, map[string]any{"runner_id": id,
			"host": r.Host, "pid": r.PID, "interrupted": out.Interrupted, "released": out.Released})
	})
	return out, err
}

// Runner reads one runner's registration.
func (e *Economy) Runner(ctx context.Context, id string) (store.Runner, error) {
	var r store.Runner
	err := e.st.Read(ctx, func(tx store.Tx) error {
		var err error
		r, err = tx.GetRunner(ctx, id)
		return err
	})
	return r, err
}

// ActiveRunners lists the runners registered as active, by id.
func (e *Economy) ActiveRunners(ctx context.Context) ([]store.Runner, error) {
	var out []store.Runner
	err := e.st.Read(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListRunners(ctx, store.RunnerActive)
		return err
	})
	return out, err
}

// DeclareRunnerLost marks runner id lost and closes what it held (running
// executions as killed with their bids reinstated, queued claims released),
// with a runner.lost event. lastBeat is the heartbeat the caller saw stay
// unchanged for silentFor: if the runner has sent another since, or is no
// longer active, nothing happens and ok is false.
func (e *Economy) DeclareRunnerLost(ctx context.Context, id string, lastBeat time.Time, silentFor time.Duration) (cleanup RunnerCleanup, ok bool, err error) {
	err = e.write(ctx, func(tx store.Tx) error {
		cleanup, ok = RunnerCleanup{}, false
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		r, err := tx.GetRunner(ctx, id)
		if err != nil {
			return err
		}
		if r.Status != store.RunnerActive || !r.Heartbeat.Equal(lastBeat) {
			return nil
		}
		detail := fmt.Sprintf("runner %s was lost: no heartbeat for %s", id, silentFor.Round(time.Millisecond))
		if cleanup, err = e.cleanupRunner(ctx, tx, s, id, detail); err != nil {
			return err
		}
		r.Status, r.Ended = store.RunnerLost, s.now
		if err := tx.PutRunner(ctx, r); err != nil {
			return err
		}
		ok = true
		return emit(ctx, tx, s, "runner.lost", "", "runner:"+id, map[string]any{"runner_id": id, "host": r.Host,
			"pid": r.PID, "last_heartbeat": rfc3339(r.Heartbeat), "silent_seconds": silentFor.Seconds(),
			"interrupted": cleanup.Interrupted, "released": cleanup.Released})
	})
	return cleanup, ok, err
}

// CloseOrphanedExecutions closes executions no active runner holds: claimed
// (queued or running) by a runner that is not active, or running without a
// runner (left by a version that had none). Running ones are closed as
// killed with their bids reinstated, queued claims released. The leader
// scheduler calls it; when there is nothing to close it writes nothing.
func (e *Economy) CloseOrphanedExecutions(ctx context.Context) (RunnerCleanup, error) {
	find := func(tx store.Tx) ([]store.Execution, error) {
		active, err := tx.ListExecutions(ctx, store.ExecutionFilter{Statuses: []string{store.ExecQueued, store.ExecRunning}})
		if err != nil {
			return nil, err
		}
		runners, err := tx.ListRunners(ctx, store.RunnerActive)
		if err != nil {
			return nil, err
		}
		live := map[string]bool{}
		for _, r := range runners {
			live[r.ID] = true
		}
		var out []store.Execution
		for i := len(active) - 1; i >= 0; i-- { // oldest first
			ex := active[i]
			if ex.RunnerID != "" && !live[ex.RunnerID] || ex.RunnerID == "" && ex.Status == store.ExecRunning {
				out = append(out, ex)
			}
		}
		return out, nil
	}
	var orphans []store.Execution
	if err := e.st.Read(ctx, func(tx store.Tx) error {
		var err error
		orphans, err = find(tx)
		return err
	}); err != nil || len(orphans) == 0 {
		return RunnerCleanup{}, err
	}
	var out RunnerCleanup
	err := e.write(ctx, func(tx store.Tx) error {
		out = RunnerCleanup{}
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		list, err := find(tx)
		if err != nil {
			return err
		}
		for _, ex := range list {
			detail := "its runner " + ex.RunnerID + " is gone"
			if ex.RunnerID == "" {
				detail = "no runner holds it: the system stopped while it ran"
			}
			if ex.Status == store.ExecQueued {
				if err := e.releaseTx(ctx, tx, s, ex, detail); err != nil {
					return err
				}
				out.Released = append(out.Released, ex.ID)
				continue
			}
			r := sandbox.Result{ExitCode: -1, Reason: sandbox.ReasonKilled, Detail: detail, EndedAt: s.now}
			if _, err := e.interruptTx(ctx, tx, s, ex, r); err != nil {
				return err
			}
			out.Interrupted = append(out.Interrupted, ex.ID)
		}
		return nil
	})
	return out, err
}

// RequestKill asks the runner of a running execution to stop it (the
// operator's kill when the execution runs in another process); the runner
// acts on its next heartbeat and records the result as killed.
func (e *Economy) RequestKill(ctx context.Context, id string) error {
	return e.write(ctx, func(tx store.Tx) error {
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		ex, err := tx.GetExecution(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return fail(CodeNotFound, "no execution %s", id)
		}
		if err != nil {
			return err
		}
		if ex.Status != store.ExecRunning {
			return fail(CodeConflict, "execution %s is %s, not running", id, ex.Status)
		}
		if !ex.KillRequested.IsZero() {
			return nil
		}
		ex.KillRequested = s.now
		if err := tx.UpdateExecution(ctx, ex); err != nil {
			return err
		}
		return emit(ctx, tx, s, "execution.kill_requested", ex.AgentID, ex.ID, map[string]any{
			"execution_id": ex.ID, "runner_id": ex.RunnerID})
	})
}
