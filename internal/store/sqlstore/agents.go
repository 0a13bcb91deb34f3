package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

const agentCols = `num, id, status, parent_id, lineage, workspace, created_at, created_cycle,
	execution_count, died_at, death_reason, death_cycle`

func scanAgent(s scanner) (store.Agent, error) {
	var a store.Agent
	var lineage string
	var created, died int64
	err := s.Scan(&a.Num, &a.ID, &a.Status, &a.ParentID, &lineage, &a.Workspace, &created, &a.CreatedCycle,
		&a.ExecutionCount, &died, &a.DeathReason, &a.DeathCycle)
	if err != nil {
		return store.Agent{}, err
	}
	if err := json.Unmarshal([]byte(lineage), &a.Lineage); err != nil {
		return store.Agent{}, fmt.Errorf("agent %s lineage: %w", a.ID, err)
	}
	a.Created, a.Died = fromTS(created), fromTS(died)
	return a, nil
}

// InsertAgent implements store.Agents.
func (t *Tx) InsertAgent(ctx context.Context, a *store.Agent) error {
	lineage := a.Lineage
	if lineage == nil {
		lineage = []string{}
	}
	lj, err := json.Marshal(lineage)
	if err != nil {
		return fmt.Errorf("agent %s lineage: %w", a.ID, err)
	}
	return t.insertReturning(ctx, "agent "+a.ID, `INSERT INTO agents(id, status, parent_id, lineage, workspace,
		created_at, created_cycle) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		[]any{a.ID, a.Status, a.ParentID, string(lj), a.Workspace, ts(a.Created), a.CreatedCycle}, "num", &a.Num)
}

// insertReturning runs the INSERT q, which may hit a unique rule, and scans
// the new row's col into num. A taken key is ErrConflict, reported without
// aborting the transaction (PostgreSQL aborts it on a unique violation).
func (t *Tx) insertReturning(ctx context.Context, what, q string, args []any, col string, num *int64) error {
	err := t.scalar(ctx, q+` ON CONFLICT DO NOTHING RETURNING `+col, args, num)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s: %w", what, store.ErrConflict)
	}
	return err
}

// GetAgent implements store.Agents.
func (t *Tx) GetAgent(ctx context.Context, id string) (store.Agent, error) {
	return getOne(ctx, t, scanAgent, "agent", `SELECT `+agentCols+` FROM agents WHERE id = ?`, id)
}

// ListAgents implements store.Agents.
func (t *Tx) ListAgents(ctx context.Context, f store.AgentFilter) ([]store.Agent, error) {
	var w filter
	if f.Status != "" {
		w.add("status = ?", f.Status)
	}
	q, args := w.sql(`SELECT `+agentCols+` FROM agents`, "num", f.Limit)
	return queryAll(ctx, t, scanAgent, q, args...)
}

// CountAgents implements store.Agents.
func (t *Tx) CountAgents(ctx context.Context) (alive, dead int64, err error) {
	err = t.scalar(ctx, `SELECT
		COALESCE(SUM(CASE WHEN status = 'alive' THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END), 0) FROM agents`, nil, &alive, &dead)
	return alive, dead, err
}

// IncrementExecutionCount implements store.Agents.
func (t *Tx) IncrementExecutionCount(ctx context.Context, id string) error {
	return t.expectOne(ctx, `UPDATE agents SET execution_count = execution_count + 1 WHERE id = ?`, id)
}

// MarkAgentDead implements store.Agents.
func (t *Tx) MarkAgentDead(ctx context.Context, id, reason string, at time.Time, cycle int64) error {
	return t.expectOne(ctx, `UPDATE agents SET status = 'dead', death_reason = ?, died_at = ?, death_cycle = ?
		WHERE id = ? AND status = 'alive'`, reason, ts(at), cycle, id)
}

const bidCols = `seq, id, agent_id, payer_id, amount, cpu_millis, memory_mb, duration_seconds, tokens, attention,
	status, created_at, created_cycle, expires_cycle, closed_at, closed_cycle, paid, execution_id`

func scanBid(s scanner) (store.Bid, error) {
	var b store.Bid
	var amount, created, closed, paid int64
	err := s.Scan(&b.Seq, &b.ID, &b.AgentID, &b.PayerID, &amount,
		&b.Bundle.CPUMillis, &b.Bundle.MemoryMB, &b.Bundle.DurationSeconds, &b.Bundle.Tokens, &b.Bundle.Attention,
		&b.Status, &created, &b.CreatedCycle, &b.ExpiresCycle, &closed, &b.ClosedCycle, &paid, &b.ExecutionID)
	if err != nil {
		return store.Bid{}, err
	}
	b.Amount, b.Paid = money.Micro(amount), money.Micro(paid)
	b.Created, b.Closed = fromTS(created), fromTS(closed)
	return b, nil
}

// InsertBid implements store.Bids.
func (t *Tx) InsertBid(ctx context.Context, b *store.Bid) error {
	return t.insertReturning(ctx, "bid "+b.ID, `INSERT INTO bids(id, agent_id, payer_id, amount, cpu_millis,
		memory_mb, duration_seconds, tokens, attention, status, created_at, created_cycle, expires_cycle)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		[]any{b.ID, b.AgentID, b.PayerID, int64(b.Amount), b.Bundle.CPUMillis, b.Bundle.MemoryMB,
			b.Bundle.DurationSeconds, b.Bundle.Tokens, b.Bundle.Attention, b.Status, ts(b.Created),
			b.CreatedCycle, b.ExpiresCycle}, "seq", &b.Seq)
}

// GetBid implements store.Bids.
func (t *Tx) GetBid(ctx context.Context, id string) (store.Bid, error) {
	return getOne(ctx, t, scanBid, "bid", `SELECT `+bidCols+` FROM bids WHERE id = ?`, id)
}

// PendingBids implements store.Bids.
func (t *Tx) PendingBids(ctx context.Context) ([]store.Bid, error) {
	return queryAll(ctx, t, scanBid, `SELECT `+bidCols+` FROM bids WHERE status = 'pending' ORDER BY seq`)
}

// ListBids implements store.Bids.
func (t *Tx) ListBids(ctx context.Context, f store.BidFilter) ([]store.Bid, error) {
	var w filter
	if f.Party != "" {
		w.add("(payer_id = ? OR agent_id = ?)", f.Party, f.Party)
	}
	if f.Status != "" {
		w.add("status = ?", f.Status)
	}
	q, args := w.sql(`SELECT `+bidCols+` FROM bids`, "seq DESC", f.Limit)
	return queryAll(ctx, t, scanBid, q, args...)
}

// CountPendingBids implements store.Bids.
func (t *Tx) CountPendingBids(ctx context.Context, payerID string) (int64, error) {
	var n int64
	err := t.scalar(ctx, `SELECT COUNT(*) FROM bids WHERE payer_id = ? AND status = 'pending'`, []any{payerID}, &n)
	return n, err
}

// HasPendingBidFor implements store.Bids.
func (t *Tx) HasPendingBidFor(ctx context.Context, agentID string) (bool, error) {
	var n int64
	err := t.scalar(ctx, `SELECT COUNT(*) FROM bids WHERE agent_id = ? AND status = 'pending'`, []any{agentID}, &n)
	return n > 0, err
}

// CloseBid implements store.Bids.
func (t *Tx) CloseBid(ctx context.Context, b store.Bid) error {
	ok, err := t.changed(ctx, `UPDATE bids SET status = ?, closed_at = ?, closed_cycle = ?, paid = ?, execution_id = ?
		WHERE id = ? AND status = 'pending'`, b.Status, ts(b.Closed), b.ClosedCycle, int64(b.Paid), b.ExecutionID, b.ID)
	if err == nil && !ok {
		err = fmt.Errorf("bid %q is not pending: %w", b.ID, store.ErrConflict)
	}
	return err
}

// InsertMessage implements store.Messages.
func (t *Tx) InsertMessage(ctx context.Context, m *store.Message) error {
	return t.insertReturning(ctx, "message "+m.ID, `INSERT INTO messages(id, from_id, to_id, content,
		created_at, cycle) VALUES (?, ?, ?, ?, ?, ?)`,
		[]any{m.ID, m.From, m.To, m.Content, ts(m.Created), m.Cycle}, "seq", &m.Seq)
}

// ListResourceStates implements store.Markets.
func (t *Tx) ListResourceStates(ctx context.Context) ([]store.ResourceState, error) {
	return queryAll(ctx, t, func(s scanner) (store.ResourceState, error) {
		var st store.ResourceState
		var r string
		var price int64
		if err := s.Scan(&r, &price, &st.Capacity, &st.Utilization); err != nil {
			return st, err
		}
		st.Resource, st.Price = market.Resource(r), money.Micro(price)
		return st, nil
	}, `SELECT resource, price, capacity, utilization FROM resources ORDER BY resource`)
}

// SaveResourceState implements store.Markets.
func (t *Tx) SaveResourceState(ctx context.Context, s store.ResourceState) error {
	_, err := t.exec(ctx, `INSERT INTO resources(resource, price, capacity, utilization) VALUES (?, ?, ?, ?)
		ON CONFLICT(resource) DO UPDATE SET price = excluded.price, capacity = excluded.capacity,
		utilization = excluded.utilization`, string(s.Resource), int64(s.Price), s.Capacity, s.Utilization)
	return err
}

// InsertClearing implements store.Markets.
func (t *Tx) InsertClearing(ctx context.Context, c store.Clearing) error {
	alloc, err := json.Marshal(c.Allocated)
	if err != nil {
		return err
	}
	util, err := json.Marshal(c.Utilization)
	if err != nil {
		return err
	}
	prices, err := json.Marshal(c.Prices)
	if err != nil {
		return err
	}
	ok, err := t.changed(ctx, `INSERT INTO clearings(cycle, time, mechanism, pending, winners, expired, revenue,
		allocated, utilization, prices, duration_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		c.Cycle, ts(c.Time), c.Mechanism, c.Pending, c.Winners, c.Expired, int64(c.Revenue), string(alloc),
		string(util), string(prices), c.DurationUS)
	if err == nil && !ok {
		err = fmt.Errorf("clearing of cycle %d: %w", c.Cycle, store.ErrConflict)
	}
	return err
}

// ListClearings implements store.Markets.
func (t *Tx) ListClearings(ctx context.Context, beforeCycle int64, limit int) ([]store.Clearing, error) {
	var w filter
	if beforeCycle > 0 {
		w.add("cycle < ?", beforeCycle)
	}
	q, args := w.sql(`SELECT cycle, time, mechanism, pending, winners, expired, revenue, allocated, utilization,
		prices, duration_us FROM clearings`, "cycle DESC", limit)
	return queryAll(ctx, t, scanClearing, q, args...)
}

func scanClearing(s scanner) (store.Clearing, error) {
	var c store.Clearing
	var tm, rev int64
	var alloc, util, prices string
	if err := s.Scan(&c.Cycle, &tm, &c.Mechanism, &c.Pending, &c.Winners, &c.Expired, &rev, &alloc, &util,
		&prices, &c.DurationUS); err != nil {
		return c, err
	}
	c.Time, c.Revenue = fromTS(tm), money.Micro(rev)
	for _, f := range []struct {
		raw string
		to  any
	}{{alloc, &c.Allocated}, {util, &c.Utilization}, {prices, &c.Prices}} {
		if err := json.Unmarshal([]byte(f.raw), f.to); err != nil {
			return c, fmt.Errorf("clearing %d: %w", c.Cycle, err)
		}
	}
	return c, nil
}
