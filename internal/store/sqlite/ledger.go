package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// ts stores a time as Unix microseconds; the zero time is 0.
func ts(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromTS(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

func (t *tx) GetMeta(ctx context.Context, key string) (string, error) {
	var v string
	err := t.tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	return v, mapErr(err)
}

func (t *tx) SetMeta(ctx context.Context, key, value string) error {
	_, err := t.exec(ctx, `INSERT INTO meta(key, value) VALUES (?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

func (t *tx) CreateAccount(ctx context.Context, a store.Account) error {
	_, err := t.exec(ctx, `INSERT INTO accounts(id, kind, agent_id, balance, created_at) VALUES (?, ?, ?, ?, ?)`,
		a.ID, a.Kind, a.AgentID, int64(a.Balance), ts(a.Created))
	return err
}

func (t *tx) GetAccount(ctx context.Context, id string) (store.Account, error) {
	var a store.Account
	var bal, created int64
	err := t.tx.QueryRowContext(ctx, `SELECT id, kind, agent_id, balance, created_at FROM accounts WHERE id = ?`, id).
		Scan(&a.ID, &a.Kind, &a.AgentID, &bal, &created)
	if err != nil {
		return store.Account{}, fmt.Errorf("account %q: %w", id, mapErr(err))
	}
	a.Balance, a.Created = money.Micro(bal), fromTS(created)
	return a, nil
}

func (t *tx) AddToBalance(ctx context.Context, id string, delta money.Micro) (money.Micro, error) {
	var bal int64
	err := t.tx.QueryRowContext(ctx, `UPDATE accounts SET balance = balance + ? WHERE id = ? RETURNING balance`,
		int64(delta), id).Scan(&bal)
	if err != nil {
		return 0, fmt.Errorf("account %q: %w", id, mapErr(err))
	}
	return money.Micro(bal), nil
}

func (t *tx) ListAccounts(ctx context.Context) ([]store.Account, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT id, kind, agent_id, balance, created_at FROM accounts ORDER BY id`)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.Account
	for rows.Next() {
		var a store.Account
		var bal, created int64
		if err := rows.Scan(&a.ID, &a.Kind, &a.AgentID, &bal, &created); err != nil {
			return nil, err
		}
		a.Balance, a.Created = money.Micro(bal), fromTS(created)
		out = append(out, a)
	}
	return out, rows.Err()
}

func (t *tx) InsertTransfer(ctx context.Context, tr *store.Transfer) error {
	err := t.tx.QueryRowContext(ctx, `INSERT INTO transfers(kind, from_account, to_account, amount, ref, memo, cycle, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		tr.Kind, tr.From, tr.To, int64(tr.Amount), tr.Ref, tr.Memo, tr.Cycle, ts(tr.Created)).Scan(&tr.ID)
	return mapErr(err)
}

func (t *tx) ListTransfers(ctx context.Context, f store.TransferFilter) ([]store.Transfer, error) {
	var where []string
	var args []any
	order := "DESC"
	if f.Account != "" {
		where = append(where, "(from_account = ? OR to_account = ?)")
		args = append(args, f.Account, f.Account)
	}
	if f.Ascending {
		where = append(where, "id > ?")
		args = append(args, f.AfterID)
		order = "ASC"
	} else if f.BeforeID > 0 {
		where = append(where, "id < ?")
		args = append(args, f.BeforeID)
	}
	q := `SELECT id, kind, from_account, to_account, amount, ref, memo, cycle, created_at FROM transfers`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id " + order
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	return queryAll(ctx, t, scanTransfer, q, args...)
}

func scanTransfer(s scanner) (store.Transfer, error) {
	var tr store.Transfer
	var amt, created int64
	if err := s.Scan(&tr.ID, &tr.Kind, &tr.From, &tr.To, &amt, &tr.Ref, &tr.Memo, &tr.Cycle, &created); err != nil {
		return tr, err
	}
	tr.Amount, tr.Created = money.Micro(amt), fromTS(created)
	return tr, nil
}

func (t *tx) EntrySums(ctx context.Context) (map[string]money.Micro, error) {
	rows, err := t.tx.QueryContext(ctx, `
		SELECT account, SUM(delta) FROM (
			SELECT to_account AS account, amount AS delta FROM transfers
			UNION ALL
			SELECT from_account AS account, -amount AS delta FROM transfers
		) GROUP BY account`)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	out := map[string]money.Micro{}
	for rows.Next() {
		var id string
		var sum int64
		if err := rows.Scan(&id, &sum); err != nil {
			return nil, err
		}
		out[id] = money.Micro(sum)
	}
	return out, rows.Err()
}

func (t *tx) CountTransfers(ctx context.Context) (int64, error) {
	var n int64
	err := t.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM transfers`).Scan(&n)
	return n, mapErr(err)
}

func (t *tx) AppendEvent(ctx context.Context, e *store.Event) error {
	data := e.Data
	if len(data) == 0 {
		data = []byte("{}")
	}
	err := t.tx.QueryRowContext(ctx, `INSERT INTO events(time, cycle, type, agent_id, ref, data) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq`,
		ts(e.Time), e.Cycle, e.Type, e.AgentID, e.Ref, string(data)).Scan(&e.Seq)
	return mapErr(err)
}

func (t *tx) ListEvents(ctx context.Context, f store.EventFilter) ([]store.Event, error) {
	var where []string
	var args []any
	order := "ASC"
	if f.BeforeSeq > 0 {
		where = append(where, "seq < ?")
		args = append(args, f.BeforeSeq)
		order = "DESC"
	} else {
		where = append(where, "seq > ?")
		args = append(args, f.AfterSeq)
	}
	if f.AgentID != "" {
		where = append(where, "agent_id = ?")
		args = append(args, f.AgentID)
	}
	if f.Type != "" {
		if strings.HasSuffix(f.Type, ".") {
			where = append(where, "type >= ? AND type < ?")
			args = append(args, f.Type, f.Type[:len(f.Type)-1]+"/")
		} else {
			where = append(where, "type = ?")
			args = append(args, f.Type)
		}
	}
	q := `SELECT seq, time, cycle, type, agent_id, ref, data FROM events WHERE ` + strings.Join(where, " AND ") +
		" ORDER BY seq " + order
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	return queryAll(ctx, t, scanEvent, q, args...)
}

func scanEvent(s scanner) (store.Event, error) {
	var e store.Event
	var tm int64
	var data string
	if err := s.Scan(&e.Seq, &tm, &e.Cycle, &e.Type, &e.AgentID, &e.Ref, &data); err != nil {
		return e, err
	}
	e.Time, e.Data = fromTS(tm), []byte(data)
	return e, nil
}

func (t *tx) LastEventSeq(ctx context.Context) (int64, error) {
	var seq sql.NullInt64
	err := t.tx.QueryRowContext(ctx, `SELECT MAX(seq) FROM events`).Scan(&seq)
	return seq.Int64, mapErr(err)
}

func (t *tx) GetIdempotency(ctx context.Context, principal, key string) (store.IdempotencyRecord, error) {
	r := store.IdempotencyRecord{Principal: principal, Key: key}
	var created int64
	err := t.tx.QueryRowContext(ctx, `SELECT request_hash, status, body, created_at FROM idempotency WHERE principal = ? AND key = ?`,
		principal, key).Scan(&r.RequestHash, &r.Status, &r.Body, &created)
	if err != nil {
		return store.IdempotencyRecord{}, mapErr(err)
	}
	r.Created = fromTS(created)
	return r, nil
}

func (t *tx) PutIdempotency(ctx context.Context, r store.IdempotencyRecord) error {
	_, err := t.exec(ctx, `INSERT INTO idempotency(principal, key, request_hash, status, body, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		r.Principal, r.Key, r.RequestHash, r.Status, r.Body, ts(r.Created))
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return err
	}
	return err
}
