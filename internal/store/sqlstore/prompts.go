package sqlstore

import (
	"context"
	"fmt"
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
		return store.Prompt{}, err
	}
	p.BidAmount, p.Reward = money.Micro(bid), money.Micro(reward)
	p.Created, p.ExpiresAt, p.RatedAt = fromTS(created), fromTS(expires), fromTS(rated)
	return p, nil
}

// InsertPrompt implements store.Prompts.
func (t *Tx) InsertPrompt(ctx context.Context, p *store.Prompt) error {
	return t.insertReturning(ctx, "prompt "+p.ID, `INSERT INTO prompts(id, agent_id, execution_id, content, bid_amount,
		status, created_at, cycle, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		[]any{p.ID, p.AgentID, p.ExecutionID, p.Content, int64(p.BidAmount), p.Status, ts(p.Created), p.Cycle,
			ts(p.ExpiresAt)}, "seq", &p.Seq)
}

// GetPrompt implements store.Prompts.
func (t *Tx) GetPrompt(ctx context.Context, id string) (store.Prompt, error) {
	return getOne(ctx, t, scanPrompt, "prompt", `SELECT `+promptCols+` FROM prompts WHERE id = ?`, id)
}

// PromptOfExecution implements store.Prompts.
func (t *Tx) PromptOfExecution(ctx context.Context, executionID string) (store.Prompt, error) {
	return getOne(ctx, t, scanPrompt, "prompt of execution", `SELECT `+promptCols+` FROM prompts WHERE execution_id = ?`, executionID)
}

// ListPrompts implements store.Prompts.
func (t *Tx) ListPrompts(ctx context.Context, f store.PromptFilter) ([]store.Prompt, error) {
	var w filter
	if f.Status != "" {
		w.add("status = ?", f.Status)
	}
	if f.AgentID != "" {
		w.add("agent_id = ?", f.AgentID)
	}
	order := "seq DESC"
	if f.Queue {
		order = "bid_amount DESC, seq"
	}
	q, args := w.sql(`SELECT `+promptCols+` FROM prompts`, order, f.Limit)
	return queryAll(ctx, t, scanPrompt, q, args...)
}

// ClosePrompt implements store.Prompts.
func (t *Tx) ClosePrompt(ctx context.Context, p store.Prompt) error {
	ok, err := t.changed(ctx, `UPDATE prompts SET status = ?, interesting = ?, useful = ?, understandable = ?, reason = ?,
		reward = ?, rated_at = ? WHERE id = ? AND status = 'pending'`,
		p.Status, p.Interesting, p.Useful, p.Understandable, p.Reason, int64(p.Reward), ts(p.RatedAt), p.ID)
	if err != nil || ok {
		return err
	}
	if _, err := t.GetPrompt(ctx, p.ID); err != nil {
		return err
	}
	return fmt.Errorf("prompt %q is not pending: %w", p.ID, store.ErrConflict)
}

// DuePrompts implements store.Prompts.
func (t *Tx) DuePrompts(ctx context.Context, now time.Time) ([]store.Prompt, error) {
	return queryAll(ctx, t, scanPrompt, `SELECT `+promptCols+` FROM prompts
		WHERE status = 'pending' AND expires_at <= ? ORDER BY seq`, ts(now))
}

const messageCols = `seq, id, from_id, to_id, content, created_at, cycle, read_at`

func scanMessage(s scanner) (store.Message, error) {
	var m store.Message
	var created, read int64
	if err := s.Scan(&m.Seq, &m.ID, &m.From, &m.To, &m.Content, &created, &m.Cycle, &read); err != nil {
		return store.Message{}, err
	}
	m.Created, m.Read = fromTS(created), fromTS(read)
	return m, nil
}

// Inbox implements store.Messages.
func (t *Tx) Inbox(ctx context.Context, agentID string, limit int) ([]store.Message, error) {
	var w filter
	w.add("to_id = ?", agentID)
	q, args := w.sql(`SELECT `+messageCols+` FROM messages`, "(read_at = 0) DESC, seq DESC", limit)
	return queryAll(ctx, t, scanMessage, q, args...)
}

// ListMessages implements store.Messages.
func (t *Tx) ListMessages(ctx context.Context, f store.MessageFilter) ([]store.Message, error) {
	var w filter
	if f.To != "" {
		w.add("to_id = ?", f.To)
	}
	if f.Party != "" {
		w.add("(from_id = ? OR to_id = ?)", f.Party, f.Party)
	}
	if f.BeforeSeq > 0 {
		w.add("seq < ?", f.BeforeSeq)
	}
	q, args := w.sql(`SELECT `+messageCols+` FROM messages`, "seq DESC", f.Limit)
	return queryAll(ctx, t, scanMessage, q, args...)
}

// MarkRead implements store.Messages.
func (t *Tx) MarkRead(ctx context.Context, ids []string, at time.Time) error {
	for _, id := range ids {
		if _, err := t.exec(ctx, `UPDATE messages SET read_at = ? WHERE id = ? AND read_at = 0`, ts(at), id); err != nil {
			return err
		}
	}
	return nil
}
