package market

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/bpagents/bpagents/internal/money"
)

var smallMachine = Capacity{CPUMillis: 2000, MemoryMB: 4096, Tokens: 100_000, Attention: 1}

// mkBid returns a bid for cpu millicores and mem MB for 10 seconds.
func mkBid(id string, seq int64, agent string, amount money.Micro, cpu, mem int64) Bid {
	return Bid{ID: id, Seq: seq, AgentID: agent, Amount: amount,
		Bundle: Bundle{CPUMillis: cpu, MemoryMB: mem, DurationSeconds: 10}}
}

func winnerIDs(p ClearingPlan) []string {
	ids := []string{}
	for _, w := range p.Winners {
		ids = append(ids, w.Bid.ID)
	}
	return ids
}

func TestClearFirstPrice(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		bids   []Bid
		free   Capacity // zero means smallMachine
		prices Prices   // zero means free resources
		busy   map[string]bool
		want   []string // winner ids in allocation order
	}{
		{
			name: "highest amounts first",
			bids: []Bid{mkBid("a", 1, "A", 10, 1000, 100), mkBid("b", 2, "B", 30, 1000, 100), mkBid("c", 3, "C", 20, 1000, 100)},
			want: []string{"b", "c"},
		},
		{
			name: "ties go to the earlier bid",
			bids: []Bid{mkBid("late", 9, "A", 10, 2000, 100), mkBid("early", 4, "B", 10, 2000, 100)},
			want: []string{"early"},
		},
		{
			name: "equal seq ties go to the smaller id",
			bids: []Bid{mkBid("y", 4, "A", 10, 2000, 100), mkBid("x", 4, "B", 10, 2000, 100)},
			want: []string{"x"},
		},
		{
			name: "all or nothing: a bundle that does not fit is skipped, a smaller later one wins",
			bids: []Bid{mkBid("a", 1, "A", 30, 1500, 100), mkBid("big", 2, "B", 20, 1000, 100), mkBid("small", 3, "C", 10, 500, 100)},
			want: []string{"a", "small"},
		},
		{
			name: "memory counts too",
			bids: []Bid{mkBid("a", 1, "A", 30, 100, 4000), mkBid("b", 2, "B", 20, 100, 200), mkBid("c", 3, "C", 10, 100, 96)},
			want: []string{"a", "c"},
		},
		{
			name: "bids of busy agents are skipped",
			bids: []Bid{mkBid("a", 1, "A", 30, 1000, 100), mkBid("b", 2, "B", 20, 1000, 100), mkBid("c", 3, "C", 10, 1000, 100)},
			busy: map[string]bool{"A": true, "Z": true},
			want: []string{"b", "c"},
		},
		{
			name: "an agent wins at most once",
			bids: []Bid{mkBid("a1", 1, "A", 30, 500, 100), mkBid("a2", 2, "A", 20, 500, 100), mkBid("b", 3, "B", 10, 500, 100)},
			want: []string{"a1", "b"},
		},
		{
			name: "free capacity, not total capacity, bounds the allocation",
			bids: []Bid{mkBid("a", 1, "A", 30, 1000, 100), mkBid("b", 2, "B", 20, 500, 100)},
			free: Capacity{CPUMillis: 600, MemoryMB: 4096, Tokens: 100_000, Attention: 1},
			want: []string{"b"},
		},
		{
			name:   "bids below the reserve at current prices wait",
			bids:   []Bid{mkBid("cheap", 1, "A", 999, 100, 100), mkBid("ok", 2, "B", 1000, 100, 100)},
			prices: Prices{CPU: 1000}, // 0.1 core × 10 s × 1000 = 1000
			want:   []string{"ok"},
		},
		{
			name: "insane bundles are skipped",
			bids: []Bid{
				mkBid("no-cpu", 1, "A", 50, 0, 100), mkBid("no-mem", 2, "B", 50, 100, 0),
				{ID: "no-time", Seq: 3, AgentID: "C", Amount: 50, Bundle: Bundle{CPUMillis: 1, MemoryMB: 1}},
				{ID: "neg", Seq: 4, AgentID: "D", Amount: 50, Bundle: Bundle{CPUMillis: 1, MemoryMB: 1, DurationSeconds: 1, Tokens: -5}},
				mkBid("fine", 5, "E", 1, 100, 100),
			},
			want: []string{"fine"},
		},
		{
			name: "attention is all or nothing too",
			bids: []Bid{
				{ID: "p1", Seq: 1, AgentID: "A", Amount: 30, Bundle: Bundle{CPUMillis: 100, MemoryMB: 10, DurationSeconds: 1, Attention: 1}},
				{ID: "p2", Seq: 2, AgentID: "B", Amount: 20, Bundle: Bundle{CPUMillis: 100, MemoryMB: 10, DurationSeconds: 1, Attention: 1}},
				mkBid("c", 3, "C", 10, 100, 10),
			},
			want: []string{"p1", "c"},
		},
		{
			name: "negative free capacity blocks only bundles that need the resource",
			bids: []Bid{
				{ID: "p", Seq: 1, AgentID: "A", Amount: 30, Bundle: Bundle{CPUMillis: 100, MemoryMB: 10, DurationSeconds: 1, Attention: 1}},
				mkBid("c", 2, "C", 10, 100, 10),
			},
			free: Capacity{CPUMillis: 2000, MemoryMB: 4096, Tokens: 0, Attention: -1},
			want: []string{"c"},
		},
		{name: "no bids", want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			free := tt.free
			if free == (Capacity{}) {
				free = smallMachine
			}
			in := ClearingInput{Bids: tt.bids, Free: free, Capacity: smallMachine, Prices: tt.prices, Busy: tt.busy}
			plan := Clear(in)
			if got := winnerIDs(plan); !slices.Equal(got, tt.want) {
				t.Fatalf("winners = %v; want %v", got, tt.want)
			}
			for _, w := range plan.Winners {
				if w.Pay != w.Bid.Amount || w.Refund != 0 {
					t.Errorf("first-price winner %s pays %d refund %d; want its bid %d", w.Bid.ID, w.Pay, w.Refund, w.Bid.Amount)
				}
			}
			if plan.Mechanism != FirstPrice {
				t.Errorf("Mechanism = %q; want the default %q", plan.Mechanism, FirstPrice)
			}
		})
	}
}

func TestClearAllocatedAndUtilization(t *testing.T) {
	t.Parallel()
	bids := []Bid{
		{ID: "a", Seq: 1, AgentID: "A", Amount: 9, Bundle: Bundle{CPUMillis: 500, MemoryMB: 1024, DurationSeconds: 5, Tokens: 25_000, Attention: 1}},
		mkBid("b", 2, "B", 5, 500, 1024),
	}
	free := Capacity{CPUMillis: 1000, MemoryMB: 4096, Tokens: 100_000, Attention: 1} // 1 core running
	plan := Clear(ClearingInput{Bids: bids, Free: free, Capacity: smallMachine, Mechanism: FirstPrice})
	if want := (Capacity{CPUMillis: 1000, MemoryMB: 2048, Tokens: 25_000, Attention: 1}); plan.Allocated != want {
		t.Errorf("Allocated = %+v; want %+v", plan.Allocated, want)
	}
	want := map[Resource]float64{CPU: 1, Memory: 0.5, Tokens: 0.25, Attention: 1}
	if !reflect.DeepEqual(plan.Utilization, want) {
		t.Errorf("Utilization = %v; want %v", plan.Utilization, want)
	}
	none := Clear(ClearingInput{Free: Capacity{CPUMillis: 5}, Capacity: Capacity{CPUMillis: 10}})
	if want := map[Resource]float64{CPU: 0.5, Memory: 0, Tokens: 0, Attention: 0}; !reflect.DeepEqual(none.Utilization, want) {
		t.Errorf("Utilization without capacity = %v; want %v", none.Utilization, want)
	}
}

func TestClearIsDeterministic(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	for _, mech := range Mechanisms {
		for range 300 {
			in := randomInput(rng, mech)
			want := Clear(in)
			shuffled := in
			shuffled.Bids = slices.Clone(in.Bids)
			rng.Shuffle(len(shuffled.Bids), func(i, j int) {
				shuffled.Bids[i], shuffled.Bids[j] = shuffled.Bids[j], shuffled.Bids[i]
			})
			if got := Clear(shuffled); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: plan depends on bid order:\n got %+v\nwant %+v", mech, got, want)
			}
		}
	}
}

func TestClearDoesNotModifyInput(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	for _, mech := range Mechanisms {
		in := randomInput(rng, mech)
		before := slices.Clone(in.Bids)
		Clear(in)
		if !slices.Equal(in.Bids, before) {
			t.Fatalf("%s: Clear modified its input", mech)
		}
	}
}

func TestClearUnknownMechanismPanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("Clear with an unknown mechanism did not panic")
		}
	}()
	Clear(ClearingInput{Mechanism: "vickrey"})
}

func TestParseMechanism(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Mechanism{"": FirstPrice, "first-price": FirstPrice, "critical": Critical} {
		if got, err := ParseMechanism(in); err != nil || got != want {
			t.Errorf("ParseMechanism(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := ParseMechanism("vickrey")
	if err == nil || err.Error() != `unknown mechanism "vickrey" (known: first-price, critical)` {
		t.Errorf("ParseMechanism(vickrey) error = %v", err)
	}
}
