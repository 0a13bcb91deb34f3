package market

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/bpagents/bpagents/internal/money"
)

// Mechanism names a clearing mechanism.
type Mechanism string

const (
	// FirstPrice ranks bids by amount and charges each winner its bid.
	FirstPrice Mechanism = "first-price"
	// Critical ranks bids by amount / √(normalized bundle size) and charges
	// each winner its critical value: the truthful greedy mechanism for
	// single-minded bidders (Lehmann, O'Callaghan and Shoham, 2002).
	Critical Mechanism = "critical"
)

// Mechanisms lists the known mechanisms; the first is the default.
var Mechanisms = [...]Mechanism{FirstPrice, Critical}

// ParseMechanism returns the mechanism named s ("" means FirstPrice), or an
// error listing the known names.
func ParseMechanism(s string) (Mechanism, error) {
	if s == "" {
		return FirstPrice, nil
	}
	if m := Mechanism(s); slices.Contains(Mechanisms[:], m) {
		return m, nil
	}
	names := make([]string, len(Mechanisms))
	for i, m := range Mechanisms {
		names[i] = string(m)
	}
	return "", fmt.Errorf("unknown mechanism %q (known: %s)", shorten(s), strings.Join(names, ", "))
}

// Bid is a pending bid as clearing sees it.
type Bid struct {
	ID      string      // unique; the last tie-breaker
	Seq     int64       // placement order; earlier bids win ties
	AgentID string      // the agent that wakes if the bid wins
	Amount  money.Micro // held at placement; the most the bid can pay
	Bundle  Bundle
}

// ClearingInput is everything one clearing needs. Clear does not modify it.
type ClearingInput struct {
	Bids []Bid
	// Free is the capacity not held by executions still running. A negative
	// amount (capacity shrank under running work) is treated as zero.
	Free Capacity
	// Capacity is the total capacity; it normalizes bundle sizes under
	// Critical and is the denominator of utilization.
	Capacity Capacity
	// Prices are the posted prices that set each bundle's reserve.
	Prices Prices
	// Busy holds agents that cannot win this cycle (already running).
	Busy map[string]bool
	// Mechanism selects the ranking and payment rule; "" means FirstPrice.
	Mechanism Mechanism
}

// Winner is a bid that won, with what it pays.
type Winner struct {
	Bid    Bid
	Pay    money.Micro // charged to the bid's hold and burned; Reserve ≤ Pay ≤ Amount
	Refund money.Micro // Amount − Pay, released back to the payer
}

// ClearingPlan is the outcome of one clearing, to be applied by the caller in
// one transaction. Bids that did not win stay pending.
type ClearingPlan struct {
	Mechanism Mechanism
	// Winners in allocation order.
	Winners []Winner
	// Allocated is the capacity the winners take, per resource.
	Allocated Capacity
	// Utilization per resource after clearing: (Capacity − Free + Allocated)
	// / Capacity, 0 for a resource with no capacity. Not clamped: above 1
	// means capacity shrank under running work.
	Utilization map[Resource]float64
}

// Clear decides which pending bids win this cycle and what each pays.
//
// A bid is considered only if its agent is not busy, its bundle is sane
// (positive cpu, memory and duration, nothing negative), its bundle fits the
// free capacity, and its amount is at least the bundle's Reserve at in.Prices
// (prices may have risen since it was placed). Considered bids are ranked by
// the mechanism and allocated greedily, all or nothing: a bid that does not
// fit what is left is skipped and later, smaller ones may still win, and an
// agent wins at most once per cycle. Ties break by Seq, then ID, so the plan
// does not depend on the order of in.Bids.
//
// Clear panics on an unknown mechanism; validate configuration with
// ParseMechanism.
func Clear(in ClearingInput) ClearingPlan {
	mech := in.Mechanism
	if mech == "" {
		mech = FirstPrice
	}
	free := in.Free.vector()
	for i := range free {
		free[i] = max(free[i], 0)
	}
	cands := eligible(in, free)
	var rk *densityRanker
	switch mech {
	case FirstPrice:
		cands = rankByAmount(cands, in.Bids)
	case Critical:
		rk = newDensityRanker(in.Capacity, in.Bids)
		cands = rk.rank(cands)
	default:
		panic(fmt.Sprintf("market: unknown mechanism %q", mech))
	}
	alloc := allocate(cands, free, in.Bids)
	plan := ClearingPlan{Mechanism: mech, Winners: make([]Winner, len(alloc.winners))}
	var total vector
	for k, pos := range alloc.winners {
		c := &cands[pos]
		pay := c.amount
		if rk != nil {
			pay = rk.payment(cands, alloc, k)
		}
		plan.Winners[k] = Winner{Bid: in.Bids[c.bid], Pay: pay, Refund: c.amount - pay}
		for i := range total {
			total[i] += c.q[i]
		}
	}
	plan.Allocated = total.capacity()
	plan.Utilization = utilization(in.Capacity, in.Free, total)
	return plan
}

// candidate is a bid that may win this cycle, with what ranking needs.
type candidate struct {
	q       vector      // demand in base units
	amount  money.Micro // the bid
	reserve money.Micro // Reserve at the input prices
	seq     int64
	density float64 // ranking key under Critical (approximate; see densityRanker)
	bid     int     // index into ClearingInput.Bids
}

// eligible returns the bids that can win this cycle (see Clear).
func eligible(in ClearingInput, free vector) []candidate {
	out := make([]candidate, 0, len(in.Bids))
	for i := range in.Bids {
		b := &in.Bids[i]
		if !sane(&b.Bundle) {
			continue
		}
		q := b.Bundle.Demand().vector()
		if !q.fits(&free) || (len(in.Busy) > 0 && in.Busy[b.AgentID]) {
			continue
		}
		r := Reserve(b.Bundle, in.Prices)
		if b.Amount < r {
			continue
		}
		out = append(out, candidate{q: q, amount: b.Amount, reserve: r, seq: b.Seq, bid: i})
	}
	return out
}

// sane reports whether b is a bundle clearing can reason about. Placement
// validates bundles fully; this guards the invariants clearing relies on
// (every bundle uses CPU and memory, no quantity is negative).
func sane(b *Bundle) bool {
	return b.CPUMillis > 0 && b.MemoryMB > 0 && b.DurationSeconds > 0 && b.Tokens >= 0 && b.Attention >= 0
}

// sortKey is what ranking reads of a candidate. Sorting these small values
// and then gathering the candidates is much faster than sorting candidates.
type sortKey struct {
	amount  money.Micro
	density float64
	seq     int64
	i       int // index into the candidates being ranked
}

// sortCandidates returns cands in the order of cmp.
func sortCandidates(cands []candidate, cmp func(a, b sortKey) int) []candidate {
	keys := make([]sortKey, len(cands))
	for i := range cands {
		c := &cands[i]
		keys[i] = sortKey{amount: c.amount, density: c.density, seq: c.seq, i: i}
	}
	slices.SortFunc(keys, cmp)
	ranked := make([]candidate, len(cands))
	for i, k := range keys {
		ranked[i] = cands[k.i]
	}
	return ranked
}

// rankByAmount orders for FirstPrice: amount descending, then Seq, then ID.
func rankByAmount(cands []candidate, bids []Bid) []candidate {
	return sortCandidates(cands, func(a, b sortKey) int {
		if a.amount != b.amount {
			return cmp.Compare(b.amount, a.amount)
		}
		return tieBreak(a.seq, b.seq, bids[cands[a.i].bid].ID, bids[cands[b.i].bid].ID)
	})
}

// tieBreak orders equally ranked bids: earlier Seq first, then smaller ID.
func tieBreak(seqA, seqB int64, idA, idB string) int {
	if seqA != seqB {
		return cmp.Compare(seqA, seqB)
	}
	return strings.Compare(idA, idB)
}

// allocation is the greedy pass over ranked candidates.
type allocation struct {
	winners []int    // positions in the ranked candidates, in allocation order
	before  []vector // free capacity just before each winner was allocated
}

// allocate walks the ranking and takes every candidate that fits what is
// left and whose agent has not won yet.
func allocate(ranked []candidate, free vector, bids []Bid) allocation {
	var a allocation
	won := make(map[string]struct{})
	for pos := range ranked {
		c := &ranked[pos]
		if !c.q.fits(&free) {
			continue
		}
		agent := bids[c.bid].AgentID
		if _, dup := won[agent]; dup {
			continue
		}
		a.winners = append(a.winners, pos)
		a.before = append(a.before, free)
		free.take(&c.q)
		won[agent] = struct{}{}
		if free[0] == 0 || free[1] == 0 {
			break // every candidate needs CPU and memory
		}
	}
	return a
}

func utilization(capacity, free Capacity, allocated vector) map[Resource]float64 {
	c, f := capacity.vector(), free.vector()
	u := make(map[Resource]float64, numResources)
	for i, r := range Resources {
		u[r] = 0
		if c[i] > 0 {
			u[r] = (float64(c[i]) - float64(f[i]) + float64(allocated[i])) / float64(c[i])
		}
	}
	return u
}
