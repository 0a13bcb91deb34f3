package market

import (
	"math/bits"

	"github.com/bpagents/bpagents/internal/money"
)

// Prices are the posted prices, in micro-credits per unit: CPU per
// core-second, memory per MB-second, tokens per token, attention per unit.
// In JSON each is a decimal number of credits.
type Prices struct {
	CPU       money.Micro `json:"cpu"`
	Memory    money.Micro `json:"memory_mb"`
	Tokens    money.Micro `json:"tokens"`
	Attention money.Micro `json:"attention"`
}

// Of returns the price of resource r (0 for an unknown resource).
func (p Prices) Of(r Resource) money.Micro {
	switch r {
	case CPU:
		return p.CPU
	case Memory:
		return p.Memory
	case Tokens:
		return p.Tokens
	case Attention:
		return p.Attention
	}
	return 0
}

// set changes the price of r; r must be one of Resources.
func (p *Prices) set(r Resource, v money.Micro) {
	switch r {
	case CPU:
		p.CPU = v
	case Memory:
		p.Memory = v
	case Tokens:
		p.Tokens = v
	case Attention:
		p.Attention = v
	}
}

// MaxReserve is what Reserve returns when the exact reserve exceeds
// money.Max: more than any bid may offer, so such a bundle cannot be bought.
const MaxReserve = money.Max + 1

// Reserve returns the cost of bundle b at posted prices p, the least a bid for
// b must offer:
//
//	ceil(cpu_cores × duration × p.CPU) + memory_mb × duration × p.Memory
//	  + tokens × p.Tokens + attention × p.Attention
//
// computed exactly in integers (CPU in millicores, divided by 1000 rounding
// up). Products are formed in 128 bits, so no input can overflow; a reserve
// above money.Max is reported as MaxReserve. Negative quantities and prices,
// which Validate and PriceRules never let through, count as zero.
func Reserve(b Bundle, p Prices) money.Micro {
	dur := nonNeg(b.DurationSeconds)
	terms := [...]struct{ q, secs, price, div uint64 }{
		{nonNeg(b.CPUMillis), dur, nonNeg(int64(p.CPU)), 1000},
		{nonNeg(b.MemoryMB), dur, nonNeg(int64(p.Memory)), 1},
		{nonNeg(b.Tokens), 1, nonNeg(int64(p.Tokens)), 1},
		{nonNeg(b.Attention), 1, nonNeg(int64(p.Attention)), 1},
	}
	var total uint64
	for _, t := range terms {
		v, ok := costTerm(t.q, t.secs, t.price, t.div)
		if !ok || v > uint64(money.Max)-total {
			return MaxReserve
		}
		total += v
	}
	return money.Micro(total)
}

// costTerm returns ceil(q × secs × price / div), or ok=false when the result
// exceeds money.Max. The product is exact in 128 bits.
func costTerm(q, secs, price, div uint64) (v uint64, ok bool) {
	h1, l1 := bits.Mul64(q, secs)
	hh, hl := bits.Mul64(h1, price)
	lh, lo := bits.Mul64(l1, price)
	hi, carry := bits.Add64(hl, lh, 0)
	if hh != 0 || carry != 0 || hi >= div {
		return 0, false // the quotient would not fit in 64 bits
	}
	quo, rem := bits.Div64(hi, lo, div)
	if quo > uint64(money.Max) {
		return 0, false
	}
	if rem != 0 {
		quo++
	}
	return quo, quo <= uint64(money.Max)
}

func nonNeg(v int64) uint64 {
	if v < 0 {
		return 0
	}
	return uint64(v)
}
