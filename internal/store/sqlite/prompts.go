package sqlite

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

const promptCols = `seq, id, agent_id, execution_id, content, bid_amount, status, created_at, cycle, expires_at,
	interesting, useful, understandable, reason, reward, rated_at`

func scanPrompt(s scanner) (store.Prompt, error) {
	var p store.Prompt
	var bid, created, expires, reward, rated int64
	err := s.Scan(&p.Seq, &p.ID, &p.AgentID, &p.ExecutionID, &p.Content, &bid, &p.Status, &created, &p.Cycle, &expires,
		&p.Interesting, &p.Useful, &p.Understandable, &p.Reason, &reward, &rated)
	if err != nil {
		return store.Prompt{}, mapErr(err)
	}
	p.BidAmount, p.Reward = money.Micro(bid), money.Micro(reward)
	p.Created, p.ExpiresAt, p.RatedAt = fromTS(created), fromTS(expires), fromTS(rated)
	return p, nil
}

func (t *tx) InsertPrompt(ctx context.Context, p *store.Prompt) error {
	err := t.tx.QueryRowContext(ctx, `INSERT INTO prompts(id, agent_id, execution_id, content, bid_amount, status,
		created_at, cycle, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
		p.ID, p.AgentID, p.ExecutionID, p.Content, int64(p.BidAmount), p.Status, ts(p.Created), p.Cycle,
		ts(p.ExpiresAt)).Scan(&p.Seq)
	return mapErr(err)
}

func (t *tx) GetPrompt(ctx context.Context, id string) (store.Prompt, error) {
	p, err := scanPrompt(t.tx.QueryRowContext(ctx, `SELECT `+promptCols+` FROM prompts WHERE id = ?`, id))
	if err != nil {
		return store.Prompt{}, fmt.Errorf("prompt %q: %w", id, err)
	}
	return p, nil
}

func (t *tx) PromptOfExecution(ctx context.Context, executionID string) (store.Prompt, error) {
	p, err := scanPrompt(t.tx.QueryRowContext(ctx, `SELECT `+promptCols+` FROM prompts WHERE execution_id = ?`, executionID))
	if err != nil {
		return store.Prompt{}, fmt.Errorf("prompt of execution %q: %w", executionID, err)
	}
	return p, nil
}

func (t *tx) ListPrompts(ctx context.Context, f store.PromptFilter) ([]store.Prompt, error) {
	var where []string
	var args []any
	if f.Status != "" {
		where = append(where, "status = ?")
		args = append(args, f.Status)
	}
	if f.AgentID != "" {
		where = append(where, "agent_id = ?")
		args = append(args, f.AgentID)
	}
	q := `SELECT ` + promptCols + ` FROM prompts`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if f.Queue {
		q += " ORDER BY bid_amount DESC, seq"
	} else {
		q += " ORDER BY seq DESC"
	}
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	return queryAll(ctx, t, scanPrompt, q, args...)
}

func (t *tx) ClosePrompt(ctx context.Context, p store.Prompt) error {
	res, err := t.exec(ctx, `UPDATE prompts SET status = ?, interesting = ?, useful = ?, understandable = ?, reason = ?,
		reward = ?, rated_at = ? WHERE id = ? AND status = 'pending'`,
		p.Status, p.Interesting, p.Useful, p.Understandable, p.Reason, int64(p.Reward), ts(p.RatedAt), p.ID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	if _, err := t.GetPrompt(ctx, p.ID); err != nil {
		return err
	}
	return fmt.Errorf("prompt %q is not pending: %w", p.ID, store.ErrConflict)
}

func (t *tx) DuePrompts(ctx context.Context, now time.Time) ([]store.Prompt, error) {
	return queryAll(ctx, t, scanPrompt, `SELECT `+promptCols+` FROM prompts
		WHERE status = 'pending' AND expires_at <= ? ORDER BY seq`, ts(now))
}

func scanMessage(s scanner) (store.Message, error) {
	var m store.Message
	var created, read int64
	if err := s.Scan(&m.Seq, &m.ID, &m.From, &m.To, &m.Content, &created, &m.Cycle, &read); err != nil {
		return store.Message{}, mapErr(err)
	}
	m.Created, m.Read = fromTS(created), fromTS(read)
	return m, nil
}

func (t *tx) ListMessages(ctx context.Context, f store.MessageFilter) ([]store.Message, error) {
	var where []string
	var args []any
	if f.To != "" {
		where = append(where, "to_id = ?")
		args = append(args, f.To)
	}
	if f.BeforeSeq > 0 {
		where = append(where, "seq < ?")
		args = append(args, f.BeforeSeq)
	}
	q := `SELECT seq, id, from_id, to_id, content, created_at, cycle, read_at FROM messages`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq DESC"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	return queryAll(ctx, t, scanMessage, q, args...)
}
