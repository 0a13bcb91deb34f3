package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

const execCols = `seq, id, agent_id, bid_id, status, cycle, cpu_millis, memory_mb, duration_seconds, tokens, attention,
	paid, token_hash, sandbox, created_at, started_at, deadline, ended_at, exit_code, reason, detail, cpu_seconds,
	peak_memory, output_size, output_dropped, tokens_used, runner_id, claimed_at, kill_requested_at`

func scanExecution(s scanner) (store.Execution, error) {
	var e store.Execution
	var paid, created, started, deadline, ended, claimed, killReq int64
	var token sql.NullString
	err := s.Scan(&e.Seq, &e.ID, &e.AgentID, &e.BidID, &e.Status, &e.Cycle,
		&e.Bundle.CPUMillis, &e.Bundle.MemoryMB, &e.Bundle.DurationSeconds, &e.Bundle.Tokens, &e.Bundle.Attention,
		&paid, &token, &e.Sandbox, &created, &started, &deadline, &ended, &e.ExitCode, &e.Reason, &e.Detail,
		&e.CPUSeconds, &e.PeakMemory, &e.OutputSize, &e.Dropped, &e.TokensUsed, &e.RunnerID, &claimed, &killReq)
	if err != nil {
		return store.Execution{}, err
	}
	e.Paid, e.TokenHash = money.Micro(paid), token.String
	e.Created, e.Started, e.Deadline, e.Ended = fromTS(created), fromTS(started), fromTS(deadline), fromTS(ended)
	e.Claimed, e.KillRequested = fromTS(claimed), fromTS(killReq)
	return e, nil
}

// nullable keeps empty token hashes out of the unique index.
func nullable(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// InsertExecution implements store.Executions.
func (t *Tx) InsertExecution(ctx context.Context, e *store.Execution) error {
	return t.insertReturning(ctx, "execution "+e.ID, `INSERT INTO executions(id, agent_id, bid_id, status, cycle,
		cpu_millis, memory_mb, duration_seconds, tokens, attention, paid, token_hash, sandbox, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		[]any{e.ID, e.AgentID, e.BidID, e.Status, e.Cycle, e.Bundle.CPUMillis, e.Bundle.MemoryMB,
			e.Bundle.DurationSeconds, e.Bundle.Tokens, e.Bundle.Attention, int64(e.Paid), nullable(e.TokenHash),
			e.Sandbox, ts(e.Created)}, "seq", &e.Seq)
}

// GetExecution implements store.Executions.
func (t *Tx) GetExecution(ctx context.Context, id string) (store.Execution, error) {
	return getOne(ctx, t, scanExecution, "execution", `SELECT `+execCols+` FROM executions WHERE id = ?`, id)
}

// ListExecutions implements store.Executions.
func (t *Tx) ListExecutions(ctx context.Context, f store.ExecutionFilter) ([]store.Execution, error) {
	var w filter
	if f.AgentID != "" {
		w.add("agent_id = ?", f.AgentID)
	}
	if f.RunnerID != "" {
		w.add("runner_id = ?", f.RunnerID)
	}
	if f.Unclaimed {
		w.add("runner_id = ''")
	}
	if len(f.Statuses) > 0 {
		args := make([]any, len(f.Statuses))
		for i, s := range f.Statuses {
			args[i] = s
		}
		w.add("status IN (?"+strings.Repeat(", ?", len(f.Statuses)-1)+")", args...)
	}
	q, args := w.sql(`SELECT `+execCols+` FROM executions`, "seq DESC", f.Limit)
	return queryAll(ctx, t, scanExecution, q, args...)
}

// ExecutionByToken implements store.Executions.
func (t *Tx) ExecutionByToken(ctx context.Context, hash string) (store.Execution, error) {
	if hash == "" {
		return store.Execution{}, store.ErrNotFound
	}
	return queryOne(ctx, t, scanExecution, `SELECT `+execCols+` FROM executions WHERE token_hash = ?`, hash)
}

// UpdateExecution implements store.Executions.
func (t *Tx) UpdateExecution(ctx context.Context, e store.Execution) error {
	return t.expectOne(ctx, `UPDATE executions SET status = ?, token_hash = ?, sandbox = ?, started_at = ?,
		deadline = ?, ended_at = ?, exit_code = ?, reason = ?, detail = ?, cpu_seconds = ?, peak_memory = ?,
		output_size = ?, output_dropped = ?, runner_id = ?, claimed_at = ?, kill_requested_at = ? WHERE id = ?`,
		e.Status, nullable(e.TokenHash), e.Sandbox, ts(e.Started), ts(e.Deadline), ts(e.Ended), e.ExitCode, e.Reason,
		e.Detail, e.CPUSeconds, e.PeakMemory, e.OutputSize, e.Dropped, e.RunnerID, ts(e.Claimed), ts(e.KillRequested),
		e.ID)
}

// AddTokensUsed implements store.Executions.
func (t *Tx) AddTokensUsed(ctx context.Context, executionID string, n int64) (int64, error) {
	if n < 0 {
		return 0, fmt.Errorf("execution %q: negative token count %d", executionID, n)
	}
	var total int64
	err := t.scalar(ctx, `UPDATE executions SET tokens_used = tokens_used + ? WHERE id = ? RETURNING tokens_used`,
		[]any{n, executionID}, &total)
	if err != nil {
		return 0, fmt.Errorf("execution %q: %w", executionID, err)
	}
	return total, nil
}

// SaveOutput implements store.Executions.
func (t *Tx) SaveOutput(ctx context.Context, executionID string, output []byte) error {
	if output == nil {
		output = []byte{}
	}
	_, err := t.exec(ctx, `INSERT INTO execution_output(execution_id, output) VALUES (?, ?)
		ON CONFLICT(execution_id) DO UPDATE SET output = excluded.output`, executionID, output)
	return err
}

// GetOutput implements store.Executions.
func (t *Tx) GetOutput(ctx context.Context, executionID string) ([]byte, error) {
	var out []byte
	err := t.scalar(ctx, `SELECT output FROM execution_output WHERE execution_id = ?`, []any{executionID}, &out)
	return out, err
}
