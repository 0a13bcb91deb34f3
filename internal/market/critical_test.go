package market

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/bpagents/bpagents/internal/money"
)

// unitMachine has 1000 millicores and 1000 MB, so a bundle's size is
// cpu/1000 + mem/1000.
var unitMachine = Capacity{CPUMillis: 1000, MemoryMB: 1000}

func TestClearCriticalHandComputed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		bids   []Bid
		prices Prices
		want   map[string]money.Micro // winner → payment
	}{
		{
			// a (size 2, density 100/√2 ≈ 70.7) beats b (size 1, density 60).
			// Without a, b wins and a no longer fits: a needs x/√2 > 60,
			// x² > 7200, x = 85.
			name: "big bundle pays to beat the blocker",
			bids: []Bid{mkBid("a", 1, "A", 100, 1000, 1000), mkBid("b", 2, "B", 60, 500, 500), mkBid("c", 3, "C", 50, 500, 500)},
			want: map[string]money.Micro{"a": 85},
		},
		{
			// a and b win; without either, c takes the place. a is earlier
			// than c, so a tie suffices (40); b is later, so it must beat c (41).
			name: "ties decide the last micro-credit",
			bids: []Bid{mkBid("a", 1, "A", 100, 500, 500), mkBid("b", 5, "B", 60, 500, 500), mkBid("c", 3, "C", 40, 500, 500)},
			want: map[string]money.Micro{"a": 40, "b": 41},
		},
		{
			name:   "an unopposed winner pays its reserve",
			bids:   []Bid{mkBid("a", 1, "A", 1_000_000, 500, 500)},
			prices: Prices{CPU: 1000, Memory: 1}, // 0.5 × 10 × 1000 + 500 × 10 × 1
			want:   map[string]money.Micro{"a": 10_000},
		},
		{
			// Without a, c wins and a no longer fits; both have size 1, so a
			// would need only 1000 to beat c, but its reserve is 5000.
			name:   "the critical value never goes below the reserve",
			bids:   []Bid{mkBid("a", 1, "A", 100_000, 500, 500), mkBid("c", 3, "C", 1000, 100, 900)},
			prices: Prices{CPU: 1000}, // reserve: a 5000, c 1000
			want:   map[string]money.Micro{"a": 5000},
		},
		{
			// a2 would win in a1's absence, and an agent wins once: a1 must
			// beat its own agent's other bid (a tie suffices, a1 is earlier).
			name: "the agent's other bid is a blocker",
			bids: []Bid{mkBid("a1", 1, "A", 100, 100, 100), mkBid("a2", 2, "A", 70, 100, 100), mkBid("b", 3, "B", 10, 100, 100)},
			want: map[string]money.Micro{"a1": 70, "b": 0},
		},
		{
			name: "a later bid of the same agent must strictly beat the earlier one",
			bids: []Bid{mkBid("a1", 2, "A", 100, 100, 100), mkBid("a2", 1, "A", 70, 100, 100)},
			want: map[string]money.Micro{"a1": 71},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			plan := Clear(ClearingInput{Bids: tt.bids, Free: unitMachine, Capacity: unitMachine, Prices: tt.prices, Mechanism: Critical})
			got := map[string]money.Micro{}
			for _, w := range plan.Winners {
				got[w.Bid.ID] = w.Pay
				if w.Refund != w.Bid.Amount-w.Pay {
					t.Errorf("%s: refund %d; want %d", w.Bid.ID, w.Refund, w.Bid.Amount-w.Pay)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("payments = %v; want %v", got, tt.want)
			}
			for id, pay := range tt.want {
				if p, ok := got[id]; !ok || p != pay {
					t.Fatalf("payments = %v; want %v", got, tt.want)
				}
			}
		})
	}
}

func TestClearCriticalExactNearTies(t *testing.T) {
	t.Parallel()
	const big = money.Micro(100_000_000_000_000_000) // 10¹⁷: neighbours share a float64
	machine := Capacity{CPUMillis: 2000, MemoryMB: 4096}
	free := Capacity{CPUMillis: 1000, MemoryMB: 2048} // room for one of the bundles below
	tests := []struct {
		name    string
		bids    []Bid
		winner  string
		wantPay money.Micro
	}{
		{
			name:    "same bundle, one micro-credit more, later bid",
			bids:    []Bid{mkBid("early", 1, "A", big, 1000, 1024), mkBid("late", 2, "B", big+1, 1000, 1024)},
			winner:  "late",
			wantPay: big + 1, // must strictly beat the earlier bid
		},
		{
			name:    "same bundle, same amount, earlier bid wins the tie",
			bids:    []Bid{mkBid("late", 2, "B", big, 1000, 1024), mkBid("early", 1, "A", big, 1000, 1024)},
			winner:  "early",
			wantPay: big,
		},
		{
			// 1000/2000 + 1024/4096 = 500/2000 + 2048/4096 = 0.75: equal sizes.
			name:    "different bundles of equal size",
			bids:    []Bid{mkBid("x", 1, "A", big, 1000, 1024), mkBid("y", 2, "B", big+1, 500, 2048)},
			winner:  "y",
			wantPay: big + 1,
		},
		{
			name:    "different bundles of equal size, tie to the earlier",
			bids:    []Bid{mkBid("x", 1, "A", big, 1000, 1024), mkBid("y", 2, "B", big, 500, 2048)},
			winner:  "x",
			wantPay: big,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			plan := Clear(ClearingInput{Bids: tt.bids, Free: free, Capacity: machine, Mechanism: Critical})
			if len(plan.Winners) != 1 || plan.Winners[0].Bid.ID != tt.winner || plan.Winners[0].Pay != tt.wantPay {
				t.Fatalf("winners = %+v; want %s paying %d", plan.Winners, tt.winner, tt.wantPay)
			}
		})
	}
}

// TestClearCriticalFloatWouldMisorder uses two bids whose float64 density
// keys order them the wrong way round: x is denser exactly, y looks denser in
// floats. Only exact comparison finds the right winner and payment.
func TestClearCriticalFloatWouldMisorder(t *testing.T) {
	t.Parallel()
	machine := Capacity{CPUMillis: 2000, MemoryMB: 4096, Tokens: 1_000_000_000_000_000}
	free := Capacity{CPUMillis: 1000, MemoryMB: 1024, Tokens: machine.Tokens} // room for one
	bundle := func(tokens int64) Bundle {
		return Bundle{CPUMillis: 1000, MemoryMB: 1024, DurationSeconds: 1, Tokens: tokens}
	}
	x := Bid{ID: "x", Seq: 2, AgentID: "X", Amount: 100_000_000_000_000_328, Bundle: bundle(476)}
	y := Bid{ID: "y", Seq: 1, AgentID: "Y", Amount: 100_000_000_000_000_250, Bundle: bundle(475)}
	const wantPay = 100_000_000_000_000_317 // least p with p²·S_y > y²·S_x (y wins ties)
	for _, bids := range [][]Bid{{x, y}, {y, x}} {
		plan := Clear(ClearingInput{Bids: bids, Free: free, Capacity: machine, Mechanism: Critical})
		if len(plan.Winners) != 1 || plan.Winners[0].Bid.ID != "x" || plan.Winners[0].Pay != wantPay {
			t.Fatalf("winners = %+v; want x paying %d", plan.Winners, money.Micro(wantPay))
		}
	}
}

// checkPlan verifies the invariants every plan must keep.
func checkPlan(t *testing.T, in ClearingInput, plan ClearingPlan) {
	t.Helper()
	var left, alloc vector
	for i, r := range Resources {
		left[i] = max(in.Free.Of(r), 0)
	}
	agents := map[string]bool{}
	for _, w := range plan.Winners {
		i := indexOf(in.Bids, w.Bid.ID)
		if i < 0 || in.Bids[i] != w.Bid {
			t.Fatalf("winner %+v is not an input bid", w.Bid)
		}
		if in.Busy[w.Bid.AgentID] || agents[w.Bid.AgentID] {
			t.Fatalf("agent %s is busy or won twice", w.Bid.AgentID)
		}
		agents[w.Bid.AgentID] = true
		if r := Reserve(w.Bid.Bundle, in.Prices); w.Pay < r || w.Pay > w.Bid.Amount || w.Refund != w.Bid.Amount-w.Pay {
			t.Fatalf("%s: pay %d refund %d outside [reserve %d, bid %d]", w.Bid.ID, w.Pay, w.Refund, r, w.Bid.Amount)
		}
		if in.Mechanism == FirstPrice && w.Pay != w.Bid.Amount {
			t.Fatalf("first-price winner %s pays %d, not its bid %d", w.Bid.ID, w.Pay, w.Bid.Amount)
		}
		d := w.Bid.Bundle.Demand().vector()
		for i := range left {
			if left[i] -= d[i]; left[i] < 0 {
				t.Fatalf("allocation exceeds free %s", Resources[i])
			}
			alloc[i] += d[i]
		}
	}
	if plan.Allocated != alloc.capacity() {
		t.Fatalf("Allocated = %+v; winners take %+v", plan.Allocated, alloc.capacity())
	}
}

func TestClearPlanInvariants(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(11, 12))
	for iter := range 5000 {
		in := randomInput(rng, Mechanisms[iter%2])
		checkPlan(t, in, Clear(in))
	}
}

// utility is what bid i gains by bidding amount when it values its bundle at value.
func utility(in ClearingInput, i int, amount, value money.Micro) (money.Micro, ClearingPlan) {
	plan := Clear(withAmount(in, i, amount))
	for _, w := range plan.Winners {
		if w.Bid.ID == in.Bids[i].ID {
			return value - w.Pay, plan
		}
	}
	return 0, plan
}

func TestCriticalIsTruthful(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(13, 14))
	for range 600 {
		in := randomInput(rng, Critical)
		i := rng.IntN(len(in.Bids))
		value := in.Bids[i].Amount // the truth
		truth, plan := utility(in, i, value, value)
		checkPlan(t, withAmount(in, i, value), plan)
		reports := []money.Micro{0, 1, value - 1, value + 1, Reserve(in.Bids[i].Bundle, in.Prices)}
		for f := 1; f <= 30; f++ {
			reports = append(reports, value*money.Micro(f)/10)
		}
		for _, w := range plan.Winners {
			reports = append(reports, w.Pay-1, w.Pay, w.Pay+1)
		}
		for _, r := range reports {
			if r < 0 {
				continue
			}
			if u, _ := utility(in, i, r, value); u > truth {
				t.Fatalf("bid %s with value %d gains %d by reporting %d, %d by telling the truth\ninput %+v",
					in.Bids[i].ID, value, u, r, truth, in)
			}
		}
	}
}

func TestCriticalIsMonotoneAndPaysTheThreshold(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(15, 16))
	wins := func(in ClearingInput, i int, amount money.Micro) (Winner, bool) {
		plan := Clear(withAmount(in, i, amount))
		k := slices.IndexFunc(plan.Winners, func(w Winner) bool { return w.Bid.ID == in.Bids[i].ID })
		if k < 0 {
			return Winner{}, false
		}
		return plan.Winners[k], true
	}
	checked := 0
	for range 1500 {
		in := randomInput(rng, Critical)
		for _, w := range Clear(in).Winners {
			i := indexOf(in.Bids, w.Bid.ID)
			for _, raise := range []money.Micro{1, 1000, w.Bid.Amount, money.Credits(1000)} {
				if _, ok := wins(in, i, w.Bid.Amount+raise); !ok {
					t.Fatalf("%s wins at %d but loses at %d\ninput %+v", w.Bid.ID, w.Bid.Amount, w.Bid.Amount+raise, in)
				}
			}
			at, ok := wins(in, i, w.Pay)
			if !ok || at.Pay != w.Pay {
				t.Fatalf("%s bidding its payment %d: won %v paying %d\ninput %+v", w.Bid.ID, w.Pay, ok, at.Pay, in)
			}
			if w.Pay > 0 {
				if _, ok := wins(in, i, w.Pay-1); ok {
					t.Fatalf("%s still wins one micro-credit below its payment %d\ninput %+v", w.Bid.ID, w.Pay, in)
				}
			}
			checked++
		}
	}
	if checked < 1000 {
		t.Fatalf("only %d winners checked; the generator lost its contention", checked)
	}
}
