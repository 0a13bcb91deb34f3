package market

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/bpagents/bpagents/internal/money"
)

// benchInput builds n pending bids against a small machine (2 cores, 4 GB,
// 100k tokens, one unit of attention), so that only a few dozen win.
func benchInput(n int, mech Mechanism) ClearingInput {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	caps := Capacity{CPUMillis: 2000, MemoryMB: 4096, Tokens: 100_000, Attention: 1}
	prices := Prices{CPU: 10_000, Memory: 10, Tokens: 1, Attention: money.Credits(5)}
	bids := make([]Bid, n)
	for i := range bids {
		b := Bundle{
			CPUMillis:       10 * (1 + rng.Int64N(20)),
			MemoryMB:        16 * (1 + rng.Int64N(16)),
			DurationSeconds: 1 + rng.Int64N(60),
		}
		if rng.IntN(2) == 0 {
			b.Tokens = 100 * rng.Int64N(50)
		}
		if rng.IntN(100) == 0 {
			b.Attention = 1
		}
		bids[i] = Bid{
			ID:      fmt.Sprintf("bid_%08d", i),
			Seq:     int64(i),
			AgentID: fmt.Sprintf("agent_%d", rng.IntN(n/2+1)),
			Amount:  Reserve(b, prices) + money.Micro(rng.Int64N(int64(money.Credits(20)))),
			Bundle:  b,
		}
	}
	busy := map[string]bool{}
	for range n / 100 {
		busy[fmt.Sprintf("agent_%d", rng.IntN(n/2+1))] = true
	}
	return ClearingInput{Bids: bids, Free: caps, Capacity: caps, Prices: prices, Busy: busy, Mechanism: mech}
}

func BenchmarkClear(b *testing.B) {
	for _, mech := range Mechanisms {
		for _, n := range []int{10_000, 100_000, 1_000_000} {
			b.Run(fmt.Sprintf("%s/n=%d", mech, n), func(b *testing.B) {
				in := benchInput(n, mech)
				var winners int
				b.ReportAllocs()
				for b.Loop() {
					winners = len(Clear(in).Winners)
				}
				b.ReportMetric(float64(winners), "winners")
			})
		}
	}
}
