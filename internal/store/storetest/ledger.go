package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// insertTransfers inserts the given movements in order and returns them with
// their ids.
func insertTransfers(t *testing.T, st store.Store, list []store.Transfer) []store.Transfer {
	t.Helper()
	out := slices.Clone(list)
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		for i := range out {
			if err := tx.InsertTransfer(ctx, &out[i]); err != nil {
				return err
			}
		}
		return nil
	})
	return out
}

// sampleTransfers moves credits around accounts a, b, c (see createAccounts).
func sampleTransfers() []store.Transfer {
	mk := func(kind, from, to string, amount money.Micro, i int) store.Transfer {
		return store.Transfer{Kind: kind, From: from, To: to, Amount: amount, Ref: fmt.Sprintf("ref-%d", i),
			Memo: fmt.Sprintf("memo %d", i), Cycle: int64(i), Created: at(i)}
	}
	return []store.Transfer{
		mk("endowment", "system:mint", "a", 1000, 0),
		mk("endowment", "system:mint", "b", 500, 1),
		mk("transfer", "a", "b", 100, 2),
		mk("hold", "a", "hold:a", 50, 3),
		mk("settle", "hold:a", "system:burn", 30, 4),
		mk("release", "hold:a", "a", 20, 5),
		mk("message_fee", "b", "system:burn", 1, 6),
		mk("transfer", "b", "c", 7, 7),
	}
}

func ids(list []store.Transfer) []int64 {
	out := make([]int64, len(list))
	for i, tr := range list {
		out[i] = tr.ID
	}
	return out
}

func testTransfers(t *testing.T, st store.Store) {
	createAccounts(t, st)
	ins := insertTransfers(t, st, sampleTransfers())
	for i := 1; i < len(ins); i++ {
		if ins[i].ID <= ins[i-1].ID {
			t.Fatalf("transfer ids not increasing: %v", ids(ins))
		}
	}
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		all, err := tx.ListTransfers(ctx, store.TransferFilter{})
		if err != nil {
			return err
		}
		if len(all) != len(ins) {
			t.Fatalf("ListTransfers returned %d, want %d", len(all), len(ins))
		}
		for i, got := range all {
			want := ins[len(ins)-1-i] // newest first
			sameTime(t, "Created", got.Created, want.Created)
			got.Created = want.Created
			if got != want {
				t.Fatalf("transfer %d = %+v, want %+v", i, got, want)
			}
		}
		return nil
	})
	// The schema is the last line of defence against a movement that is not
	// one: the ledger refuses them first, but a bug there must not be kept.
	ctx := t.Context()
	for _, bad := range []money.Micro{0, -5} {
		err := st.Write(ctx, func(tx store.Tx) error {
			tr := store.Transfer{Kind: "transfer", From: "a", To: "b", Amount: bad, Created: T0}
			return tx.InsertTransfer(ctx, &tr)
		})
		if err == nil {
			t.Fatalf("InsertTransfer kept an amount of %s", bad)
		}
	}
}

func testTransferFilters(t *testing.T, st store.Store) {
	createAccounts(t, st)
	ins := insertTransfers(t, st, sampleTransfers())
	id := ids(ins)
	rev := func(v []int64) []int64 { v = slices.Clone(v); slices.Reverse(v); return v }
	tests := []struct {
		name string
		f    store.TransferFilter
		want []int64
	}{
		{"all newest first", store.TransferFilter{}, rev(id)},
		{"limit", store.TransferFilter{Limit: 3}, rev(id)[:3]},
		{"account as payer or payee", store.TransferFilter{Account: "b"}, []int64{id[7], id[6], id[2], id[1]}},
		{"hold account", store.TransferFilter{Account: "hold:a"}, []int64{id[5], id[4], id[3]}},
		{"account with limit", store.TransferFilter{Account: "a", Limit: 2}, []int64{id[5], id[3]}},
		{"before id", store.TransferFilter{BeforeID: id[3]}, []int64{id[2], id[1], id[0]}},
		{"before id and account", store.TransferFilter{Account: "a", BeforeID: id[3]}, []int64{id[2], id[0]}},
		{"ascending", store.TransferFilter{Ascending: true}, id},
		{"ascending after id", store.TransferFilter{Ascending: true, AfterID: id[5]}, id[6:]},
		{"ascending after id with limit", store.TransferFilter{Ascending: true, AfterID: id[1], Limit: 2}, id[2:4]},
		{"ascending account", store.TransferFilter{Ascending: true, Account: "system:burn"}, []int64{id[4], id[6]}},
		{"untouched account", store.TransferFilter{Account: "hold:c"}, nil},
		{"unknown account", store.TransferFilter{Account: "nobody"}, nil},
	}
	for _, tc := range tests {
		read(t, st, func(ctx context.Context, tx store.Tx) error {
			list, err := tx.ListTransfers(ctx, tc.f)
			if err != nil {
				return err
			}
			if got := ids(list); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("%s: ids %v, want %v", tc.name, got, tc.want)
			}
			return nil
		})
	}
}

func testEntrySums(t *testing.T, st store.Store) {
	createAccounts(t, st)
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		sums, err := tx.EntrySums(ctx)
		if err != nil {
			return err
		}
		for id, s := range sums {
			if s != 0 {
				t.Fatalf("empty ledger: EntrySums[%s] = %s", id, s)
			}
		}
		return nil
	})
	insertTransfers(t, st, sampleTransfers())
	want := map[string]money.Micro{
		"system:mint": -1500, "a": 1000 - 100 - 50 + 20, "b": 500 + 100 - 1 - 7, "c": 7,
		"hold:a": 50 - 30 - 20, "system:burn": 31, "hold:b": 0, "hold:c": 0,
	}
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		sums, err := tx.EntrySums(ctx)
		if err != nil {
			return err
		}
		var total money.Micro
		for id, w := range want {
			if sums[id] != w {
				t.Errorf("EntrySums[%s] = %s, want %s", id, sums[id], w)
			}
		}
		for id, s := range sums {
			if _, ok := want[id]; !ok {
				t.Errorf("EntrySums names unknown account %s", id)
			}
			total += s
		}
		if total != 0 {
			t.Errorf("entries sum to %s", total)
		}
		n, err := tx.CountTransfers(ctx)
		if err != nil {
			return err
		}
		if n != int64(len(sampleTransfers())) {
			t.Errorf("CountTransfers = %d, want %d", n, len(sampleTransfers()))
		}
		return nil
	})
}

func testEvents(t *testing.T, st store.Store) {
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		seq, err := tx.LastEventSeq(ctx)
		if err != nil || seq != 0 {
			t.Fatalf("LastEventSeq of an empty log = %d, %v; want 0", seq, err)
		}
		list, err := tx.ListEvents(ctx, store.EventFilter{})
		if err != nil || len(list) != 0 {
			t.Fatalf("ListEvents of an empty log = %v, %v", list, err)
		}
		return nil
	})
	evs := []store.Event{
		{Time: at(1), Cycle: 3, Type: "bid.placed", AgentID: "a", Ref: "bid_1", Data: []byte(`{"amount":5,"bundle":{"cpu":0.5}}`)},
		{Time: at(2), Cycle: 3, Type: "agent.created", AgentID: "b", Ref: "b"}, // no data
		{Time: at(3), Cycle: 4, Type: "market.cleared", Data: []byte(`{"winners":["bid_1"],"note":"ünïcode"}`)},
	}
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		for i := range evs {
			if err := tx.AppendEvent(ctx, &evs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if !(evs[0].Seq > 0 && evs[1].Seq > evs[0].Seq && evs[2].Seq > evs[1].Seq) {
		t.Fatalf("sequence numbers not increasing: %d %d %d", evs[0].Seq, evs[1].Seq, evs[2].Seq)
	}
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		last, err := tx.LastEventSeq(ctx)
		if err != nil || last != evs[2].Seq {
			t.Fatalf("LastEventSeq = %d, %v; want %d", last, err, evs[2].Seq)
		}
		list, err := tx.ListEvents(ctx, store.EventFilter{})
		if err != nil {
			return err
		}
		if len(list) != 3 {
			t.Fatalf("ListEvents returned %d events, want 3", len(list))
		}
		for i, got := range list {
			want := evs[i]
			if got.Seq != want.Seq || got.Cycle != want.Cycle || got.Type != want.Type || got.AgentID != want.AgentID ||
				got.Ref != want.Ref {
				t.Fatalf("event %d = %+v, want %+v", i, got, want)
			}
			sameTime(t, "event time", got.Time, want.Time)
			data := want.Data
			if data == nil {
				data = []byte(`{}`) // an event without data holds an empty object
			}
			sameJSON(t, "event data", got.Data, data)
		}
		return nil
	})
}

func testEventFilters(t *testing.T, st store.Store) {
	types := []struct{ typ, agent string }{
		{"bid.placed", "a"},      // 0
		{"bid", "a"},             // 1: not under the "bid." prefix
		{"bidding.x", "b"},       // 2
		{"bid.won", "b"},         // 3
		{"bid-x", "a"},           // 4: '-' sorts just before '.'
		{"bid/x", "a"},           // 5: '/' sorts just after '.'
		{"market.cleared", ""},   // 6
		{"bid.cancelled", "a"},   // 7
		{"agent.died", "a"},      // 8
		{"bid.placed.extra", ""}, // 9: deeper names share the prefix
	}
	seqs := make([]int64, len(types))
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		for i, ty := range types {
			e := store.Event{Time: at(i), Cycle: int64(i), Type: ty.typ, AgentID: ty.agent}
			if err := tx.AppendEvent(ctx, &e); err != nil {
				return err
			}
			seqs[i] = e.Seq
		}
		return nil
	})
	pick := func(idx ...int) []int64 {
		out := make([]int64, len(idx))
		for i, j := range idx {
			out[i] = seqs[j]
		}
		return out
	}
	tests := []struct {
		name string
		f    store.EventFilter
		want []int64
	}{
		{"all ascending", store.EventFilter{}, seqs},
		{"after seq", store.EventFilter{AfterSeq: seqs[6]}, pick(7, 8, 9)},
		{"limit", store.EventFilter{Limit: 2}, pick(0, 1)},
		{"after seq with limit", store.EventFilter{AfterSeq: seqs[2], Limit: 2}, pick(3, 4)},
		{"before seq descending", store.EventFilter{BeforeSeq: seqs[3]}, pick(2, 1, 0)},
		{"before seq with limit", store.EventFilter{BeforeSeq: seqs[9], Limit: 3}, pick(8, 7, 6)},
		{"agent", store.EventFilter{AgentID: "b"}, pick(2, 3)},
		{"exact type", store.EventFilter{Type: "bid.placed"}, pick(0)},
		{"exact type without dot", store.EventFilter{Type: "bid"}, pick(1)},
		{"type prefix", store.EventFilter{Type: "bid."}, pick(0, 3, 7, 9)},
		{"type prefix and agent", store.EventFilter{Type: "bid.", AgentID: "a"}, pick(0, 7)},
		{"type prefix descending", store.EventFilter{Type: "bid.", BeforeSeq: seqs[9]}, pick(7, 3, 0)},
		{"type prefix after seq", store.EventFilter{Type: "bid.", AfterSeq: seqs[3]}, pick(7, 9)},
		{"unknown type", store.EventFilter{Type: "nothing.here"}, nil},
	}
	for _, tc := range tests {
		read(t, st, func(ctx context.Context, tx store.Tx) error {
			list, err := tx.ListEvents(ctx, tc.f)
			if err != nil {
				return err
			}
			got := make([]int64, len(list))
			for i, e := range list {
				got[i] = e.Seq
			}
			if !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("%s: seqs %v, want %v", tc.name, got, tc.want)
			}
			return nil
		})
	}
}
