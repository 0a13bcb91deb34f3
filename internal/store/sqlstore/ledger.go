package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// GetMeta implements store.Meta.
func (t *Tx) GetMeta(ctx context.Context, key string) (string, error) {
	var v string
	err := t.scalar(ctx, `SELECT value FROM meta WHERE key = ?`, []any{key}, &v)
	return v, err
}

// SetMeta implements store.Meta.
func (t *Tx) SetMeta(ctx context.Context, key, value string) error {
	_, err := t.exec(ctx, `INSERT INTO meta(key, value) VALUES (?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

// CreateAccount implements store.Accounts.
func (t *Tx) CreateAccount(ctx context.Context, a store.Account) error {
	// ON CONFLICT DO NOTHING reports a taken id without aborting the
	// transaction (PostgreSQL aborts it on a unique violation).
	ok, err := t.changed(ctx, `INSERT INTO accounts(id, kind, agent_id, balance, created_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`, a.ID, a.Kind, a.AgentID, int64(a.Balance), ts(a.Created))
	if err == nil && !ok {
		err = fmt.Errorf("account %q exists: %w", a.ID, store.ErrConflict)
	}
	return err
}

const accountCols = `id, kind, agent_id, balance, created_at`

func scanAccount(s scanner) (store.Account, error) {
	var a store.Account
	var bal, created int64
	if err := s.Scan(&a.ID, &a.Kind, &a.AgentID, &bal, &created); err != nil {
		return store.Account{}, err
	}
	a.Balance, a.Created = money.Micro(bal), fromTS(created)
	return a, nil
}

// GetAccount implements store.Accounts.
func (t *Tx) GetAccount(ctx context.Context, id string) (store.Account, error) {
	return getOne(ctx, t, scanAccount, "account", `SELECT `+accountCols+` FROM accounts WHERE id = ?`, id)
}

// AddToBalance implements store.Accounts.
func (t *Tx) AddToBalance(ctx context.Context, id string, delta money.Micro) (money.Micro, error) {
	var bal int64
	err := t.scalar(ctx, `UPDATE accounts SET balance = balance + ? WHERE id = ? RETURNING balance`,
		[]any{int64(delta), id}, &bal)
	if err != nil {
		return 0, fmt.Errorf("account %q: %w", id, err)
	}
	return money.Micro(bal), nil
}

// ListAccounts implements store.Accounts.
func (t *Tx) ListAccounts(ctx context.Context) ([]store.Account, error) {
	return queryAll(ctx, t, scanAccount, `SELECT `+accountCols+` FROM accounts ORDER BY id`)
}

// InsertTransfer implements store.Transfers.
func (t *Tx) InsertTransfer(ctx context.Context, tr *store.Transfer) error {
	return t.scalar(ctx, `INSERT INTO transfers(kind, from_account, to_account, amount, ref, memo, cycle, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		[]any{tr.Kind, tr.From, tr.To, int64(tr.Amount), tr.Ref, tr.Memo, tr.Cycle, ts(tr.Created)}, &tr.ID)
}

// ListTransfers implements store.Transfers.
func (t *Tx) ListTransfers(ctx context.Context, f store.TransferFilter) ([]store.Transfer, error) {
	var w filter
	order := "id DESC"
	if f.Account != "" {
		w.add("(from_account = ? OR to_account = ?)", f.Account, f.Account)
	}
	if f.Ascending {
		w.add("id > ?", f.AfterID)
		order = "id ASC"
	} else if f.BeforeID > 0 {
		w.add("id < ?", f.BeforeID)
	}
	q, args := w.sql(`SELECT id, kind, from_account, to_account, amount, ref, memo, cycle, created_at FROM transfers`,
		order, f.Limit)
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

type entrySum struct {
	account string
	sum     int64
}

// EntrySums implements store.Transfers.
func (t *Tx) EntrySums(ctx context.Context) (map[string]money.Micro, error) {
	list, err := queryAll(ctx, t, func(s scanner) (entrySum, error) {
		var e entrySum
		return e, s.Scan(&e.account, &e.sum)
	}, `SELECT account, CAST(SUM(delta) AS BIGINT) FROM (
			SELECT to_account AS account, amount AS delta FROM transfers
			UNION ALL
			SELECT from_account AS account, -amount AS delta FROM transfers
		) AS entries GROUP BY account`)
	if err != nil {
		return nil, err
	}
	out := make(map[string]money.Micro, len(list))
	for _, e := range list {
		out[e.account] = money.Micro(e.sum)
	}
	return out, nil
}

// CountTransfers implements store.Transfers.
func (t *Tx) CountTransfers(ctx context.Context) (int64, error) {
	var n int64
	err := t.scalar(ctx, `SELECT COUNT(*) FROM transfers`, nil, &n)
	return n, err
}

// AppendEvent implements store.Events.
func (t *Tx) AppendEvent(ctx context.Context, e *store.Event) error {
	data := e.Data
	if len(data) == 0 {
		data = []byte("{}")
	}
	return t.scalar(ctx, `INSERT INTO events(time, cycle, type, agent_id, ref, data) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq`,
		[]any{ts(e.Time), e.Cycle, e.Type, e.AgentID, e.Ref, string(data)}, &e.Seq)
}

// ListEvents implements store.Events.
func (t *Tx) ListEvents(ctx context.Context, f store.EventFilter) ([]store.Event, error) {
	var w filter
	order := "seq ASC"
	if f.BeforeSeq > 0 {
		w.add("seq < ?", f.BeforeSeq)
		order = "seq DESC"
	} else {
		w.add("seq > ?", f.AfterSeq)
	}
	if f.AgentID != "" {
		w.add("agent_id = ?", f.AgentID)
	}
	if f.Type != "" {
		if strings.HasSuffix(f.Type, ".") {
			// Every type under the prefix sorts between "bid." and "bid/"
			// (the schema compares text byte by byte).
			w.add("type >= ? AND type < ?", f.Type, f.Type[:len(f.Type)-1]+"/")
		} else {
			w.add("type = ?", f.Type)
		}
	}
	q, args := w.sql(`SELECT seq, time, cycle, type, agent_id, ref, data FROM events`, order, f.Limit)
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

// LastEventSeq implements store.Events.
func (t *Tx) LastEventSeq(ctx context.Context) (int64, error) {
	var seq sql.NullInt64
	err := t.scalar(ctx, `SELECT MAX(seq) FROM events`, nil, &seq)
	return seq.Int64, err
}

// GetIdempotency implements store.Idempotency.
func (t *Tx) GetIdempotency(ctx context.Context, principal, key string) (store.IdempotencyRecord, error) {
	r := store.IdempotencyRecord{Principal: principal, Key: key}
	var created int64
	err := t.scalar(ctx, `SELECT request_hash, status, body, created_at FROM idempotency WHERE principal = ? AND key = ?`,
		[]any{principal, key}, &r.RequestHash, &r.Status, &r.Body, &created)
	if err != nil {
		return store.IdempotencyRecord{}, err
	}
	r.Created = fromTS(created)
	return r, nil
}

// PutIdempotency implements store.Idempotency.
func (t *Tx) PutIdempotency(ctx context.Context, r store.IdempotencyRecord) error {
	body := r.Body
	if body == nil {
		body = []byte{}
	}
	ok, err := t.changed(ctx, `INSERT INTO idempotency(principal, key, request_hash, status, body, created_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		r.Principal, r.Key, r.RequestHash, r.Status, body, ts(r.Created))
	if err == nil && !ok {
		err = fmt.Errorf("idempotency key %q of %s: %w", r.Key, r.Principal, store.ErrConflict)
	}
	return err
}
