package economy_test

import (
	"context"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/bpagents/bpagents/internal/agents"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/sqlite"
)

// settings converts config.Default() into the economy's rules the way the
// composition root does, with a fixed CPU capacity of 2 cores so results do
// not depend on the machine.
func settings(t *testing.T) economy.Settings {
	t.Helper()
	cfg := config.Default()
	r := cfg.Market.Resources
	r["cpu"] = config.Resource{Capacity: 2, Price: r["cpu"].Price, Floor: r["cpu"].Floor, Ceiling: r["cpu"].Ceiling}
	mech, err := market.ParseMechanism(cfg.Market.Mechanism)
	if err != nil {
		t.Fatal(err)
	}
	prices := func(pick func(config.Resource) money.Micro) market.Prices {
		return market.Prices{CPU: pick(r["cpu"]), Memory: pick(r["memory_mb"]), Tokens: pick(r["tokens"]),
			Attention: pick(r["attention"])}
	}
	g := cfg.Genesis
	return economy.Settings{
		GenesisCredits: cfg.Economy.GenesisCredits,
		GenesisBid:     g.Bid,
		GenesisBundle: market.Bundle{CPUMillis: int64(math.Round(g.CPU * 1000)), MemoryMB: g.MemoryMB,
			DurationSeconds: g.DurationSeconds},
		SpawnFee:        cfg.Economy.SpawnFee,
		MessageFee:      cfg.Economy.MessageFee,
		MaxMessageBytes: cfg.Economy.MaxMessageBytes,
		RewardWeight:    cfg.Economy.RewardWeight,
		PromptTTL:       cfg.Economy.PromptTTL,
		MaxPromptBytes:  cfg.Economy.MaxPromptBytes,
		SpawnLimits:     agents.Limits{MaxFiles: cfg.Economy.MaxSpawnFiles, MaxBytes: cfg.Economy.MaxSpawnBytes},
		Capacity: market.Capacity{CPUMillis: 2000, MemoryMB: int64(r["memory_mb"].Capacity),
			Tokens: int64(r["tokens"].Capacity), Attention: int64(r["attention"].Capacity)},
		InitialPrices: prices(func(r config.Resource) money.Micro { return r.Price }),
		PriceRules: market.PriceRules{TargetLow: cfg.Market.TargetLow, TargetHigh: cfg.Market.TargetHigh,
			StepUp: cfg.Market.StepUp, StepDown: cfg.Market.StepDown,
			Floor:   prices(func(r config.Resource) money.Micro { return r.Floor }),
			Ceiling: prices(func(r config.Resource) money.Micro { return r.Ceiling })},
		Mechanism:          mech,
		BidTTLCycles:       cfg.Market.BidTTLCycles,
		MaxPendingBids:     cfg.Market.MaxPendingBids,
		MaxDurationSeconds: cfg.Market.MaxDurationSeconds,
	}
}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// world is an Economy over a real database (SQLite unless a test picks
// another) and workspace directory.
type world struct {
	t     *testing.T
	eco   *economy.Economy
	st    store.Store
	root  string // workspaces root
	clock *clock
	set   economy.Settings
	// changed counts the economy's after-commit notifications.
	changed atomic.Int64
}

// genesisProject is a small project installed into the genesis workspace.
var genesisProject = fstest.MapFS{
	"main.py":     {Data: []byte("import json\nprint(json.load(open('env.json'))['agent_id'])\n"), Mode: 0o644},
	"lib/util.py": {Data: []byte("X = 1\n"), Mode: 0o644},
}

// small is a cheap valid bundle: its reserve at the default prices is 0.756.
var small = market.Bundle{CPUMillis: 500, MemoryMB: 256, DurationSeconds: 10}

func newWorld(t *testing.T, tweak func(*economy.Settings)) *world {
	t.Helper()
	return newWorldOn(t, openSQLite, tweak)
}

// openSQLite opens a fresh SQLite store, closed when t ends.
func openSQLite(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "bpagents.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newWorldOn builds a world over the fresh, empty store open returns.
func newWorldOn(t *testing.T, open func(t *testing.T) store.Store, tweak func(*economy.Settings)) *world {
	t.Helper()
	dir := t.TempDir()
	st := open(t)
	set := settings(t)
	if tweak != nil {
		tweak(&set)
	}
	w := &world{t: t, st: st, root: filepath.Join(dir, "workspaces"), set: set,
		clock: &clock{now: time.Date(2026, 11, 25, 19, 0, 0, 0, time.UTC)}}
	log := slog.New(slog.DiscardHandler)
	w.eco = economy.New(st, set, agents.Workspaces{Root: w.root}, genesisProject, log, economy.Options{Now: w.clock.Now,
		Changed: func() { w.changed.Add(1) }})
	if _, err := w.eco.Bootstrap(context.Background()); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	return w
}

// agent creates an operator-made agent with credits and a one-file project.
func (w *world) agent(id string, credits money.Micro) {
	w.t.Helper()
	_, err := w.eco.CreateAgent(w.t.Context(), economy.CreateAgentRequest{ID: id, Credits: credits,
		Files: map[string]string{"main.py": "print('" + id + "')\n"}})
	if err != nil {
		w.t.Fatalf("CreateAgent(%s): %v", id, err)
	}
}

func (w *world) balance(id string) economy.BalanceView {
	w.t.Helper()
	b, err := w.eco.Balance(w.t.Context(), id)
	if err != nil {
		w.t.Fatalf("Balance(%s): %v", id, err)
	}
	return b
}

func (w *world) totals() economy.MoneyTotals {
	w.t.Helper()
	tot, err := w.eco.Totals(w.t.Context())
	if err != nil {
		w.t.Fatal(err)
	}
	return tot.Money
}

// audit fails the test unless the books are clean and balanced.
func (w *world) audit() ledger.Report {
	w.t.Helper()
	r, err := ledger.Audit(w.t.Context(), w.st)
	if err != nil {
		w.t.Fatalf("Audit: %v", err)
	}
	if !r.OK {
		w.t.Fatalf("audit failed: %q", r.Violations)
	}
	if r.Minted != r.Circulating+r.Held+r.Burned {
		w.t.Fatalf("minted %s != circulating %s + held %s + burned %s", r.Minted, r.Circulating, r.Held, r.Burned)
	}
	return r
}

// count returns the number of transfers, events, agents and bids.
func (w *world) count() (transfers, events, agentsN, bids int) {
	w.t.Helper()
	ctx := w.t.Context()
	err := w.st.Read(ctx, func(tx store.Tx) error {
		trs, err := tx.ListTransfers(ctx, store.TransferFilter{})
		if err != nil {
			return err
		}
		evs, err := tx.ListEvents(ctx, store.EventFilter{})
		if err != nil {
			return err
		}
		ags, err := tx.ListAgents(ctx, store.AgentFilter{})
		if err != nil {
			return err
		}
		bs, err := tx.ListBids(ctx, store.BidFilter{})
		transfers, events, agentsN, bids = len(trs), len(evs), len(ags), len(bs)
		return err
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return
}

// workspaces lists the directories under the workspaces root.
func (w *world) workspaces() []string {
	w.t.Helper()
	entries, err := os.ReadDir(w.root)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func (w *world) bid(actor string, amount money.Micro) economy.BidView {
	w.t.Helper()
	v, err := w.eco.PlaceBid(w.t.Context(), actor, economy.BidRequest{Amount: amount, Bundle: small}, nil)
	if err != nil {
		w.t.Fatalf("PlaceBid(%s, %s): %v", actor, amount, err)
	}
	return v
}

func (w *world) clear() economy.ClearResult {
	w.t.Helper()
	res, err := w.eco.Clear(w.t.Context())
	if err != nil {
		w.t.Fatalf("Clear: %v", err)
	}
	return res
}

func (w *world) getBid(id string) store.Bid {
	w.t.Helper()
	var b store.Bid
	ctx := w.t.Context()
	if err := w.st.Read(ctx, func(tx store.Tx) error {
		var err error
		b, err = tx.GetBid(ctx, id)
		return err
	}); err != nil {
		w.t.Fatal(err)
	}
	return b
}

func (w *world) getExecution(id string) store.Execution {
	w.t.Helper()
	var e store.Execution
	ctx := w.t.Context()
	if err := w.st.Read(ctx, func(tx store.Tx) error {
		var err error
		e, err = tx.GetExecution(ctx, id)
		return err
	}); err != nil {
		w.t.Fatal(err)
	}
	return e
}

// wantCode fails unless err is an *economy.Error with the code.
func wantCode(t *testing.T, what string, err error, code economy.Code) *economy.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %s", what, code)
	}
	e, ok := economy.AsError(err)
	if !ok {
		t.Fatalf("%s: error %v (%T) is not an *economy.Error, want %s", what, err, err, code)
	}
	if e.Code != code {
		t.Fatalf("%s: code %s (%s), want %s", what, e.Code, e.Detail, code)
	}
	if e.Detail == "" {
		t.Fatalf("%s: empty detail", what)
	}
	return e
}

// unchanged snapshots money and rows, and returns a check that nothing moved.
func (w *world) unchanged() func(what string) {
	w.t.Helper()
	tot := w.totals()
	tr, ev, ag, bi := w.count()
	dirs := w.workspaces()
	return func(what string) {
		w.t.Helper()
		if got := w.totals(); got != tot {
			w.t.Fatalf("%s moved money: %+v → %+v", what, tot, got)
		}
		if tr2, ev2, ag2, bi2 := w.count(); tr2 != tr || ev2 != ev || ag2 != ag || bi2 != bi {
			w.t.Fatalf("%s changed rows: transfers %d→%d events %d→%d agents %d→%d bids %d→%d",
				what, tr, tr2, ev, ev2, ag, ag2, bi, bi2)
		}
		if got := w.workspaces(); !slices.Equal(got, dirs) {
			w.t.Fatalf("%s changed workspaces: %v → %v", what, dirs, got)
		}
		w.audit()
	}
}
