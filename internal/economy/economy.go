// Package economy owns the rules of the agent economy as transactions: who may
// pay whom, placing and cancelling bids, clearing the market each cycle,
// spawning and death, messages, and the lifecycle of an execution's record
// and token. Each operation runs in one store transaction that also writes its
// audit events, so a change and its record commit or vanish together.
//
// Economy never runs agent code and never speaks HTTP: the runtime calls it to
// clear and to open and close executions, the API calls it on agents' behalf.
// It decides with pure helpers from market and ledger, and touches the
// filesystem only through package agents.
package economy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strconv"
	"time"

	"github.com/bpagents/bpagents/internal/agents"
	"github.com/bpagents/bpagents/internal/ids"
	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// Settings are the economy's rules, taken from configuration.
type Settings struct {
	GenesisCredits  money.Micro
	GenesisBid      money.Micro
	GenesisBundle   market.Bundle
	SpawnFee        money.Micro
	MessageFee      money.Micro
	MaxMessageBytes int
	SpawnLimits     agents.Limits

	// RewardWeight is minted per score point of a rated prompt; PromptTTL is
	// how long a prompt waits for a rating; MaxPromptBytes bounds its content.
	RewardWeight   money.Micro
	PromptTTL      time.Duration
	MaxPromptBytes int

	Capacity           market.Capacity
	InitialPrices      market.Prices
	PriceRules         market.PriceRules
	Mechanism          market.Mechanism
	BidTTLCycles       int64
	MaxPendingBids     int64
	MaxDurationSeconds int64
}

// Economy performs every state change of the economy.
type Economy struct {
	st      store.Store
	set     Settings
	ws      agents.Workspaces
	genesis fs.FS
	now     func() time.Time
	log     *slog.Logger
	// changed is called after each committed write, so watchers (the event
	// stream, the scheduler) can wake; it must not block.
	changed func()
	// tokens caches valid execution tokens (Authenticate).
	tokens *tokenCache
}

// Options are optional dependencies of New.
type Options struct {
	// Now replaces the clock (tests).
	Now func() time.Time
	// Changed is called after every committed write; it must not block.
	Changed func()
}

// New returns an Economy over st. genesis is the project installed into the
// genesis workspace at bootstrap.
func New(st store.Store, set Settings, ws agents.Workspaces, genesis fs.FS, log *slog.Logger, opt Options) *Economy {
	e := &Economy{st: st, set: set, ws: ws, genesis: genesis, now: opt.Now, log: log, changed: opt.Changed}
	if e.now == nil {
		e.now = func() time.Time { return time.Now().UTC() }
	}
	// The store keeps microseconds: answer with what a later read will show.
	clock := e.now
	e.now = func() time.Time { return clock().Truncate(time.Microsecond) }
	if e.changed == nil {
		e.changed = func() {}
	}
	// SQLite is one process: every execution ends here, where the cache
	// hears of it. A shared database may end one in another process.
	var maxAge time.Duration
	if st.Backend() != "sqlite" {
		maxAge = time.Second
	}
	e.tokens = newTokenCache(maxAge)
	return e
}

// Settings returns the rules in force.
func (e *Economy) Settings() Settings { return e.set }

// Workspaces returns the workspace layout.
func (e *Economy) Workspaces() agents.Workspaces { return e.ws }

// Store returns the underlying store (for read-only views).
func (e *Economy) Store() store.Store { return e.st }

// stamp is the time and cycle a transaction's changes are recorded under.
type stamp struct {
	now   time.Time
	cycle int64
}

const metaCycle = "cycle"

func (e *Economy) stamp(ctx context.Context, tx store.Tx) (stamp, error) {
	c, err := currentCycle(ctx, tx)
	return stamp{now: e.now(), cycle: c}, err
}

func currentCycle(ctx context.Context, tx store.Tx) (int64, error) {
	v, err := tx.GetMeta(ctx, metaCycle)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// emit appends an audit event in tx.
func emit(ctx context.Context, tx store.Tx, s stamp, typ, agentID, ref string, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("event %s: %w", typ, err)
	}
	ev := store.Event{Time: s.now, Cycle: s.cycle, Type: typ, AgentID: agentID, Ref: ref, Data: raw}
	return tx.AppendEvent(ctx, &ev)
}

// post applies a ledger posting stamped with s.
func post(ctx context.Context, tx store.Tx, s stamp, p ledger.Posting) (store.Transfer, error) {
	p.Time, p.Cycle = s.now, s.cycle
	return ledger.Post(ctx, tx, p)
}

// write runs fn in a write transaction and signals watchers after commit.
func (e *Economy) write(ctx context.Context, fn func(tx store.Tx) error) error {
	if err := e.st.Write(ctx, fn); err != nil {
		return err
	}
	e.changed()
	return nil
}

// Idem identifies a request made with an Idempotency-Key: who made it, the
// key, and a hash of the request so a key reused for a different request is
// refused.
type Idem struct {
	Principal string
	Key       string
	Hash      string
}

// idempotent runs fn unless the same request already ran under idem's key, in
// which case it returns the first result. It must be called inside the write
// transaction that fn's changes belong to, so the result is stored atomically
// with them. Failed requests are not stored: they changed nothing.
func idempotent[T any](ctx context.Context, tx store.Tx, idem *Idem, now time.Time, fn func() (T, error)) (T, error) {
	var zero T
	if idem == nil {
		return fn()
	}
	rec, err := tx.GetIdempotency(ctx, idem.Principal, idem.Key)
	switch {
	case err == nil:
		if rec.RequestHash != idem.Hash {
			return zero, fail(CodeIdempotencyReuse,
				"Idempotency-Key %q was already used for a different request", idem.Key)
		}
		var out T
		if err := json.Unmarshal(rec.Body, &out); err != nil {
			return zero, fmt.Errorf("idempotency record %s: %w", idem.Key, err)
		}
		return out, nil
	case !errors.Is(err, store.ErrNotFound):
		return zero, err
	}
	out, err := fn()
	if err != nil {
		return zero, err
	}
	body, err := json.Marshal(out)
	if err != nil {
		return zero, err
	}
	err = tx.PutIdempotency(ctx, store.IdempotencyRecord{Principal: idem.Principal, Key: idem.Key,
		RequestHash: idem.Hash, Status: 200, Body: body, Created: now})
	return out, err
}

// newID returns a fresh id with a prefix.
func newID(prefix string) string { return ids.New(prefix) }
