package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/sandbox/process"
	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/testutil"
)

func TestMain(m *testing.M) {
	process.MaybeRunInit() // the process sandbox re-executes this test binary
	os.Exit(m.Run())
}

// trivialAgent reads env.json and makes one API call: the bid that keeps it alive.
const trivialAgent = `import json, urllib.request
env = json.load(open("env.json"))
body = json.dumps({"amount": 1, "bundle": {"cpu": 0.1, "memory_mb": 64, "duration_seconds": 5}}).encode()
req = urllib.request.Request(env["service_url"] + "/market/bid", data=body, method="POST",
    headers={"Authorization": "Bearer " + env["token"], "Content-Type": "application/json"})
urllib.request.urlopen(req).read()
`

// openServing opens the whole system in a temporary home and serves its API
// on a loopback listener; the runtime loop is not started, callers Tick.
func openServing(tb testing.TB, edit func(*config.Config)) *App {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	cfg := config.Default()
	cfg.Home = tb.TempDir()
	cfg.Addr = ln.Addr().String()
	cfg.Sandbox = "process"
	cfg.LogLevel = "error"
	if edit != nil {
		edit(&cfg)
	}
	a, err := Open(context.Background(), cfg, discardLogger(), Options{})
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: a.API}
	go srv.Serve(ln)
	tb.Cleanup(func() {
		srv.Close()
		a.Runtime.Wait()
		a.Close()
	})
	return a
}

// BenchmarkTrivialExecutions measures complete executions end to end on the
// process sandbox: clear → env.json → run python → one API call (a bid) →
// record the result. Each iteration is one cycle running `agents` executions.
func BenchmarkTrivialExecutions(b *testing.B) {
	testutil.Need(b, "python3", exec.Command("/usr/bin/python3", "-c", "import json").Run() == nil, "python3 runs the agents")
	const agents = 40
	a := openServing(b, func(c *config.Config) {
		res := c.Market.Resources
		cpu, mem := res["cpu"], res["memory_mb"]
		cpu.Capacity, mem.Capacity = 8, 8192
		res["cpu"], res["memory_mb"] = cpu, mem
		c.Market.BidTTLCycles = 1000
	})
	runTrivialCycles(b, a, agents, trivialAgent, market.Bundle{CPUMillis: 100, MemoryMB: 64, DurationSeconds: 5}, "")
}

// runTrivialCycles creates agents running agentSrc, each with a first bid for
// bundle, takes genesis out (so every cycle is the same), runs b.N cycles
// and reports executions per minute and per cycle. Every execution must have
// exited 0, on the named sandbox when sandboxName is set.
func runTrivialCycles(b *testing.B, a *App, agents int, agentSrc string, bundle market.Bundle, sandboxName string) {
	ctx := context.Background()
	for i := 0; i < agents; i++ {
		_, err := a.Economy.CreateAgent(ctx, economy.CreateAgentRequest{ID: fmt.Sprintf("bench-%d", i),
			Files: map[string]string{"main.py": agentSrc}, Credits: money.Credits(1000),
			Bid: &economy.BidSpec{Amount: money.Credits(1), Bundle: bundle}})
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := a.Economy.Kill(ctx, economy.GenesisID); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		a.Runtime.Tick(ctx)
		a.Runtime.Wait()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	var done, ok int
	var last string
	err := a.Store.Read(ctx, func(tx store.Tx) error {
		list, err := tx.ListExecutions(ctx, store.ExecutionFilter{Statuses: []string{store.ExecFinished}})
		for _, e := range list {
			done++
			last = fmt.Sprintf("%s %s/%d %s", e.Sandbox, e.Reason, e.ExitCode, e.Detail)
			if e.Reason == "exited" && e.ExitCode == 0 && (sandboxName == "" || e.Sandbox == sandboxName) {
				ok++
			}
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	if ok != done || done == 0 {
		b.Fatalf("%d of %d executions failed (last: %s)", done-ok, done, last)
	}
	b.ReportMetric(float64(done)/elapsed.Minutes(), "executions/min")
	b.ReportMetric(float64(done)/float64(b.N), "executions/cycle")
}
