//go:build linux

package process

import (
	"context"
	"slices"
	"testing"
	"time"
)

// BenchmarkStart measures Start until the agent (`true`) has been exec'd
// inside its limits; waiting for it and cleaning up are outside the timer.
func BenchmarkStart(b *testing.B) {
	cfg := testConfig(b)
	cfg.UIDBase = testUIDBase
	sb := newSandbox(b, cfg)
	b.Logf("%s", sb.Capabilities().Description)
	ws := newWorkspace(b)
	var lat []time.Duration
	b.ResetTimer()
	for b.Loop() {
		spec := newSpec(b, ws, "true")
		t0 := time.Now()
		h, err := sb.Start(context.Background(), spec)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if res := wait(b, h); res.ExitCode != 0 {
			b.Fatalf("true failed: %+v", res)
		}
		b.StartTimer()
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.95), "p95-ms")
}
