package loadgen_test

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/loadgen"
)

// envInt reads a positive integer from the environment, or def.
func envInt(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// envDuration reads a duration from the environment, or def.
func envDuration(tb testing.TB, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		tb.Fatalf("%s=%q: want a positive duration", name, v)
	}
	return d
}

// BenchmarkAPI measures the API over loopback HTTP with many concurrent
// clients, each an executing agent with its token: balance reads (public and
// the caller's own) and durable transfers (each one committed, SQLite with
// synchronous=FULL as `bpagents up` runs, PostgreSQL with its defaults),
// reporting the rate and the p50 and p99 latency. Each sub-benchmark runs its
// load once for BPAGENTS_BENCH_DURATION (default 10s) with
// BPAGENTS_BENCH_CLIENTS clients (default 64); run it with -benchtime 1x:
//
//	go test -run '^$' -bench BenchmarkAPI -benchtime 1x ./internal/loadgen/
func BenchmarkAPI(b *testing.B) {
	clients := envInt(b, "BPAGENTS_BENCH_CLIENTS", 64)
	duration := envDuration(b, "BPAGENTS_BENCH_DURATION", 10*time.Second)
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, c := range []struct {
			name  string
			op    loadgen.Op
			unit  string
			keyed bool
		}{
			{"balance-reads", loadgen.OpPublic, "reads/s", false},
			{"own-balance-reads", loadgen.OpBalance, "reads/s", false},
			{"transfers", loadgen.OpTransfer, "transfers/s", false},
			{"keyed-transfers", loadgen.OpTransfer, "transfers/s", true},
		} {
			b.Run(backend+"/"+c.name, func(b *testing.B) {
				e := startEconomy(b, economyOptions{backend: backend, agents: clients, cycle: 2 * time.Second})
				b.ResetTimer()
				cpu0 := cpuTime()
				rep, err := loadgen.Run(context.Background(), loadgen.Config{URL: e.url, Agents: e.agents,
					Duration: duration, Mix: loadgen.Mix{c.op: 1}, Seed: 1, Unkeyed: !c.keyed})
				b.StopTimer()
				cpu := cpuTime() - cpu0
				if err != nil {
					b.Fatal(err)
				}
				s := rep.Op(c.op)
				if s.Failed > 0 || s.Refused > 0 {
					rep.Write(os.Stderr)
					b.Fatalf("%d failed, %d refused", s.Failed, s.Refused)
				}
				b.ReportMetric(s.PerSec, c.unit)
				b.ReportMetric(float64(s.P50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(s.P99.Microseconds())/1000, "p99-ms")
				// CPU time of the whole process (server and clients) per
				// request: how much work a request costs, whatever else
				// shares the machine.
				b.ReportMetric(float64(cpu.Microseconds())/float64(rep.Requests), "cpu-µs/req")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// envString reads a variable from the environment.
func envString(name string) string { return os.Getenv(name) }
