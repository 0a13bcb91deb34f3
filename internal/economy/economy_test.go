package economy_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpagents/bpagents"
	"github.com/bpagents/bpagents/internal/agents"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/sqlite"
)

func TestBootstrapCreatesGenesisOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil) // bootstraps once
	set := w.set
	g := w.balance(economy.GenesisID)
	if g.Status != store.AgentAlive || g.Balance != set.GenesisCredits-set.GenesisBid || g.Held != set.GenesisBid {
		t.Fatalf("genesis after bootstrap: %+v", g)
	}
	bids, err := w.eco.Bids(t.Context(), economy.GenesisID, store.BidPending, 0)
	if err != nil || len(bids) != 1 || bids[0].Amount != set.GenesisBid || bids[0].Bundle != set.GenesisBundle {
		t.Fatalf("genesis bids %+v, %v", bids, err)
	}
	ws := filepath.Join(w.root, "genesis")
	if data, err := os.ReadFile(filepath.Join(ws, "lib", "util.py")); err != nil || string(data) != "X = 1\n" {
		t.Fatalf("genesis workspace not installed: %q, %v", data, err)
	}
	mk, err := w.eco.Market(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if mk.Resources["cpu"].Price != set.InitialPrices.CPU || mk.Resources["cpu"].Capacity != 2 ||
		mk.Resources["attention"].Price != set.InitialPrices.Attention || mk.PendingBids != 1 || mk.Cycle != 0 {
		t.Fatalf("markets after bootstrap: %+v", mk)
	}
	r := w.audit()
	if r.Minted != set.GenesisCredits || r.Held != set.GenesisBid {
		t.Fatalf("report %+v", r)
	}

	// The agent rewrites its own code; a restart must neither reinstall it
	// nor create anything.
	if err := os.WriteFile(filepath.Join(ws, "main.py"), []byte("print('evolved')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	same := w.unchanged()
	for range 2 {
		created, err := w.eco.Bootstrap(t.Context())
		if err != nil || created {
			t.Fatalf("second Bootstrap = %v, %v; want false, nil", created, err)
		}
	}
	same("a second Bootstrap")
	if data, _ := os.ReadFile(filepath.Join(ws, "main.py")); string(data) != "print('evolved')\n" {
		t.Fatalf("bootstrap overwrote the agent's code: %q", data)
	}
}

func TestBootstrapKeepsExistingWorkspaceAndUsesEmbeddedGenesis(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	root := filepath.Join(dir, "workspaces")
	// Case 1: a workspace already has files (restored from a backup, say).
	if err := os.MkdirAll(filepath.Join(root, "genesis"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "genesis", "main.py"), []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eco := economy.New(st, settings(t), agents.Workspaces{Root: root}, bpagents.GenesisProject(), slog.New(slog.DiscardHandler), economy.Options{})
	created, err := eco.Bootstrap(t.Context())
	if err != nil || !created {
		t.Fatalf("Bootstrap = %v, %v", created, err)
	}
	if data, _ := os.ReadFile(filepath.Join(root, "genesis", "main.py")); string(data) != "mine\n" {
		t.Fatalf("bootstrap overwrote a non-empty workspace: %q", data)
	}

	// Case 2: a fresh home gets the embedded genesis project.
	root2 := filepath.Join(dir, "workspaces2")
	st2, err := sqlite.Open(t.Context(), filepath.Join(dir, "db2"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	eco2 := economy.New(st2, settings(t), agents.Workspaces{Root: root2}, bpagents.GenesisProject(), slog.New(slog.DiscardHandler), economy.Options{})
	if created, err := eco2.Bootstrap(t.Context()); err != nil || !created {
		t.Fatalf("Bootstrap = %v, %v", created, err)
	}
	data, err := os.ReadFile(filepath.Join(root2, "genesis", "main.py"))
	if err != nil || !strings.Contains(string(data), "env.json") {
		t.Fatalf("embedded genesis main.py not installed: %v", err)
	}
}

func TestTransfer(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.agent("a", money.Credits(100))
	w.agent("b", money.Credits(10))
	w.agent("dead", money.Credits(1))
	if err := w.eco.Kill(t.Context(), "dead"); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	res, err := w.eco.Transfer(ctx, "a", economy.TransferRequest{ToID: "b", Amount: money.MustParse("12.5"), Memo: "thanks",
		FromID: "a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.FromID != "a" || res.ToID != "b" || res.Amount != money.MustParse("12.5") || res.Balance != money.MustParse("87.5") ||
		res.TransferID == 0 || res.Memo != "thanks" {
		t.Fatalf("result %+v", res)
	}
	if a, b := w.balance("a"), w.balance("b"); a.Balance != money.MustParse("87.5") || b.Balance != money.MustParse("22.5") {
		t.Fatalf("balances a %s b %s", a.Balance, b.Balance)
	}
	hist, err := w.eco.History(ctx, "b", 0, 0)
	if err != nil || len(hist) != 2 || hist[0].Amount != money.MustParse("12.5") || hist[0].Counterparty != "a" ||
		hist[0].Kind != "transfer" || hist[1].Kind != "endowment" {
		t.Fatalf("history of b: %+v, %v", hist, err)
	}
	w.audit()

	long := strings.Repeat("x", economy.MaxMemoBytes+1)
	tests := []struct {
		name  string
		actor string
		req   economy.TransferRequest
		code  economy.Code
	}{
		{"insufficient", "b", economy.TransferRequest{ToID: "a", Amount: money.MustParse("22.500001")}, economy.CodeInsufficientFunds},
		{"to self", "a", economy.TransferRequest{ToID: "a", Amount: 1}, economy.CodeInvalid},
		{"to unknown", "a", economy.TransferRequest{ToID: "ghost", Amount: 1}, economy.CodeNotFound},
		{"to the human", "a", economy.TransferRequest{ToID: "human", Amount: 1}, economy.CodeNotFound},
		{"to a system account", "a", economy.TransferRequest{ToID: "system:burn", Amount: 1}, economy.CodeNotFound},
		{"to a hold account", "a", economy.TransferRequest{ToID: "hold:b", Amount: 1}, economy.CodeNotFound},
		{"to dead agent", "a", economy.TransferRequest{ToID: "dead", Amount: 1}, economy.CodeConflict},
		{"from dead agent", "dead", economy.TransferRequest{ToID: "a", Amount: 1}, economy.CodeConflict},
		{"from unknown agent", "ghost", economy.TransferRequest{ToID: "a", Amount: 1}, economy.CodeNotFound},
		{"from_id of another agent", "a", economy.TransferRequest{FromID: "b", ToID: "genesis", Amount: 1}, economy.CodeForbidden},
		{"zero", "a", economy.TransferRequest{ToID: "b", Amount: 0}, economy.CodeInvalid},
		{"negative", "a", economy.TransferRequest{ToID: "b", Amount: -1}, economy.CodeInvalid},
		{"over max", "a", economy.TransferRequest{ToID: "b", Amount: money.Max + 1}, economy.CodeInvalid},
		{"no recipient", "a", economy.TransferRequest{Amount: 1}, economy.CodeInvalid},
		{"memo too long", "a", economy.TransferRequest{ToID: "b", Amount: 1, Memo: long}, economy.CodeInvalid},
		{"memo not UTF-8", "a", economy.TransferRequest{ToID: "b", Amount: 1, Memo: "\xff"}, economy.CodeInvalid},
	}
	for _, tc := range tests {
		same := w.unchanged()
		_, err := w.eco.Transfer(ctx, tc.actor, tc.req, nil)
		e := wantCode(t, tc.name, err, tc.code)
		same(tc.name)
		if tc.code == economy.CodeInsufficientFunds {
			if e.Extra["need"] != money.MustParse("22.500001") || e.Extra["available"] != money.MustParse("22.5") {
				t.Fatalf("insufficient funds extra: %v", e.Extra)
			}
		}
	}
}

func TestPlaceBid(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(s *economy.Settings) { s.MaxPendingBids = 3 })
	w.agent("a", money.Credits(100))
	w.agent("b", money.Credits(1))
	w.agent("dead", money.Credits(1))
	if err := w.eco.Kill(t.Context(), "dead"); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	v := w.bid("a", money.Credits(5))
	if v.Status != store.BidPending || v.AgentID != "a" || v.PayerID != "a" || v.Amount != money.Credits(5) ||
		v.Bundle != small || v.ExpiresCycle != w.set.BidTTLCycles {
		t.Fatalf("bid %+v", v)
	}
	if a := w.balance("a"); a.Balance != money.Credits(95) || a.Held != money.Credits(5) {
		t.Fatalf("after a bid: %+v", a)
	}
	// for_agent: a pays, b wakes.
	fv, err := w.eco.PlaceBid(ctx, "a", economy.BidRequest{Amount: money.Credits(3), Bundle: small, ForAgent: "b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fv.AgentID != "b" || fv.PayerID != "a" {
		t.Fatalf("for_agent bid %+v", fv)
	}
	if a, b := w.balance("a"), w.balance("b"); a.Held != money.Credits(8) || b.Held != 0 || b.Balance != money.Credits(1) {
		t.Fatalf("for_agent held from the wrong account: a %+v b %+v", a, b)
	}
	if bids, _ := w.eco.Bids(ctx, "b", "", 0); len(bids) != 1 || bids[0].ID != fv.ID {
		t.Fatalf("b does not see the bid that wakes it: %+v", bids)
	}
	w.audit()

	reserve := market.Reserve(small, w.set.InitialPrices)
	big := market.Bundle{CPUMillis: 2000, MemoryMB: 4096, DurationSeconds: 300, Tokens: 1000, Attention: 1}
	tests := []struct {
		name  string
		actor string
		req   economy.BidRequest
		code  economy.Code
		field string
	}{
		{"below reserve", "a", economy.BidRequest{Amount: reserve - 1, Bundle: small}, economy.CodeBelowReserve, ""},
		{"big bundle below reserve", "a", economy.BidRequest{Amount: money.Credits(50), Bundle: big}, economy.CodeBelowReserve, ""},
		{"insufficient", "b", economy.BidRequest{Amount: money.Credits(2), Bundle: small}, economy.CodeInsufficientFunds, ""},
		{"for unknown agent", "a", economy.BidRequest{Amount: money.Credits(2), Bundle: small, ForAgent: "ghost"}, economy.CodeNotFound, ""},
		{"for dead agent", "a", economy.BidRequest{Amount: money.Credits(2), Bundle: small, ForAgent: "dead"}, economy.CodeConflict, ""},
		{"by dead agent", "dead", economy.BidRequest{Amount: money.Credits(2), Bundle: small}, economy.CodeConflict, ""},
		{"agent_id of another", "a", economy.BidRequest{Amount: money.Credits(2), Bundle: small, AgentID: "b"}, economy.CodeForbidden, ""},
		{"zero amount", "a", economy.BidRequest{Amount: 0, Bundle: small}, economy.CodeInvalid, "amount"},
		{"no cpu", "a", economy.BidRequest{Amount: money.Credits(2), Bundle: market.Bundle{MemoryMB: 1, DurationSeconds: 1}}, economy.CodeInvalid, "bundle.cpu"},
		{"too long", "a", economy.BidRequest{Amount: money.Credits(2), Bundle: market.Bundle{CPUMillis: 1, MemoryMB: 1, DurationSeconds: 301}}, economy.CodeInvalid, "bundle.duration_seconds"},
		{"over capacity", "a", economy.BidRequest{Amount: money.Credits(90), Bundle: market.Bundle{CPUMillis: 2001, MemoryMB: 1, DurationSeconds: 1}}, economy.CodeInvalid, "bundle.cpu"},
		{"two attention slots", "a", economy.BidRequest{Amount: money.Credits(90), Bundle: market.Bundle{CPUMillis: 1, MemoryMB: 1, DurationSeconds: 1, Attention: 2}}, economy.CodeInvalid, "bundle.attention"},
	}
	for _, tc := range tests {
		same := w.unchanged()
		_, err := w.eco.PlaceBid(ctx, tc.actor, tc.req, nil)
		e := wantCode(t, tc.name, err, tc.code)
		same(tc.name)
		if tc.field != "" && e.Extra["field"] != tc.field {
			t.Fatalf("%s: field %v, want %s", tc.name, e.Extra["field"], tc.field)
		}
		if tc.code == economy.CodeBelowReserve {
			want := market.Reserve(tc.req.Bundle, w.set.InitialPrices)
			if e.Extra["reserve"] != want || !strings.Contains(e.Detail, want.String()) {
				t.Fatalf("%s: reserve %v (%s), want %s", tc.name, e.Extra["reserve"], e.Detail, want)
			}
		}
	}
	// Exactly at the reserve is enough.
	w.bid("a", reserve)
	// The pending limit counts the bids a pays for, including for_agent ones.
	same := w.unchanged()
	_, err = w.eco.PlaceBid(ctx, "a", economy.BidRequest{Amount: money.Credits(1), Bundle: small}, nil)
	e := wantCode(t, "over the pending limit", err, economy.CodeLimit)
	if e.Extra["limit"] != int64(3) || e.Extra["pending"] != int64(3) {
		t.Fatalf("limit extra %v", e.Extra)
	}
	same("over the pending limit")
}

func TestCancelBid(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.agent("a", money.Credits(100))
	w.agent("b", money.Credits(100))
	w.agent("pauper", 0)
	ctx := t.Context()
	mine := w.bid("a", money.Credits(5))
	theirs := w.bid("b", money.Credits(7))

	v, err := w.eco.CancelBid(ctx, "a", mine.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != store.BidCancelled || v.ID != mine.ID {
		t.Fatalf("cancelled view %+v", v)
	}
	if a := w.balance("a"); a.Balance != money.Credits(100) || a.Held != 0 {
		t.Fatalf("hold not released: %+v", a)
	}
	w.audit()

	cases := []struct {
		name, actor, id string
		code            economy.Code
	}{
		{"another agent's bid", "a", theirs.ID, economy.CodeForbidden},
		{"already cancelled", "a", mine.ID, economy.CodeConflict},
		{"unknown bid", "a", "bid_nope", economy.CodeNotFound},
	}
	for _, tc := range cases {
		same := w.unchanged()
		_, err := w.eco.CancelBid(ctx, tc.actor, tc.id, nil)
		wantCode(t, tc.name, err, tc.code)
		same(tc.name)
	}

	// A bid that won cannot be cancelled.
	w.clear()
	if w.getBid(theirs.ID).Status != store.BidWon {
		t.Fatalf("b's bid did not win")
	}
	_, err = w.eco.CancelBid(ctx, "b", theirs.ID, nil)
	wantCode(t, "won bid", err, economy.CodeConflict)

	// Cancelling the only bid that would wake a penniless agent leaves it
	// with nothing: it dies, and the payer gets the hold back.
	fv, err := w.eco.PlaceBid(ctx, "a", economy.BidRequest{Amount: money.Credits(2), Bundle: small, ForAgent: "pauper"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.eco.CancelBid(ctx, "pauper", fv.ID, nil)
	wantCode(t, "the woken agent cancels the payer's bid", err, economy.CodeForbidden)
	if _, err := w.eco.CancelBid(ctx, "a", fv.ID, nil); err != nil {
		t.Fatal(err)
	}
	if p := w.balance("pauper"); p.Status != store.AgentDead {
		t.Fatalf("penniless agent without a bid: %+v", p)
	}
	if a := w.balance("a"); a.Balance != money.Credits(100) || a.Held != 0 {
		t.Fatalf("payer after cancelling: %+v", a)
	}
	w.audit()
}

// TestTextWithNULIsRefused: text every store can keep is valid UTF-8 without
// NUL (PostgreSQL refuses NUL in text), so an agent's NUL is a clear refusal
// that changes nothing, on every backend.
func TestTextWithNULIsRefused(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.agent("a", money.Credits(10))
	w.agent("b", money.Credits(10))
	ctx := t.Context()
	_, err := w.eco.SendMessage(ctx, "a", economy.MessageRequest{ToID: "b", Content: "hi\x00there"}, nil)
	wantCode(t, "message with NUL", err, economy.CodeInvalid)
	_, err = w.eco.Transfer(ctx, "a", economy.TransferRequest{ToID: "b", Amount: money.Credits(1), Memo: "x\x00"}, nil)
	wantCode(t, "transfer memo with NUL", err, economy.CodeInvalid)
	_, err = w.eco.Mint(ctx, "a", money.Credits(1), "grant\x00", nil)
	wantCode(t, "mint memo with NUL", err, economy.CodeInvalid)
	if b := w.balance("a"); b.Balance != money.Credits(10) {
		t.Fatalf("a refused request moved money: balance %s", b.Balance)
	}
}
