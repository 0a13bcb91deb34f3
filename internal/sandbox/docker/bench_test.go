package docker

import (
	"context"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/sandbox"
)

// BenchmarkStartLatency measures Start (execution started → agent process
// running in its container) and a whole trivial run (Start → Wait, the
// container removed), against `docker run --rm <image> true` timed in the
// same run, and reports the percentiles and their ratios.
//
//	go test -run '^$' -bench StartLatency -benchtime 30x ./internal/sandbox/docker
func BenchmarkStartLatency(b *testing.B) {
	sb, api := sharedSandbox(b)
	ws := newWorkspace(b, nil)
	var starts, runs, baseline []time.Duration
	for i := 0; i < b.N; i++ {
		spec := newSpec(b, ws, api, "true")
		spec.AgentNum = 1 // one agent: the workspace changes hands once
		t0 := time.Now()
		h, err := sb.Start(context.Background(), spec)
		if err != nil {
			b.Fatal(err)
		}
		starts = append(starts, time.Since(t0))
		if res := wait(b, h); res.Reason != sandbox.ReasonExited || res.ExitCode != 0 {
			b.Fatalf("ended %s/%d: %s", res.Reason, res.ExitCode, res.Detail)
		}
		runs = append(runs, time.Since(t0))

		b.StopTimer()
		t0 = time.Now()
		if out, err := exec.Command("docker", "run", "--rm", sb.cfg.Image, "true").CombinedOutput(); err != nil {
			b.Fatalf("docker run: %v: %s", err, out)
		}
		baseline = append(baseline, time.Since(t0))
		b.StartTimer()
	}
	sp50, sp95 := percentiles(starts)
	rp50, rp95 := percentiles(runs)
	bp50, bp95 := percentiles(baseline)
	b.ReportMetric(ms(sp50), "start-p50-ms")
	b.ReportMetric(ms(sp95), "start-p95-ms")
	b.ReportMetric(ms(rp50), "run-p50-ms")
	b.ReportMetric(ms(rp95), "run-p95-ms")
	b.ReportMetric(ms(bp50), "dockerrun-p50-ms")
	b.ReportMetric(ms(bp95), "dockerrun-p95-ms")
	b.ReportMetric(ms(sp50)/ms(bp50), "start/dockerrun-p50")
	b.ReportMetric(ms(rp50)/ms(bp50), "run/dockerrun-p50")
}

// BenchmarkConcurrentStarts20 starts 20 executions at once and measures the
// time until all 20 agents run.
//
//	go test -run '^$' -bench ConcurrentStarts20 -benchtime 5x ./internal/sandbox/docker
func BenchmarkConcurrentStarts20(b *testing.B) {
	sb, api := sharedSandbox(b)
	const n = 20
	var took []time.Duration
	for i := 0; i < b.N; i++ {
		specs := make([]sandbox.Spec, n)
		for j := range specs {
			specs[j] = newSpec(b, newWorkspace(b, nil), api, "sleep", "1")
		}
		handles := make([]sandbox.Handle, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		t0 := time.Now()
		for j := range specs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				handles[j], errs[j] = sb.Start(context.Background(), specs[j])
			}()
		}
		wg.Wait()
		took = append(took, time.Since(t0))
		b.StopTimer()
		for j, h := range handles {
			if errs[j] != nil {
				b.Fatal(errs[j])
			}
			if res := wait(b, h); res.Reason != sandbox.ReasonExited {
				b.Fatalf("ended %s: %s", res.Reason, res.Detail)
			}
		}
		b.StartTimer()
	}
	p50, _ := percentiles(took)
	b.ReportMetric(ms(p50), "all-20-started-p50-ms")
	b.ReportMetric(ms(slices.Max(took)), "all-20-started-max-ms")
}

func percentiles(d []time.Duration) (p50, p95 time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.95)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
