package market

import (
	"math"
	"math/bits"

	"github.com/bpagents/bpagents/internal/money"
)

// PriceRules say how posted prices follow utilization after each clearing.
type PriceRules struct {
	// A price rises when its resource's utilization is above TargetHigh and
	// falls when it is below TargetLow (0 ≤ TargetLow ≤ TargetHigh ≤ 1).
	TargetLow, TargetHigh float64
	// StepUp and StepDown are relative moves, e.g. 0.10 and 0.05, applied to
	// the price at a resolution of one part per million. StepUp is at most 10,
	// StepDown at most 1. A step of 0 disables that direction.
	StepUp, StepDown float64
	// Floor and Ceiling bound each resource's price; Floor ≤ Ceiling.
	Floor, Ceiling Prices
}

const (
	ppm        = 1_000_000
	maxStepUp  = 10
	maxStepDwn = 1
)

// Validate checks the rules and returns a *FieldError naming the first bad
// field (target_low, target_high, step_up, step_down, floor.<resource>,
// ceiling.<resource>).
func (r PriceRules) Validate() error {
	switch {
	case !inRange(r.TargetLow, 0, 1):
		return fieldErr("target_low", "must be between 0 and 1 (got %v)", r.TargetLow)
	case !inRange(r.TargetHigh, r.TargetLow, 1):
		return fieldErr("target_high", "must be between target_low %v and 1 (got %v)", r.TargetLow, r.TargetHigh)
	case !inRange(r.StepUp, 0, maxStepUp):
		return fieldErr("step_up", "must be between 0 and %d (got %v)", maxStepUp, r.StepUp)
	case !inRange(r.StepDown, 0, maxStepDwn):
		return fieldErr("step_down", "must be between 0 and %d (got %v)", maxStepDwn, r.StepDown)
	}
	for _, res := range Resources {
		lo, hi := r.Floor.Of(res), r.Ceiling.Of(res)
		if lo < 0 {
			return fieldErr("floor."+string(res), "must not be negative (got %s)", lo)
		}
		if hi < lo || hi > money.Max {
			return fieldErr("ceiling."+string(res), "must be between floor %s and %s (got %s)", lo, money.Max, hi)
		}
	}
	return nil
}

func inRange(v, lo, hi float64) bool { return v >= lo && v <= hi } // false for NaN

// Adjust returns the prices after one cycle. For each resource with a
// utilization in the map, the price rises by StepUp when utilization is above
// TargetHigh and falls by StepDown when it is below TargetLow; a move is
// always at least one micro-credit, so a price near zero is never stuck. Every
// result is clamped to [Floor, Ceiling], even when it did not move. Resources
// missing from utilization (or NaN) keep their price, clamped. rules should
// pass Validate.
func Adjust(prices Prices, utilization map[Resource]float64, rules PriceRules) Prices {
	up, down := stepPPM(rules.StepUp), stepPPM(rules.StepDown)
	var out Prices
	for _, res := range Resources {
		p := prices.Of(res)
		lo, hi := rules.Floor.Of(res), rules.Ceiling.Of(res)
		u, ok := utilization[res]
		switch {
		case ok && u > rules.TargetHigh && up > 0:
			p = raise(p, up, hi)
		case ok && u < rules.TargetLow && down > 0:
			p = lower(p, down)
		}
		out.set(res, max(min(p, hi), lo))
	}
	return out
}

// stepPPM converts a relative step to parts per million (0 if not positive
// or not finite).
func stepPPM(step float64) uint64 {
	if !(step > 0) || math.IsInf(step, 0) {
		return 0
	}
	return uint64(math.Round(min(step, maxStepUp) * ppm))
}

// raise returns p + max(1, ⌊p × step/10⁶⌋), or ceiling if that is larger.
func raise(p money.Micro, step uint64, ceiling money.Micro) money.Micro {
	p = max(p, 0)
	d, ok := mulDiv(uint64(p), step, ppm)
	if !ok || d > uint64(money.Max) {
		return ceiling
	}
	d = max(d, 1)
	if money.Micro(d) > ceiling-p {
		return ceiling
	}
	return p + money.Micro(d)
}

// lower returns p − max(1, ⌊p × step/10⁶⌋), never below zero.
func lower(p money.Micro, step uint64) money.Micro {
	if p <= 0 {
		return 0
	}
	d, _ := mulDiv(uint64(p), min(step, ppm), ppm) // ≤ p, so it fits
	return p - max(money.Micro(d), 1)
}

// mulDiv returns ⌊a × b / d⌋, or ok=false if it does not fit in 64 bits.
func mulDiv(a, b, d uint64) (uint64, bool) {
	hi, lo := bits.Mul64(a, b)
	if hi >= d {
		return 0, false
	}
	q, _ := bits.Div64(hi, lo, d)
	return q, true
}
