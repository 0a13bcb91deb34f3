package sqlstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/bpagents/bpagents/internal/store"
)

const runnerCols = `id, host, pid, sandbox, slots, status, started_at, heartbeat_at, ended_at`

func scanRunner(s scanner) (store.Runner, error) {
	var r store.Runner
	var started, beat, ended int64
	if err := s.Scan(&r.ID, &r.Host, &r.PID, &r.Sandbox, &r.Slots, &r.Status, &started, &beat, &ended); err != nil {
		return store.Runner{}, err
	}
	r.Started, r.Heartbeat, r.Ended = fromTS(started), fromTS(beat), fromTS(ended)
	return r, nil
}

// PutRunner implements store.Runners.
func (t *Tx) PutRunner(ctx context.Context, r store.Runner) error {
	_, err := t.exec(ctx, `INSERT INTO runners(`+runnerCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET host = excluded.host, pid = excluded.pid, sandbox = excluded.sandbox,
		slots = excluded.slots, status = excluded.status, started_at = excluded.started_at,
		heartbeat_at = excluded.heartbeat_at, ended_at = excluded.ended_at`,
		r.ID, r.Host, r.PID, r.Sandbox, r.Slots, r.Status, ts(r.Started), ts(r.Heartbeat), ts(r.Ended))
	if err != nil {
		return fmt.Errorf("runner %q: %w", r.ID, err)
	}
	return nil
}

// GetRunner implements store.Runners.
func (t *Tx) GetRunner(ctx context.Context, id string) (store.Runner, error) {
	return getOne(ctx, t, scanRunner, "runner", `SELECT `+runnerCols+` FROM runners WHERE id = ?`, id)
}

// ListRunners implements store.Runners.
func (t *Tx) ListRunners(ctx context.Context, status string) ([]store.Runner, error) {
	var w filter
	if status != "" {
		w.add("status = ?", status)
	}
	q, args := w.sql(`SELECT `+runnerCols+` FROM runners`, "id", 0)
	return queryAll(ctx, t, scanRunner, q, args...)
}

// TouchRunner implements store.Runners.
func (t *Tx) TouchRunner(ctx context.Context, id string, at time.Time) error {
	err := t.expectOne(ctx, `UPDATE runners SET heartbeat_at = ? WHERE id = ? AND status = ?`,
		ts(at), id, store.RunnerActive)
	if err != nil {
		return fmt.Errorf("active runner %q: %w", id, err)
	}
	return nil
}

// ClaimExecutions implements store.Runners. The SELECT picks the oldest
// unclaimed queued executions; on PostgreSQL it locks them and skips rows
// other claimers hold, and the UPDATE re-checks that they are still
// unclaimed, so an execution is claimed once whatever the interleaving.
func (t *Tx) ClaimExecutions(ctx context.Context, runnerID string, limit int, at time.Time) ([]store.Execution, error) {
	if runnerID == "" || limit <= 0 {
		return nil, fmt.Errorf("claim executions: runner %q, limit %d", runnerID, limit)
	}
	// The pick is a materialized CTE: a subquery in WHERE may be run again by
	// PostgreSQL's planner and pick more than limit rows.
	list, err := queryAll(ctx, t, scanExecution, `WITH picked AS MATERIALIZED (
		SELECT seq AS pick FROM executions WHERE status = ? AND runner_id = '' ORDER BY seq LIMIT ?`+t.d.SkipLocked+`)
		UPDATE executions SET runner_id = ?, claimed_at = ? FROM picked
		WHERE executions.seq = picked.pick AND status = ? AND runner_id = '' RETURNING `+execCols,
		store.ExecQueued, limit, runnerID, ts(at), store.ExecQueued)
	if err != nil {
		return nil, fmt.Errorf("runner %q: claim executions: %w", runnerID, err)
	}
	// RETURNING promises no order: oldest first.
	slices.SortFunc(list, func(a, b store.Execution) int { return cmp.Compare(a.Seq, b.Seq) })
	return list, nil
}
