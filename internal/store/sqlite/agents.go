package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

const agentCols = `num, id, status, parent_id, lineage, workspace, created_at, created_cycle,
	execution_count, died_at, death_reason, death_cycle`

type scanner interface{ Scan(dest ...any) error }

func scanAgent(s scanner) (store.Agent, error) {
	var a store.Agent
	var lineage string
	var created, died int64
	err := s.Scan(&a.Num, &a.ID, &a.Status, &a.ParentID, &lineage, &a.Workspace, &created, &a.CreatedCycle,
		&a.ExecutionCount, &died, &a.DeathReason, &a.DeathCycle)
	if err != nil {
		return store.Agent{}, mapErr(err)
	}
	if err := json.Unmarshal([]byte(lineage), &a.Lineage); err != nil {
		return store.Agent{}, fmt.Errorf("agent %s lineage: %w", a.ID, err)
	}
	a.Created, a.Died = fromTS(created), fromTS(died)
	return a, nil
}

func (t *tx) InsertAgent(ctx context.Context, a *store.Agent) error {
	lineage := a.Lineage
	if lineage == nil {
		lineage = []string{}
	}
	lj, _ := json.Marshal(lineage)
	err := t.tx.QueryRowContext(ctx, `INSERT INTO agents(id, status, parent_id, lineage, workspace, created_at, created_cycle)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING num`,
		a.ID, a.Status, a.ParentID, string(lj), a.Workspace, ts(a.Created), a.CreatedCycle).Scan(&a.Num)
	return mapErr(err)
}

func (t *tx) GetAgent(ctx context.Context, id string) (store.Agent, error) {
	a, err := scanAgent(t.tx.QueryRowContext(ctx, `SELECT `+agentCols+` FROM agents WHERE id = ?`, id))
	if err != nil {
		return store.Agent{}, fmt.Errorf("agent %q: %w", id, err)
	}
	return a, nil
}

func (t *tx) ListAgents(ctx context.Context, f store.AgentFilter) ([]store.Agent, error) {
	q := `SELECT ` + agentCols + ` FROM agents`
	var args []any
	if f.Status != "" {
		q += ` WHERE status = ?`
		args = append(args, f.Status)
	}
	q += ` ORDER BY num`
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	return queryAll(ctx, t, scanAgent, q, args...)
}

func (t *tx) CountAgents(ctx context.Context) (alive, dead int64, err error) {
	err = t.tx.QueryRowContext(ctx, `SELECT
		COALESCE(SUM(CASE WHEN status = 'alive' THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END), 0) FROM agents`).Scan(&alive, &dead)
	return alive, dead, mapErr(err)
}

func (t *tx) IncrementExecutionCount(ctx context.Context, id string) error {
	return expectOne(t.exec(ctx, `UPDATE agents SET execution_count = execution_count + 1 WHERE id = ?`, id))
}

func (t *tx) MarkAgentDead(ctx context.Context, id, reason string, at time.Time, cycle int64) error {
	return expectOne(t.exec(ctx, `UPDATE agents SET status = 'dead', death_reason = ?, died_at = ?, death_cycle = ?
		WHERE id = ? AND status = 'alive'`, reason, ts(at), cycle, id))
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
		return store.Bid{}, mapErr(err)
	}
	b.Amount, b.Paid = money.Micro(amount), money.Micro(paid)
	b.Created, b.Closed = fromTS(created), fromTS(closed)
	return b, nil
}

func (t *tx) InsertBid(ctx context.Context, b *store.Bid) error {
	err := t.tx.QueryRowContext(ctx, `INSERT INTO bids(id, agent_id, payer_id, amount, cpu_millis, memory_mb,
		duration_seconds, tokens, attention, status, created_at, created_cycle, expires_cycle)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
		b.ID, b.AgentID, b.PayerID, int64(b.Amount), b.Bundle.CPUMillis, b.Bundle.MemoryMB,
		b.Bundle.DurationSeconds, b.Bundle.Tokens, b.Bundle.Attention, b.Status, ts(b.Created),
		b.CreatedCycle, b.ExpiresCycle).Scan(&b.Seq)
	return mapErr(err)
}

func (t *tx) GetBid(ctx context.Context, id string) (store.Bid, error) {
	b, err := scanBid(t.tx.QueryRowContext(ctx, `SELECT `+bidCols+` FROM bids WHERE id = ?`, id))
	if err != nil {
		return store.Bid{}, fmt.Errorf("bid %q: %w", id, err)
	}
	return b, nil
}

func (t *tx) queryBids(ctx context.Context, q string, args ...any) ([]store.Bid, error) {
	return queryAll(ctx, t, scanBid, q, args...)
}

func (t *tx) PendingBids(ctx context.Context) ([]store.Bid, error) {
	return t.queryBids(ctx, `SELECT `+bidCols+` FROM bids WHERE status = 'pending' ORDER BY seq`)
}

func (t *tx) ListBids(ctx context.Context, f store.BidFilter) ([]store.Bid, error) {
	var where []string
	var args []any
	if f.Party != "" {
		where = append(where, "(payer_id = ? OR agent_id = ?)")
		args = append(args, f.Party, f.Party)
	}
	if f.Status != "" {
		where = append(where, "status = ?")
		args = append(args, f.Status)
	}
	q := `SELECT ` + bidCols + ` FROM bids`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq DESC"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	return t.queryBids(ctx, q, args...)
}

func (t *tx) CountPendingBids(ctx context.Context, payerID string) (int64, error) {
	var n int64
	err := t.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM bids WHERE payer_id = ? AND status = 'pending'`, payerID).Scan(&n)
	return n, mapErr(err)
}

func (t *tx) HasPendingBidFor(ctx context.Context, agentID string) (bool, error) {
	var n int64
	err := t.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM bids WHERE agent_id = ? AND status = 'pending'`, agentID).Scan(&n)
	return n > 0, mapErr(err)
}

func (t *tx) CloseBid(ctx context.Context, b store.Bid) error {
	res, err := t.exec(ctx, `UPDATE bids SET status = ?, closed_at = ?, closed_cycle = ?, paid = ?, execution_id = ?
		WHERE id = ? AND status = 'pending'`, b.Status, ts(b.Closed), b.ClosedCycle, int64(b.Paid), b.ExecutionID, b.ID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("bid %q is not pending: %w", b.ID, store.ErrConflict)
	}
	return nil
}

func (t *tx) InsertMessage(ctx context.Context, m *store.Message) error {
	err := t.tx.QueryRowContext(ctx, `INSERT INTO messages(id, from_id, to_id, content, created_at, cycle)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING seq`, m.ID, m.From, m.To, m.Content, ts(m.Created), m.Cycle).Scan(&m.Seq)
	return mapErr(err)
}

func (t *tx) Inbox(ctx context.Context, agentID string, limit int) ([]store.Message, error) {
	q := `SELECT seq, id, from_id, to_id, content, created_at, cycle, read_at FROM messages WHERE to_id = ?
		ORDER BY (read_at = 0) DESC, seq DESC`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := t.tx.QueryContext(ctx, q, agentID)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.Message
	for rows.Next() {
		var m store.Message
		var created, read int64
		if err := rows.Scan(&m.Seq, &m.ID, &m.From, &m.To, &m.Content, &created, &m.Cycle, &read); err != nil {
			return nil, err
		}
		m.Created, m.Read = fromTS(created), fromTS(read)
		out = append(out, m)
	}
	return out, rows.Err()
}

func (t *tx) MarkRead(ctx context.Context, ids []string, at time.Time) error {
	for _, id := range ids {
		if _, err := t.exec(ctx, `UPDATE messages SET read_at = ? WHERE id = ? AND read_at = 0`, ts(at), id); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) ListResourceStates(ctx context.Context) ([]store.ResourceState, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT resource, price, capacity, utilization FROM resources ORDER BY resource`)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.ResourceState
	for rows.Next() {
		var s store.ResourceState
		var r string
		var price int64
		if err := rows.Scan(&r, &price, &s.Capacity, &s.Utilization); err != nil {
			return nil, err
		}
		s.Resource, s.Price = market.Resource(r), money.Micro(price)
		out = append(out, s)
	}
	return out, rows.Err()
}

func (t *tx) SaveResourceState(ctx context.Context, s store.ResourceState) error {
	_, err := t.exec(ctx, `INSERT INTO resources(resource, price, capacity, utilization) VALUES (?, ?, ?, ?)
		ON CONFLICT(resource) DO UPDATE SET price = excluded.price, capacity = excluded.capacity,
		utilization = excluded.utilization`, string(s.Resource), int64(s.Price), s.Capacity, s.Utilization)
	return err
}

func (t *tx) InsertClearing(ctx context.Context, c store.Clearing) error {
	alloc, _ := json.Marshal(c.Allocated)
	util, _ := json.Marshal(c.Utilization)
	prices, _ := json.Marshal(c.Prices)
	_, err := t.exec(ctx, `INSERT INTO clearings(cycle, time, mechanism, pending, winners, expired, revenue, allocated,
		utilization, prices, duration_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.Cycle, ts(c.Time), c.Mechanism, c.Pending, c.Winners, c.Expired, int64(c.Revenue), string(alloc),
		string(util), string(prices), c.DurationUS)
	return err
}

func (t *tx) ListClearings(ctx context.Context, beforeCycle int64, limit int) ([]store.Clearing, error) {
	q := `SELECT cycle, time, mechanism, pending, winners, expired, revenue, allocated, utilization, prices, duration_us
		FROM clearings`
	var args []any
	if beforeCycle > 0 {
		q += ` WHERE cycle < ?`
		args = append(args, beforeCycle)
	}
	q += ` ORDER BY cycle DESC`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := t.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.Clearing
	for rows.Next() {
		var c store.Clearing
		var tm, rev int64
		var alloc, util, prices string
		if err := rows.Scan(&c.Cycle, &tm, &c.Mechanism, &c.Pending, &c.Winners, &c.Expired, &rev, &alloc, &util,
			&prices, &c.DurationUS); err != nil {
			return nil, err
		}
		c.Time, c.Revenue = fromTS(tm), money.Micro(rev)
		if err := json.Unmarshal([]byte(alloc), &c.Allocated); err != nil {
			return nil, fmt.Errorf("clearing %d: %w", c.Cycle, err)
		}
		if err := json.Unmarshal([]byte(util), &c.Utilization); err != nil {
			return nil, fmt.Errorf("clearing %d: %w", c.Cycle, err)
		}
		if err := json.Unmarshal([]byte(prices), &c.Prices); err != nil {
			return nil, fmt.Errorf("clearing %d: %w", c.Cycle, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
