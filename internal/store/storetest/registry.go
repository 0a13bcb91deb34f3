package storetest

import (
	"context"
	"slices"
	"testing"

	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

func insertAgent(t *testing.T, st store.Store, a store.Agent) store.Agent {
	t.Helper()
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.InsertAgent(ctx, &a) })
	return a
}

func getAgent(t *testing.T, st store.Store, id string) store.Agent {
	t.Helper()
	var a store.Agent
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		var err error
		a, err = tx.GetAgent(ctx, id)
		return err
	})
	return a
}

func testAgents(t *testing.T, st store.Store) {
	g := insertAgent(t, st, store.Agent{ID: "genesis", Status: store.AgentAlive, Workspace: "/ws/genesis",
		Created: at(0), CreatedCycle: 0})
	c := insertAgent(t, st, store.Agent{ID: "kid", Status: store.AgentAlive, ParentID: "genesis",
		Lineage: []string{"genesis"}, Workspace: "/ws/agent-kid", Created: at(5), CreatedCycle: 7})
	gc := insertAgent(t, st, store.Agent{ID: "grandkid", Status: store.AgentAlive, ParentID: "kid",
		Lineage: []string{"kid", "genesis"}, Workspace: "/ws/agent-grandkid", Created: at(9), CreatedCycle: 9})
	if !(g.Num > 0 && c.Num > g.Num && gc.Num > c.Num) {
		t.Fatalf("agent numbers not increasing: %d %d %d", g.Num, c.Num, gc.Num)
	}
	ctx := t.Context()
	err := st.Write(ctx, func(tx store.Tx) error {
		return tx.InsertAgent(ctx, &store.Agent{ID: "kid", Status: store.AgentAlive, Workspace: "/x", Created: T0})
	})
	wantErr(t, "InsertAgent of a taken id", err, store.ErrConflict)

	got := getAgent(t, st, "grandkid")
	if got.Num != gc.Num || got.Status != store.AgentAlive || got.ParentID != "kid" ||
		!slices.Equal(got.Lineage, []string{"kid", "genesis"}) || got.Workspace != "/ws/agent-grandkid" ||
		got.CreatedCycle != 9 || got.ExecutionCount != 0 || !got.Died.IsZero() || got.DeathReason != "" {
		t.Fatalf("GetAgent = %+v", got)
	}
	sameTime(t, "Created", got.Created, at(9))
	if l := getAgent(t, st, "genesis").Lineage; len(l) != 0 {
		t.Fatalf("genesis lineage = %v, want empty", l)
	}
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.GetAgent(ctx, "nobody")
		wantErr(t, "GetAgent of a missing id", err, store.ErrNotFound)
		return nil
	})

	write(t, st, func(ctx context.Context, tx store.Tx) error {
		for range 3 {
			if err := tx.IncrementExecutionCount(ctx, "kid"); err != nil {
				return err
			}
		}
		wantErr(t, "IncrementExecutionCount of a missing agent", tx.IncrementExecutionCount(ctx, "nobody"), store.ErrNotFound)
		return nil
	})
	if n := getAgent(t, st, "kid").ExecutionCount; n != 3 {
		t.Fatalf("ExecutionCount = %d, want 3", n)
	}

	write(t, st, func(ctx context.Context, tx store.Tx) error {
		return tx.MarkAgentDead(ctx, "kid", "no_bid", at(20), 11)
	})
	list := func(f store.AgentFilter) []string {
		var out []string
		read(t, st, func(ctx context.Context, tx store.Tx) error {
			agents, err := tx.ListAgents(ctx, f)
			for _, a := range agents {
				out = append(out, a.ID)
			}
			return err
		})
		return out
	}
	cases := []struct {
		name string
		f    store.AgentFilter
		want []string
	}{
		{"all, oldest first", store.AgentFilter{}, []string{"genesis", "kid", "grandkid"}},
		{"alive", store.AgentFilter{Status: store.AgentAlive}, []string{"genesis", "grandkid"}},
		{"dead", store.AgentFilter{Status: store.AgentDead}, []string{"kid"}},
		{"limit", store.AgentFilter{Limit: 2}, []string{"genesis", "kid"}},
	}
	for _, tc := range cases {
		if got := list(tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("ListAgents %s = %v, want %v", tc.name, got, tc.want)
		}
	}
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		alive, dead, err := tx.CountAgents(ctx)
		if err != nil || alive != 2 || dead != 1 {
			t.Fatalf("CountAgents = %d, %d, %v; want 2, 1", alive, dead, err)
		}
		return nil
	})
}

func testAgentDeath(t *testing.T, st store.Store) {
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		alive, dead, err := tx.CountAgents(ctx)
		if err != nil || alive != 0 || dead != 0 {
			t.Fatalf("CountAgents of an empty registry = %d, %d, %v", alive, dead, err)
		}
		return nil
	})
	insertAgent(t, st, store.Agent{ID: "a", Status: store.AgentAlive, Workspace: "/ws/a", Created: T0})
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		return tx.MarkAgentDead(ctx, "a", "bankrupt", at(3), 4)
	})
	a := getAgent(t, st, "a")
	if a.Status != store.AgentDead || a.DeathReason != "bankrupt" || a.DeathCycle != 4 {
		t.Fatalf("dead agent = %+v", a)
	}
	sameTime(t, "Died", a.Died, at(3))

	// An agent dies once: a second death is refused and changes nothing.
	ctx := t.Context()
	err := st.Write(ctx, func(tx store.Tx) error { return tx.MarkAgentDead(ctx, "a", "killed", at(9), 9) })
	if err == nil {
		t.Fatal("MarkAgentDead of a dead agent succeeded")
	}
	if a2 := getAgent(t, st, "a"); a2.DeathReason != "bankrupt" || a2.DeathCycle != 4 {
		t.Fatalf("second death changed the record: %+v", a2)
	}
	err = st.Write(ctx, func(tx store.Tx) error { return tx.MarkAgentDead(ctx, "nobody", "killed", at(9), 9) })
	wantErr(t, "MarkAgentDead of a missing agent", err, store.ErrNotFound)
}

// bid returns a pending bid row.
func bid(id, agent, payer string, amount money.Micro, cycle int64) store.Bid {
	return store.Bid{ID: id, AgentID: agent, PayerID: payer, Amount: amount, Status: store.BidPending,
		Bundle:  market.Bundle{CPUMillis: 500, MemoryMB: 256, DurationSeconds: 10, Tokens: 100, Attention: 1},
		Created: at(int(cycle)), CreatedCycle: cycle, ExpiresCycle: cycle + 30}
}

func insertBids(t *testing.T, st store.Store, bids ...store.Bid) []store.Bid {
	t.Helper()
	out := slices.Clone(bids)
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		for i := range out {
			if err := tx.InsertBid(ctx, &out[i]); err != nil {
				return err
			}
		}
		return nil
	})
	return out
}

func bidIDs(list []store.Bid) []string {
	out := make([]string, len(list))
	for i, b := range list {
		out[i] = b.ID
	}
	return out
}

func testBids(t *testing.T, st store.Store) {
	bids := insertBids(t, st,
		bid("b1", "a", "a", 5_000_000, 1),
		bid("b2", "b", "b", 7_000_000, 1),
		bid("b3", "c", "a", 2_000_000, 2), // a pays for c
		bid("b4", "a", "a", 1_000_000, 3),
	)
	for i := 1; i < len(bids); i++ {
		if bids[i].Seq <= bids[i-1].Seq {
			t.Fatalf("bid seqs not increasing")
		}
	}
	ctx := t.Context()
	err := st.Write(ctx, func(tx store.Tx) error { b := bid("b1", "x", "x", 1, 1); return tx.InsertBid(ctx, &b) })
	wantErr(t, "InsertBid of a taken id", err, store.ErrConflict)

	read(t, st, func(ctx context.Context, tx store.Tx) error {
		got, err := tx.GetBid(ctx, "b3")
		if err != nil {
			return err
		}
		want := bids[2]
		sameTime(t, "bid Created", got.Created, want.Created)
		if !got.Closed.IsZero() {
			t.Fatalf("pending bid has a close time %v", got.Closed)
		}
		got.Created, got.Closed = want.Created, want.Closed
		if got != want {
			t.Fatalf("GetBid = %+v, want %+v", got, want)
		}
		_, err = tx.GetBid(ctx, "nope")
		wantErr(t, "GetBid of a missing id", err, store.ErrNotFound)
		return nil
	})

	write(t, st, func(ctx context.Context, tx store.Tx) error {
		b := bids[1]
		b.Status, b.Closed, b.ClosedCycle = store.BidCancelled, at(4), 4
		return tx.CloseBid(ctx, b)
	})
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		pending, err := tx.PendingBids(ctx)
		if err != nil {
			return err
		}
		if got := bidIDs(pending); !slices.Equal(got, []string{"b1", "b3", "b4"}) {
			t.Fatalf("PendingBids = %v, want placement order b1 b3 b4", got)
		}
		cases := []struct {
			name string
			f    store.BidFilter
			want []string
		}{
			{"all, newest first", store.BidFilter{}, []string{"b4", "b3", "b2", "b1"}},
			{"payer or agent a", store.BidFilter{Party: "a"}, []string{"b4", "b3", "b1"}},
			{"agent c (paid by a)", store.BidFilter{Party: "c"}, []string{"b3"}},
			{"pending of b", store.BidFilter{Party: "b", Status: store.BidPending}, nil},
			{"cancelled", store.BidFilter{Status: store.BidCancelled}, []string{"b2"}},
			{"limit", store.BidFilter{Party: "a", Limit: 2}, []string{"b4", "b3"}},
		}
		for _, tc := range cases {
			list, err := tx.ListBids(ctx, tc.f)
			if err != nil {
				return err
			}
			if got := bidIDs(list); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("ListBids %s = %v, want %v", tc.name, got, tc.want)
			}
		}
		counts := map[string]int64{"a": 3, "b": 0, "c": 0, "nobody": 0}
		for payer, want := range counts {
			if n, err := tx.CountPendingBids(ctx, payer); err != nil || n != want {
				t.Errorf("CountPendingBids(%s) = %d, %v; want %d", payer, n, err, want)
			}
		}
		wakes := map[string]bool{"a": true, "b": false, "c": true, "nobody": false}
		for agent, want := range wakes {
			if has, err := tx.HasPendingBidFor(ctx, agent); err != nil || has != want {
				t.Errorf("HasPendingBidFor(%s) = %v, %v; want %v", agent, has, err, want)
			}
		}
		return nil
	})
}

func testCloseBid(t *testing.T, st store.Store) {
	bids := insertBids(t, st, bid("b1", "a", "a", 5_000_000, 1), bid("b2", "a", "a", 3_000_000, 1))
	won := bids[0]
	won.Status, won.Closed, won.ClosedCycle, won.Paid, won.ExecutionID = store.BidWon, at(7), 2, 4_000_000, "ex_1"
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.CloseBid(ctx, won) })
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		got, err := tx.GetBid(ctx, "b1")
		if err != nil {
			return err
		}
		if got.Status != store.BidWon || got.ClosedCycle != 2 || got.Paid != 4_000_000 || got.ExecutionID != "ex_1" ||
			got.Amount != 5_000_000 || got.Bundle != won.Bundle {
			t.Fatalf("closed bid = %+v", got)
		}
		sameTime(t, "Closed", got.Closed, at(7))
		return nil
	})

	ctx := t.Context()
	for _, status := range []string{store.BidWon, store.BidCancelled, store.BidExpired, store.BidVoid} {
		again := won
		again.Status, again.ExecutionID = status, "ex_2"
		err := st.Write(ctx, func(tx store.Tx) error { return tx.CloseBid(ctx, again) })
		wantErr(t, "CloseBid of a "+store.BidWon+" bid as "+status, err, store.ErrConflict)
	}
	// A close that conflicts later in a transaction takes the whole transaction with it.
	err := st.Write(ctx, func(tx store.Tx) error {
		b := bids[1]
		b.Status, b.Closed, b.ClosedCycle = store.BidExpired, at(8), 3
		if err := tx.CloseBid(ctx, b); err != nil {
			return err
		}
		return tx.CloseBid(ctx, won)
	})
	wantErr(t, "CloseBid in a failing transaction", err, store.ErrConflict)
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		got, err := tx.GetBid(ctx, "b1")
		if err != nil {
			return err
		}
		if got.Status != store.BidWon || got.ExecutionID != "ex_1" {
			t.Fatalf("a refused close changed the bid: %+v", got)
		}
		b2, err := tx.GetBid(ctx, "b2")
		if err != nil {
			return err
		}
		if b2.Status != store.BidPending {
			t.Fatalf("rolled back close kept: %+v", b2)
		}
		return nil
	})
}
