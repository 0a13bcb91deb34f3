package market

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/bpagents/bpagents/internal/money"
)

func testRules() PriceRules {
	return PriceRules{
		TargetLow: 0.3, TargetHigh: 0.8, StepUp: 0.10, StepDown: 0.05,
		Floor:   Prices{CPU: 1, Memory: 0, Tokens: 0, Attention: 1000},
		Ceiling: Prices{CPU: 1_000_000, Memory: 100, Tokens: 10, Attention: money.Credits(100)},
	}
}

func TestAdjust(t *testing.T) {
	t.Parallel()
	rules := testRules()
	tests := []struct {
		name  string
		price money.Micro
		util  float64
		want  money.Micro
	}{
		{"rises by step up", 100_000, 0.9, 110_000},
		{"falls by step down", 100_000, 0.1, 95_000},
		{"stays inside the band", 100_000, 0.5, 100_000},
		{"stays at the high target", 100_000, 0.8, 100_000},
		{"stays at the low target", 100_000, 0.3, 100_000},
		{"tiny price rises by one", 3, 1, 4},
		{"tiny price falls by one", 3, 0, 2},
		{"rounds the move down", 1234, 1, 1357},
		{"stops at the ceiling", 990_000, 1, 1_000_000},
		{"stays at the ceiling", 1_000_000, 1, 1_000_000},
		{"stops at the floor", 1, 0, 1},
		{"clamps a price above the ceiling", 5_000_000, 0.5, 1_000_000},
		{"clamps a price below the floor", 0, 0.5, 1},
		{"over-committed capacity still rises", 100, 1.5, 110},
		{"NaN keeps the price", 100, math.NaN(), 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Adjust(Prices{CPU: tt.price}, map[Resource]float64{CPU: tt.util}, rules)
			if got.CPU != tt.want {
				t.Fatalf("Adjust(cpu %d at %v) = %d; want %d", tt.price, tt.util, got.CPU, tt.want)
			}
		})
	}
}

func TestAdjustPerResource(t *testing.T) {
	t.Parallel()
	rules := testRules()
	in := Prices{CPU: 1000, Memory: 50, Tokens: 5, Attention: money.Credits(5)}
	got := Adjust(in, map[Resource]float64{CPU: 1, Memory: 0, Attention: 0.5}, rules)
	want := Prices{CPU: 1100, Memory: 48, Tokens: 5, Attention: money.Credits(5)} // tokens: no utilization
	if got != want {
		t.Fatalf("Adjust = %+v; want %+v", got, want)
	}
	zeroStep := rules
	zeroStep.StepUp, zeroStep.StepDown = 0, 0
	if got := Adjust(in, map[Resource]float64{CPU: 1, Memory: 0}, zeroStep); got != in {
		t.Fatalf("zero steps moved prices: %+v", got)
	}
}

func TestAdjustExtremes(t *testing.T) {
	t.Parallel()
	rules := PriceRules{TargetLow: 0.5, TargetHigh: 0.5, StepUp: 10, StepDown: 1,
		Ceiling: Prices{CPU: money.Max, Memory: money.Max, Tokens: money.Max, Attention: money.Max}}
	high := Prices{CPU: money.Max / 2, Memory: money.Max}
	got := Adjust(high, map[Resource]float64{CPU: 1, Memory: 1}, rules)
	if got.CPU != money.Max || got.Memory != money.Max {
		t.Fatalf("huge rise = %+v; want both at money.Max", got)
	}
	got = Adjust(high, map[Resource]float64{CPU: 0, Memory: 0}, rules)
	if got.CPU != 0 || got.Memory != 0 {
		t.Fatalf("full fall = %+v; want zero", got)
	}
}

func TestAdjustProperties(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20_000 {
		lo := money.Micro(rng.Int64N(1000))
		rules := PriceRules{
			TargetLow: 0.2 + 0.3*rng.Float64(), TargetHigh: 0.6 + 0.4*rng.Float64(),
			StepUp: rng.Float64(), StepDown: rng.Float64(),
			Floor:   Prices{CPU: lo},
			Ceiling: Prices{CPU: lo + money.Micro(rng.Int64N(1e9)), Memory: money.Max, Tokens: money.Max, Attention: money.Max},
		}
		if err := rules.Validate(); err != nil {
			t.Fatalf("Validate(%+v) = %v", rules, err)
		}
		p := money.Micro(rng.Int64N(2e9))
		u := rng.Float64() * 1.2
		got := Adjust(Prices{CPU: p}, map[Resource]float64{CPU: u}, rules).CPU
		clamped := max(min(p, rules.Ceiling.CPU), rules.Floor.CPU)
		switch {
		case got < rules.Floor.CPU || got > rules.Ceiling.CPU:
			t.Fatalf("price %d left [%d, %d]", got, rules.Floor.CPU, rules.Ceiling.CPU)
		case u > rules.TargetHigh && got < clamped, u < rules.TargetLow && got > clamped:
			t.Fatalf("price %d → %d moved the wrong way at utilization %v", p, got, u)
		case u > rules.TargetHigh && p < rules.Ceiling.CPU && p >= rules.Floor.CPU && got == p && rules.StepUp > 1e-6:
			t.Fatalf("price %d stuck at utilization %v", p, u)
		case u >= rules.TargetLow && u <= rules.TargetHigh && got != clamped:
			t.Fatalf("price %d → %d moved inside the band", p, got)
		}
	}
}

func TestPriceRulesValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		edit  func(*PriceRules)
		field string // "" means valid
	}{
		{"valid", func(*PriceRules) {}, ""},
		{"equal targets", func(r *PriceRules) { r.TargetLow, r.TargetHigh = 0.5, 0.5 }, ""},
		{"negative target", func(r *PriceRules) { r.TargetLow = -0.1 }, "target_low"},
		{"NaN target", func(r *PriceRules) { r.TargetHigh = math.NaN() }, "target_high"},
		{"inverted targets", func(r *PriceRules) { r.TargetLow, r.TargetHigh = 0.9, 0.1 }, "target_high"},
		{"target above one", func(r *PriceRules) { r.TargetHigh = 1.5 }, "target_high"},
		{"huge step up", func(r *PriceRules) { r.StepUp = 11 }, "step_up"},
		{"infinite step up", func(r *PriceRules) { r.StepUp = math.Inf(1) }, "step_up"},
		{"negative step down", func(r *PriceRules) { r.StepDown = -0.1 }, "step_down"},
		{"step down above one", func(r *PriceRules) { r.StepDown = 1.5 }, "step_down"},
		{"negative floor", func(r *PriceRules) { r.Floor.Tokens = -1 }, "floor.tokens"},
		{"ceiling below floor", func(r *PriceRules) { r.Ceiling.Attention = 1 }, "ceiling.attention"},
		{"ceiling above max", func(r *PriceRules) { r.Ceiling.CPU = money.Max + 1 }, "ceiling.cpu"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := testRules()
			tt.edit(&r)
			err := r.Validate()
			var fe *FieldError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate = %v; want nil", err)
			case tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field):
				t.Fatalf("Validate = %v; want an error on %s", err, tt.field)
			}
		})
	}
}
