package sqlite

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
	peak_memory, output_size, output_dropped, tokens_used`

func scanExecution(s scanner) (store.Execution, error) {
	var e store.Execution
	var paid, created, started, deadline, ended int64
	var token sql.NullString
	err := s.Scan(&e.Seq, &e.ID, &e.AgentID, &e.BidID, &e.Status, &e.Cycle,
		&e.Bundle.CPUMillis, &e.Bundle.MemoryMB, &e.Bundle.DurationSeconds, &e.Bundle.Tokens, &e.Bundle.Attention,
		&paid, &token, &e.Sandbox, &created, &started, &deadline, &ended, &e.ExitCode, &e.Reason, &e.Detail,
		&e.CPUSeconds, &e.PeakMemory, &e.OutputSize, &e.Dropped, &e.TokensUsed)
	if err != nil {
		return store.Execution{}, mapErr(err)
	}
	e.Paid, e.TokenHash = money.Micro(paid), token.String
	e.Created, e.Started, e.Deadline, e.Ended = fromTS(created), fromTS(started), fromTS(deadline), fromTS(ended)
	return e, nil
}

// nullable keeps empty token hashes out of the unique index.
func nullable(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func (t *tx) InsertExecution(ctx context.Context, e *store.Execution) error {
	err := t.tx.QueryRowContext(ctx, `INSERT INTO executions(id, agent_id, bid_id, status, cycle, cpu_millis, memory_mb,
		duration_seconds, tokens, attention, paid, token_hash, sandbox, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
		e.ID, e.AgentID, e.BidID, e.Status, e.Cycle, e.Bundle.CPUMillis, e.Bundle.MemoryMB, e.Bundle.DurationSeconds,
		e.Bundle.Tokens, e.Bundle.Attention, int64(e.Paid), nullable(e.TokenHash), e.Sandbox, ts(e.Created)).Scan(&e.Seq)
	return mapErr(err)
}

func (t *tx) GetExecution(ctx context.Context, id string) (store.Execution, error) {
	e, err := scanExecution(t.tx.QueryRowContext(ctx, `SELECT `+execCols+` FROM executions WHERE id = ?`, id))
	if err != nil {
		return store.Execution{}, fmt.Errorf("execution %q: %w", id, err)
	}
	return e, nil
}

func (t *tx) ListExecutions(ctx context.Context, f store.ExecutionFilter) ([]store.Execution, error) {
	var where []string
	var args []any
	if f.AgentID != "" {
		where = append(where, "agent_id = ?")
		args = append(args, f.AgentID)
	}
	if len(f.Statuses) > 0 {
		where = append(where, "status IN (?"+strings.Repeat(", ?", len(f.Statuses)-1)+")")
		for _, s := range f.Statuses {
			args = append(args, s)
		}
	}
	q := `SELECT ` + execCols + ` FROM executions`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq DESC"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	return queryAll(ctx, t, scanExecution, q, args...)
}

func (t *tx) ExecutionByToken(ctx context.Context, hash string) (store.Execution, error) {
	if hash == "" {
		return store.Execution{}, store.ErrNotFound
	}
	return scanExecution(t.tx.QueryRowContext(ctx, `SELECT `+execCols+` FROM executions WHERE token_hash = ?`, hash))
}

func (t *tx) UpdateExecution(ctx context.Context, e store.Execution) error {
	return expectOne(t.exec(ctx, `UPDATE executions SET status = ?, token_hash = ?, sandbox = ?, started_at = ?,
		deadline = ?, ended_at = ?, exit_code = ?, reason = ?, detail = ?, cpu_seconds = ?, peak_memory = ?,
		output_size = ?, output_dropped = ? WHERE id = ?`,
		e.Status, nullable(e.TokenHash), e.Sandbox, ts(e.Started), ts(e.Deadline), ts(e.Ended), e.ExitCode, e.Reason,
		e.Detail, e.CPUSeconds, e.PeakMemory, e.OutputSize, e.Dropped, e.ID))
}

func (t *tx) AddTokensUsed(ctx context.Context, executionID string, n int64) (int64, error) {
	if n < 0 {
		return 0, fmt.Errorf("execution %q: negative token count %d", executionID, n)
	}
	var total int64
	err := t.tx.QueryRowContext(ctx, `UPDATE executions SET tokens_used = tokens_used + ? WHERE id = ? RETURNING tokens_used`,
		n, executionID).Scan(&total)
	if err != nil {
		return 0, fmt.Errorf("execution %q: %w", executionID, mapErr(err))
	}
	return total, nil
}

func (t *tx) SaveOutput(ctx context.Context, executionID string, output []byte) error {
	if output == nil {
		output = []byte{}
	}
	_, err := t.exec(ctx, `INSERT INTO execution_output(execution_id, output) VALUES (?, ?)
		ON CONFLICT(execution_id) DO UPDATE SET output = excluded.output`, executionID, output)
	return err
}

func (t *tx) GetOutput(ctx context.Context, executionID string) ([]byte, error) {
	var out []byte
	err := t.tx.QueryRowContext(ctx, `SELECT output FROM execution_output WHERE execution_id = ?`, executionID).Scan(&out)
	return out, mapErr(err)
}
