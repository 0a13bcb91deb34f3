package economy_test

import (
	"testing"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/store"
)

func TestClearSettlesWinner(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.agent("a", money.Credits(100))
	// Genesis already bids 5 for the genesis bundle; a bids 7.
	v := w.bid("a", money.Credits(7))
	burnedBefore := w.totals().Burned

	res := w.clear()
	if res.Cycle != 1 || res.Pending != 2 || res.Winners != 2 || res.Expired != 0 || res.Revenue != money.Credits(12) ||
		len(res.Queued) != 2 {
		t.Fatalf("clear result %+v", res)
	}
	b := w.getBid(v.ID)
	if b.Status != store.BidWon || b.Paid != money.Credits(7) || b.ExecutionID == "" || b.ClosedCycle != 1 {
		t.Fatalf("won bid %+v", b)
	}
	ex := w.getExecution(b.ExecutionID)
	if ex.Status != store.ExecQueued || ex.AgentID != "a" || ex.BidID != v.ID || ex.Bundle != small ||
		ex.Paid != money.Credits(7) || ex.Cycle != 1 {
		t.Fatalf("queued execution %+v", ex)
	}
	if a := w.balance("a"); a.Balance != money.Credits(93) || a.Held != 0 {
		t.Fatalf("winner's hold not settled: %+v", a)
	}
	if got := w.totals().Burned - burnedBefore; got != money.Credits(12) {
		t.Fatalf("burned %s in clearing, want 12", got)
	}
	queued, err := w.eco.QueuedExecutions(t.Context())
	if err != nil || len(queued) != 2 || queued[0].Seq > queued[1].Seq {
		t.Fatalf("QueuedExecutions = %+v, %v; want two, oldest first", queued, err)
	}
	mk, _ := w.eco.Market(t.Context())
	if mk.Cycle != 1 || mk.PendingBids != 0 {
		t.Fatalf("market after clearing %+v", mk)
	}
	w.audit()
}

func TestClearExpiresBidsAfterTTL(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(s *economy.Settings) { s.BidTTLCycles = 2 })
	w.agent("a", money.Credits(100))
	// a's first bid wins at cycle 1; while its execution waits, a cannot win
	// again, so its second bid sits until its TTL runs out.
	first := w.bid("a", money.Credits(9))
	second := w.bid("a", money.Credits(4))
	if second.ExpiresCycle != 2 {
		t.Fatalf("ExpiresCycle = %d, want 2", second.ExpiresCycle)
	}
	w.clear() // cycle 1
	if w.getBid(first.ID).Status != store.BidWon || w.getBid(second.ID).Status != store.BidPending {
		t.Fatal("the busy agent won twice in one cycle")
	}
	w.clear() // cycle 2: still within the TTL, a still busy
	if b := w.getBid(second.ID); b.Status != store.BidPending {
		t.Fatalf("bid closed before its TTL: %+v", b)
	}
	if a := w.balance("a"); a.Held != money.Credits(4) {
		t.Fatalf("held %s", a.Held)
	}
	res := w.clear() // cycle 3: past the TTL
	if res.Expired != 1 {
		t.Fatalf("expired %d, want 1", res.Expired)
	}
	b := w.getBid(second.ID)
	if b.Status != store.BidExpired || b.ClosedCycle != 3 || b.Paid != 0 {
		t.Fatalf("expired bid %+v", b)
	}
	if a := w.balance("a"); a.Balance != money.Credits(91) || a.Held != 0 || a.Status != store.AgentAlive {
		t.Fatalf("hold not released on expiry: %+v", a)
	}
	w.audit()
}

func TestBusyAgentWinsOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.agent("a", money.Credits(100))
	ctx := t.Context()
	hi := w.bid("a", money.Credits(9))
	lo := w.bid("a", money.Credits(3))
	w.clear()
	if w.getBid(hi.ID).Status != store.BidWon || w.getBid(lo.ID).Status != store.BidPending {
		t.Fatalf("want the higher bid to win alone")
	}
	exID := w.getBid(hi.ID).ExecutionID
	w.clear()
	if w.getBid(lo.ID).Status != store.BidPending {
		t.Fatal("agent with a queued execution won again")
	}
	if _, err := w.eco.StartExecution(ctx, exID, "test", "http://api"); err != nil {
		t.Fatal(err)
	}
	w.clear()
	if w.getBid(lo.ID).Status != store.BidPending {
		t.Fatal("agent with a running execution won again")
	}
	if _, err := w.eco.FinishExecution(ctx, exID, sandbox.Result{Reason: sandbox.ReasonExited}); err != nil {
		t.Fatal(err)
	}
	if a := w.balance("a"); a.Status != store.AgentAlive {
		t.Fatalf("agent with a pending bid died: %+v", a)
	}
	w.clear()
	if w.getBid(lo.ID).Status != store.BidWon {
		t.Fatal("idle agent's pending bid did not win")
	}
	w.audit()
}

func TestClearRespectsCapacity(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	if _, err := w.eco.CancelBid(ctx, economy.GenesisID, mustPendingBid(t, w, economy.GenesisID), nil); err != nil {
		t.Fatal(err)
	}
	half := market.Bundle{CPUMillis: 1000, MemoryMB: 100, DurationSeconds: 10}
	ids := map[string]string{}
	for i, id := range []string{"a", "b", "c"} {
		w.agent(id, money.Credits(100))
		v, err := w.eco.PlaceBid(ctx, id, economy.BidRequest{Amount: money.Credits(int64(10 - i)), Bundle: half}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = v.ID
	}
	res := w.clear()
	if res.Winners != 2 {
		t.Fatalf("%d winners for 2 cores of capacity and three 1-core bids", res.Winners)
	}
	if w.getBid(ids["a"]).Status != store.BidWon || w.getBid(ids["b"]).Status != store.BidWon ||
		w.getBid(ids["c"]).Status != store.BidPending {
		t.Fatal("the two highest bids should win")
	}
	// Capacity held by queued executions is not free next cycle.
	if res := w.clear(); res.Winners != 0 {
		t.Fatalf("%d winners while all CPU is taken", res.Winners)
	}
	w.audit()
}

func mustPendingBid(t *testing.T, w *world, agent string) string {
	t.Helper()
	bids, err := w.eco.Bids(t.Context(), agent, store.BidPending, 0)
	if err != nil || len(bids) != 1 {
		t.Fatalf("pending bids of %s: %+v, %v", agent, bids, err)
	}
	return bids[0].ID
}

func TestPricesMove(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	if _, err := w.eco.CancelBid(ctx, economy.GenesisID, mustPendingBid(t, w, economy.GenesisID), nil); err != nil {
		t.Fatal(err)
	}
	p0 := w.set.InitialPrices
	// Idle market: every utilization is 0 < target_low, so prices fall 5%.
	w.clear()
	mk, err := w.eco.Market(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantCPU := p0.CPU - p0.CPU/20
	if mk.Resources["cpu"].Price != wantCPU || mk.Resources["attention"].Price != p0.Attention-p0.Attention/20 {
		t.Fatalf("idle prices cpu %s attention %s, want %s and %s", mk.Resources["cpu"].Price,
			mk.Resources["attention"].Price, wantCPU, p0.Attention-p0.Attention/20)
	}
	// A bid that takes all the CPU pushes the CPU price up 10%.
	w.agent("a", money.Credits(500))
	full := market.Bundle{CPUMillis: 2000, MemoryMB: 100, DurationSeconds: 10}
	if _, err := w.eco.PlaceBid(ctx, "a", economy.BidRequest{Amount: money.Credits(50), Bundle: full}, nil); err != nil {
		t.Fatal(err)
	}
	res := w.clear()
	if res.Winners != 1 {
		t.Fatal("the full-CPU bid did not win")
	}
	mk, _ = w.eco.Market(ctx)
	cpu := mk.Resources["cpu"]
	if cpu.Price != wantCPU+wantCPU/10 || cpu.Utilization != 1 {
		t.Fatalf("busy cpu price %s utilization %v, want %s and 1", cpu.Price, cpu.Utilization, wantCPU+wantCPU/10)
	}
	if mem := mk.Resources["memory_mb"]; mem.Price >= p0.Memory {
		t.Fatalf("memory price did not fall at low utilization: %s", mem.Price)
	}
	// The clearing history records each cycle's prices.
	var hist []store.Clearing
	if err := w.st.Read(ctx, func(tx store.Tx) error {
		var err error
		hist, err = tx.ListClearings(ctx, 0, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].Cycle != 2 || hist[0].Prices[market.CPU] != cpu.Price || hist[1].Prices[market.CPU] != wantCPU ||
		hist[0].Winners != 1 || hist[0].Revenue != money.Credits(50) || hist[0].Allocated[market.CPU] != 2000 {
		t.Fatalf("clearing history %+v", hist)
	}
	// Bids are checked against the posted prices in force.
	reserve := market.Reserve(small, market.Prices{CPU: cpu.Price, Memory: mk.Resources["memory_mb"].Price,
		Tokens: mk.Resources["tokens"].Price, Attention: mk.Resources["attention"].Price})
	_, err = w.eco.PlaceBid(ctx, "a", economy.BidRequest{Amount: reserve - 1, Bundle: small}, nil)
	e := wantCode(t, "bid below the moved reserve", err, economy.CodeBelowReserve)
	if e.Extra["reserve"] != reserve {
		t.Fatalf("reserve %v, want %s", e.Extra["reserve"], reserve)
	}
	w.audit()
}

func TestCriticalMechanismRefunds(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(s *economy.Settings) { s.Mechanism = market.Critical })
	ctx := t.Context()
	if _, err := w.eco.CancelBid(ctx, economy.GenesisID, mustPendingBid(t, w, economy.GenesisID), nil); err != nil {
		t.Fatal(err)
	}
	big := market.Bundle{CPUMillis: 1500, MemoryMB: 256, DurationSeconds: 10}
	w.agent("a", money.Credits(100))
	w.agent("b", money.Credits(100))
	va, err := w.eco.PlaceBid(ctx, "a", economy.BidRequest{Amount: money.Credits(40), Bundle: big}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.eco.PlaceBid(ctx, "b", economy.BidRequest{Amount: money.Credits(10), Bundle: big}, nil); err != nil {
		t.Fatal(err)
	}
	res := w.clear()
	if res.Winners != 1 {
		t.Fatalf("%d winners", res.Winners)
	}
	won := w.getBid(va.ID)
	if won.Status != store.BidWon || won.Paid > won.Amount || won.Paid < money.Credits(10) {
		t.Fatalf("critical payment %s for a bid of %s against a competitor at 10", won.Paid, won.Amount)
	}
	if a := w.balance("a"); a.Balance != money.Credits(100)-won.Paid || a.Held != 0 {
		t.Fatalf("refund not released: %+v after paying %s", a, won.Paid)
	}
	w.audit()
}

// An idle agent whose last bid expires stays alive, dormant, while it has
// credits (another agent may still wake it); one without credits dies
// bankrupt.
func TestExpiredLastBid(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(s *economy.Settings) {
		s.BidTTLCycles = 2
		s.Capacity.CPUMillis = 500 // room for one small bundle at a time
	})
	w.agent("a", money.Credits(100))
	w.agent("b", money.Credits(50))
	w.agent("d", 0)
	w.bid("a", money.Credits(9))
	lo := w.bid("b", money.Credits(2))
	forD, err := w.eco.PlaceBid(t.Context(), "b", economy.BidRequest{Amount: money.Credits(1), Bundle: small, ForAgent: "d"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.clear() // a wins and holds the only room while its execution is queued
	w.clear()
	w.clear() // b's two bids expire
	if w.getBid(lo.ID).Status != store.BidExpired || w.getBid(forD.ID).Status != store.BidExpired {
		t.Fatalf("bids did not expire: %+v %+v", w.getBid(lo.ID), w.getBid(forD.ID))
	}
	if b := w.balance("b"); b.Status != store.AgentAlive || b.Balance != money.Credits(50) || b.Held != 0 {
		t.Fatalf("dormant agent b with credits: %+v", b)
	}
	if d := w.balance("d"); d.Status != store.AgentDead {
		t.Fatalf("agent d, with no credits and no bid left: %+v", d)
	}
	if v, _ := w.eco.Agent(t.Context(), "d"); v.DeathReason != economy.DeathBankrupt {
		t.Fatalf("d died for %q, want bankrupt", v.DeathReason)
	}
	// Anyone may still wake the dormant b by bidding for it.
	if _, err := w.eco.PlaceBid(t.Context(), "a", economy.BidRequest{Amount: money.Credits(1), Bundle: small, ForAgent: "b"}, nil); err != nil {
		t.Fatal(err)
	}
	if a := w.balance("a"); a.Status != store.AgentAlive {
		t.Fatalf("busy agent a died: %+v", a)
	}
	w.audit()
}
