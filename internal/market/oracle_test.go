package market

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/bpagents/bpagents/internal/money"
)

// randomInput draws a small clearing instance with contention, shared agents,
// busy agents, identical bundles and amounts (exact ties), bids below their
// reserve and capacity partly held by running executions.
func randomInput(rng *rand.Rand, mech Mechanism) ClearingInput {
	caps := Capacity{
		CPUMillis: 250 * (1 + rng.Int64N(8)),
		MemoryMB:  256 * (1 + rng.Int64N(16)),
		Tokens:    []int64{0, 1000, 100_000}[rng.IntN(3)],
		Attention: rng.Int64N(2),
	}
	free := caps
	if rng.IntN(2) == 0 {
		free.CPUMillis -= rng.Int64N(caps.CPUMillis + 1)
		free.MemoryMB -= rng.Int64N(caps.MemoryMB + 1)
		free.Attention -= rng.Int64N(caps.Attention + 1)
	}
	prices := Prices{
		CPU:       1000 * money.Micro(rng.Int64N(3)),
		Memory:    money.Micro(rng.Int64N(3)),
		Tokens:    money.Micro(rng.Int64N(2)),
		Attention: money.Credits(rng.Int64N(2)),
	}
	n := 1 + rng.IntN(24)
	agents := 1 + rng.IntN(n)
	seqs := rng.Perm(n)
	bids := make([]Bid, n)
	for i := range bids {
		b := randomBundle(rng, caps)
		if i > 0 && rng.IntN(4) == 0 {
			b = bids[rng.IntN(i)].Bundle
		}
		r := Reserve(b, prices)
		amount := r + money.Micro(rng.Int64N(3_000_000))
		switch rng.IntN(8) {
		case 0:
			if i > 0 {
				amount = bids[rng.IntN(i)].Amount
			}
		case 1:
			amount = max(r-1, 0)
		}
		seq := int64(seqs[i])
		if i > 0 && rng.IntN(10) == 0 {
			seq = bids[rng.IntN(i)].Seq
		}
		bids[i] = Bid{ID: fmt.Sprintf("b%02d", i), Seq: seq, AgentID: fmt.Sprintf("a%d", rng.IntN(agents)),
			Amount: amount, Bundle: b}
	}
	var busy map[string]bool
	if rng.IntN(3) == 0 {
		busy = map[string]bool{fmt.Sprintf("a%d", rng.IntN(agents)): true}
	}
	return ClearingInput{Bids: bids, Free: free, Capacity: caps, Prices: prices, Busy: busy, Mechanism: mech}
}

func randomBundle(rng *rand.Rand, caps Capacity) Bundle {
	b := Bundle{
		CPUMillis:       1 + rng.Int64N(caps.CPUMillis),
		MemoryMB:        1 + rng.Int64N(caps.MemoryMB),
		DurationSeconds: 1 + rng.Int64N(30),
	}
	if rng.IntN(2) == 0 { // small bundles, so that several win
		b.CPUMillis, b.MemoryMB = 1+b.CPUMillis/4, 1+b.MemoryMB/4
	}
	if caps.Tokens > 0 && rng.IntN(2) == 0 {
		b.Tokens = rng.Int64N(caps.Tokens + 1)
	}
	if rng.IntN(4) == 0 {
		b.Attention = 1
	}
	return b
}

// refWinners is a slow, obviously correct clearing used as an oracle: exact
// rational densities, a plain sort and a plain greedy pass. It returns the
// winning bid ids in allocation order.
func refWinners(in ClearingInput) []string {
	type entry struct {
		bid  Bid
		key  *big.Rat // amount for first-price, amount²/size for critical
		need [numResources]int64
	}
	var es []entry
	for _, b := range in.Bids {
		bu := b.Bundle
		need := [numResources]int64{bu.CPUMillis, bu.MemoryMB, bu.Tokens, bu.Attention}
		if in.Busy[b.AgentID] || bu.CPUMillis <= 0 || bu.MemoryMB <= 0 || bu.DurationSeconds <= 0 ||
			bu.Tokens < 0 || bu.Attention < 0 || b.Amount < Reserve(bu, in.Prices) {
			continue
		}
		key := new(big.Rat).SetInt64(int64(b.Amount))
		if in.Mechanism == Critical {
			size := new(big.Rat)
			for i, r := range Resources {
				if c := in.Capacity.Of(r); c > 0 {
					size.Add(size, big.NewRat(need[i], c))
				}
			}
			if size.Sign() == 0 {
				continue
			}
			key.Mul(key, key).Quo(key, size)
		}
		es = append(es, entry{b, key, need})
	}
	sort.Slice(es, func(i, j int) bool {
		if c := es[i].key.Cmp(es[j].key); c != 0 {
			return c > 0
		}
		if es[i].bid.Seq != es[j].bid.Seq {
			return es[i].bid.Seq < es[j].bid.Seq
		}
		return es[i].bid.ID < es[j].bid.ID
	})
	var left [numResources]int64
	for i, r := range Resources {
		left[i] = max(in.Free.Of(r), 0)
	}
	won := map[string]bool{}
	ids := []string{}
next:
	for _, e := range es {
		for i := range left {
			if e.need[i] > left[i] {
				continue next
			}
		}
		if won[e.bid.AgentID] {
			continue
		}
		for i := range left {
			left[i] -= e.need[i]
		}
		won[e.bid.AgentID] = true
		ids = append(ids, e.bid.ID)
	}
	return ids
}

// withAmount returns in with bid i's amount replaced.
func withAmount(in ClearingInput, i int, amount money.Micro) ClearingInput {
	out := in
	out.Bids = append([]Bid(nil), in.Bids...)
	out.Bids[i].Amount = amount
	return out
}

// refCritical finds by bisection the least amount at which bid i wins under
// the oracle, or ok=false if it cannot win at its own amount.
func refCritical(in ClearingInput, i int) (money.Micro, bool) {
	wins := func(x money.Micro) bool {
		for _, id := range refWinners(withAmount(in, i, x)) {
			if id == in.Bids[i].ID {
				return true
			}
		}
		return false
	}
	hi := in.Bids[i].Amount
	if !wins(hi) {
		return 0, false
	}
	lo := money.Micro(-1) // loses: below any reserve
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if wins(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, true
}

func TestClearMatchesOracle(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 10))
	for iter := range 1500 {
		mech := Mechanisms[iter%2]
		in := randomInput(rng, mech)
		plan := Clear(in)
		want := refWinners(in)
		if got := winnerIDs(plan); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s instance %d: winners %v; oracle %v\ninput %+v", mech, iter, got, want, in)
		}
		if mech != Critical || iter%5 != 1 {
			continue // bisection is slow; check payments on a fifth of the instances
		}
		for _, w := range plan.Winners {
			i := indexOf(in.Bids, w.Bid.ID)
			pay, ok := refCritical(in, i)
			if !ok || pay != w.Pay {
				t.Fatalf("instance %d: %s pays %d; oracle threshold %d (%v)\ninput %+v", iter, w.Bid.ID, w.Pay, pay, ok, in)
			}
		}
	}
}

func indexOf(bids []Bid, id string) int {
	for i, b := range bids {
		if b.ID == id {
			return i
		}
	}
	return -1
}
