package web

import (
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/money"
)

// balanceSeries walks back from today's balances through the ledger and
// must land on zero before the first entry.
func TestBalanceSeries(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) string { return t0.Add(time.Duration(s) * time.Second).Format(time.RFC3339Nano) }
	// Newest first, as economy.History returns them: endowment 100, hold 5,
	// settle 5 from the hold, a reward of 50, then a release of a 2 hold.
	hist := []economy.HistoryEntry{
		{ID: 6, Kind: "release", Amount: money.Credits(2), Account: "available", Counterparty: "hold:a", Time: at(6)},
		{ID: 5, Kind: "hold", Amount: -money.Credits(2), Account: "available", Counterparty: "hold:a", Time: at(5)},
		{ID: 4, Kind: "reward", Amount: money.Credits(50), Account: "available", Counterparty: "system:mint", Time: at(4)},
		{ID: 3, Kind: "settle", Amount: -money.Credits(5), Account: "held", Counterparty: "system:burn", Time: at(3)},
		{ID: 2, Kind: "hold", Amount: -money.Credits(5), Account: "available", Counterparty: "hold:a", Time: at(2)},
		{ID: 1, Kind: "endowment", Amount: money.Credits(100), Account: "available", Counterparty: "system:mint", Time: at(1)},
	}
	a := economy.AgentView{ID: "a", Balance: money.Credits(145), Held: 0}
	spec := balanceSeries(a, hist, t0.Add(time.Minute))
	avail, held := spec.Series[0].Points, spec.Series[1].Points
	if len(avail) != len(hist)+2 {
		t.Fatalf("%d points, want %d", len(avail), len(hist)+2)
	}
	wantAvail := []float64{0, 100, 95, 95, 145, 143, 145, 145}
	wantHeld := []float64{0, 0, 5, 0, 0, 2, 0, 0}
	for i := range avail {
		if avail[i][1] != wantAvail[i] || held[i][1] != wantHeld[i] {
			t.Errorf("point %d: available %v held %v, want %v %v", i, avail[i][1], held[i][1], wantAvail[i], wantHeld[i])
		}
		if i > 0 && avail[i][0] < avail[i-1][0] {
			t.Errorf("point %d goes back in time", i)
		}
	}
}

func TestLineageTree(t *testing.T) {
	list := []economy.AgentView{
		{ID: "g"}, {ID: "c1", ParentID: "g"}, {ID: "c2", ParentID: "g"}, {ID: "gc", ParentID: "c1"},
		{ID: "orphan", ParentID: "gone"},
	}
	roots := lineageTree(list)
	if len(roots) != 2 || roots[0].ID != "g" || roots[1].ID != "orphan" {
		t.Fatalf("roots %v", roots)
	}
	g := roots[0]
	if g.Descendants != 3 || len(g.Children) != 2 || !g.Open || g.Children[0].Open {
		t.Fatalf("genesis node %+v", g)
	}
	if g.Children[0].Descendants != 1 || g.Children[0].Children[0].ID != "gc" {
		t.Fatalf("c1 node %+v", g.Children[0])
	}
}
