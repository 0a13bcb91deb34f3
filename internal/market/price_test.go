package market

import (
	"encoding/json"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/bpagents/bpagents/internal/money"
)

func TestReserve(t *testing.T) {
	t.Parallel()
	p := Prices{CPU: 100_000, Memory: 10, Tokens: 2, Attention: money.Credits(5)}
	tests := []struct {
		name string
		b    Bundle
		p    Prices
		want money.Micro
	}{
		{"cpu only", Bundle{CPUMillis: 1000, DurationSeconds: 10}, p, 1_000_000},
		{"half a core", Bundle{CPUMillis: 500, DurationSeconds: 3}, p, 150_000},
		{"cpu rounds up", Bundle{CPUMillis: 1, DurationSeconds: 1}, Prices{CPU: 1}, 1},
		{"cpu exact thousandth", Bundle{CPUMillis: 1, DurationSeconds: 1000}, Prices{CPU: 1}, 1},
		{"cpu rounds up once", Bundle{CPUMillis: 333, DurationSeconds: 3}, Prices{CPU: 1}, 1},
		{"memory", Bundle{MemoryMB: 256, DurationSeconds: 10}, p, 25_600},
		{"tokens and attention", Bundle{Tokens: 1000, Attention: 1, DurationSeconds: 10}, p, 2_000 + 5_000_000},
		{"everything", Bundle{500, 256, 10, 1000, 1}, p, 500_000 + 25_600 + 2_000 + 5_000_000},
		{"free", Bundle{500, 256, 10, 1000, 1}, Prices{}, 0},
		{"negatives count as zero", Bundle{-5, -5, -5, -5, -5}, Prices{-1, -1, -1, -1}, 0},
		{"saturates", Bundle{CPUMillis: 1 << 62, DurationSeconds: 1 << 62}, Prices{CPU: money.Max}, MaxReserve},
		{"just at the maximum", Bundle{Tokens: 1}, Prices{Tokens: money.Max}, money.Max},
		{"sum above the maximum", Bundle{Tokens: 1, Attention: 1}, Prices{Tokens: money.Max, Attention: 1}, MaxReserve},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Reserve(tt.b, tt.p); got != tt.want {
				t.Fatalf("Reserve(%+v, %+v) = %d; want %d", tt.b, tt.p, got, tt.want)
			}
		})
	}
}

// bigReserve is the definition of Reserve in arbitrary precision.
func bigReserve(b Bundle, p Prices) money.Micro {
	n := func(v int64) *big.Int { return big.NewInt(max(v, 0)) }
	dur := n(b.DurationSeconds)
	cpu := new(big.Int).Mul(n(b.CPUMillis), dur)
	cpu.Mul(cpu, n(int64(p.CPU)))
	cpu.Add(cpu, big.NewInt(999)).Quo(cpu, big.NewInt(1000))
	total := new(big.Int).Set(cpu)
	mem := new(big.Int).Mul(n(b.MemoryMB), dur)
	total.Add(total, mem.Mul(mem, n(int64(p.Memory))))
	total.Add(total, new(big.Int).Mul(n(b.Tokens), n(int64(p.Tokens))))
	total.Add(total, new(big.Int).Mul(n(b.Attention), n(int64(p.Attention))))
	if total.Cmp(big.NewInt(int64(money.Max))) > 0 {
		return MaxReserve
	}
	return money.Micro(total.Int64())
}

func TestReserveMatchesArbitraryPrecision(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	// Draw magnitudes across the whole range so both the exact and the
	// saturating paths are exercised.
	v := func() int64 { return rng.Int64N(1 << rng.IntN(63)) }
	for range 200_000 {
		b := Bundle{v(), v(), v(), v(), v()}
		p := Prices{money.Micro(v()), money.Micro(v()), money.Micro(v()), money.Micro(v())}
		if got, want := Reserve(b, p), bigReserve(b, p); got != want {
			t.Fatalf("Reserve(%+v, %+v) = %d; want %d", b, p, got, want)
		}
	}
}

func TestPricesJSONAndOf(t *testing.T) {
	t.Parallel()
	p := Prices{CPU: 100_000, Memory: 1, Tokens: 0, Attention: money.Credits(5)}
	got, err := json.Marshal(p)
	if err != nil || string(got) != `{"cpu":0.1,"memory_mb":0.000001,"tokens":0,"attention":5}` {
		t.Fatalf("Marshal = %s, %v", got, err)
	}
	for _, r := range Resources {
		var q Prices
		q.set(r, 7)
		if q.Of(r) != 7 {
			t.Errorf("set/Of(%s) disagree", r)
		}
	}
	if p.Of("gpu") != 0 {
		t.Errorf("Of(gpu) = %d", p.Of("gpu"))
	}
}
