package market

import (
	"cmp"
	"math"
	"math/big"

	"github.com/bpagents/bpagents/internal/money"
)

// nearTie is the relative gap under which two float density keys are
// compared exactly. A key a/√s computed in float64 is within about 10⁻¹⁵ of
// its exact value, so a gap wider than this orders the keys exactly as exact
// arithmetic would, and the comparison stays a consistent total order.
const nearTie = 1e-9

// densityRanker ranks candidates under Critical and computes their payments.
//
// A bundle's normalized size is s = Σ q_r / cap_r over resources with
// capacity; its density is amount / √s. Densities are compared as floats when
// they are clearly apart, and otherwise exactly: a/√s > b/√t ⇔ a²·t > b²·s,
// with every size scaled by D = Π cap_r into an integer (big.Int).
type densityRanker struct {
	bids  []Bid
	caps  vector
	mult  [numResources]*big.Int // D / cap_r, nil for a resource without capacity
	sizes map[int]*big.Int       // exact size × D by bid index, filled lazily
	x, y  big.Int                // scratch for comparisons
}

func newDensityRanker(capacity Capacity, bids []Bid) *densityRanker {
	rk := &densityRanker{bids: bids, caps: capacity.vector(), sizes: make(map[int]*big.Int)}
	d := big.NewInt(1)
	for _, c := range rk.caps {
		if c > 0 {
			d.Mul(d, big.NewInt(c))
		}
	}
	for i, c := range rk.caps {
		if c > 0 {
			rk.mult[i] = new(big.Int).Quo(d, big.NewInt(c))
		}
	}
	return rk
}

// rank sets each candidate's density, drops candidates of zero size (they
// only ask for resources without capacity) and sorts by density, descending,
// then Seq, then ID.
func (rk *densityRanker) rank(cands []candidate) []candidate {
	kept := cands[:0]
	for _, c := range cands {
		s := 0.0
		for i, q := range c.q {
			if rk.caps[i] > 0 {
				s += float64(q) / float64(rk.caps[i])
			}
		}
		if !(s > 0) {
			continue
		}
		c.density = float64(c.amount) / math.Sqrt(s)
		kept = append(kept, c)
	}
	return sortCandidates(kept, func(a, b sortKey) int {
		if a.density != b.density {
			hi, lo := max(a.density, b.density), min(a.density, b.density)
			if hi-lo > nearTie*hi {
				return cmp.Compare(b.density, a.density)
			}
		}
		return rk.compare(&kept[a.i], &kept[b.i])
	})
}

// compare orders two candidates exactly: denser first, then tieBreak.
func (rk *densityRanker) compare(a, b *candidate) int {
	if c := rk.exactCompare(a, b); c != 0 {
		return c
	}
	return rk.tieBreak(a, b)
}

func (rk *densityRanker) tieBreak(a, b *candidate) int {
	return tieBreak(a.seq, b.seq, rk.bids[a.bid].ID, rk.bids[b.bid].ID)
}

// exactCompare returns -1 if a is strictly denser than b, 1 if b is, 0 if
// their densities are equal.
func (rk *densityRanker) exactCompare(a, b *candidate) int {
	if a.q == b.q {
		return cmp.Compare(b.amount, a.amount)
	}
	lhs := rk.x.SetInt64(int64(a.amount))
	lhs.Mul(lhs, lhs).Mul(lhs, rk.size(b))
	rhs := rk.y.SetInt64(int64(b.amount))
	rhs.Mul(rhs, rhs).Mul(rhs, rk.size(a))
	return rhs.Cmp(lhs)
}

// size returns the candidate's exact normalized size times D.
func (rk *densityRanker) size(c *candidate) *big.Int {
	if s, ok := rk.sizes[c.bid]; ok {
		return s
	}
	s, t := new(big.Int), new(big.Int)
	for i, q := range c.q {
		if rk.mult[i] != nil && q != 0 {
			s.Add(s, t.Mul(t.SetInt64(q), rk.mult[i]))
		}
	}
	rk.sizes[c.bid] = s
	return s
}

// payment returns what the k-th winner pays: its critical value, the lowest
// amount at which it would still win with every other bid unchanged, but at
// least its reserve and at most its bid.
//
// Lowering a winner's amount only moves it later in the ranking, and the
// greedy pass before its new position is exactly the pass without it. So the
// allocation is replayed without the winner from the state it found, until
// the first bid whose allocation leaves the winner unable to win (its bundle
// no longer fits, or that bid belongs to the same agent). The winner wins iff
// it ranks before that bid. If there is no such bid it wins at any eligible
// amount and pays its reserve.
func (rk *densityRanker) payment(ranked []candidate, a allocation, k int) money.Micro {
	pos := a.winners[k]
	w := &ranked[pos]
	agent := rk.bids[w.bid].AgentID
	free := a.before[k]
	won := make(map[string]struct{}, k+1)
	for _, p := range a.winners[:k] {
		won[rk.bids[ranked[p].bid].AgentID] = struct{}{}
	}
	for j := pos + 1; j < len(ranked); j++ {
		c := &ranked[j]
		if !c.q.fits(&free) {
			continue
		}
		other := rk.bids[c.bid].AgentID
		if _, dup := won[other]; dup {
			continue
		}
		free.take(&c.q)
		won[other] = struct{}{}
		if other == agent || !w.q.fits(&free) {
			return min(max(rk.threshold(w, c), w.reserve), w.amount)
		}
	}
	return w.reserve
}

// threshold returns the smallest amount x ≥ 0 at which w ranks before j:
// x²·S_j > b²·S_w, or equality when w wins the tie (earlier Seq, then ID).
// That is x = ⌈√m⌉ with m = ⌈n / S_j⌉ and n = b²·S_w (+1 when w loses ties).
func (rk *densityRanker) threshold(w, j *candidate) money.Micro {
	n := new(big.Int).SetInt64(int64(j.amount))
	n.Mul(n, n).Mul(n, rk.size(w))
	if rk.tieBreak(w, j) > 0 {
		n.Add(n, big.NewInt(1))
	}
	m, r := new(big.Int).QuoRem(n, rk.size(j), new(big.Int))
	if r.Sign() > 0 {
		m.Add(m, big.NewInt(1))
	}
	x := new(big.Int).Sqrt(m)
	if r.Mul(x, x).Cmp(m) < 0 {
		x.Add(x, big.NewInt(1))
	}
	if !x.IsInt64() {
		return w.amount // cannot happen: w won, so x ≤ its amount
	}
	return money.Micro(x.Int64())
}
