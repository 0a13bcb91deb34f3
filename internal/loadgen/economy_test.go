package loadgen_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/app"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/loadgen"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/sandbox/fake"
	"github.com/bpagents/bpagents/internal/store/postgres/pgtest"
	"github.com/bpagents/bpagents/internal/testutil"
)

// economyOptions shape the economy a load runs against.
type economyOptions struct {
	// backend is "sqlite" (default) or "postgres" (a schema of its own on
	// the test server).
	backend string
	// agents is how many agents execute at once, each a load identity.
	agents int
	// cycle is the market's period (default 1 s).
	cycle time.Duration
}

// economy is the whole system (app.Open) serving its API on a loopback
// port, with agents whose executions block until their deadline, so that
// their execution tokens stay valid for the run.
type runningEconomy struct {
	app    *app.App
	url    string
	agents []loadgen.Agent
	logs   *testutil.Buffer
}

// execBundle is what each load agent's execution holds: a sliver of CPU and
// memory for longer than any run.
var execBundle = market.Bundle{CPUMillis: 10, MemoryMB: 1, DurationSeconds: 3000}

// startEconomy opens the system with a fake sandbox, creates o.agents agents
// whose bids all win the first clearing (capacity is three times their
// bundles, so prices hold still), serves it, and waits until every agent
// runs and has handed over its execution token. It stops when tb ends.
func startEconomy(tb testing.TB, o economyOptions) *runningEconomy {
	tb.Helper()
	if o.cycle == 0 {
		o.cycle = time.Second
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	cfg := config.Default()
	cfg.Home = tb.TempDir()
	cfg.Addr = ln.Addr().String()
	cfg.Cycle = o.cycle
	if o.backend == "postgres" {
		cfg.Database = pgtest.Schema(tb)
	}
	cfg.Economy.SpawnFee = money.MustParse("0.01")
	cfg.Economy.MessageFee = money.MustParse("0.001")
	cfg.Market.MaxDurationSeconds = 3600
	res := cfg.Market.Resources
	cpu, mem := res["cpu"], res["memory_mb"]
	cpu.Capacity = max(cpu.Capacity, float64(3*o.agents)*float64(execBundle.CPUMillis)/1000)
	mem.Capacity = max(mem.Capacity, float64(3*o.agents)*float64(execBundle.MemoryMB))
	res["cpu"], res["memory_mb"] = cpu, mem

	logs := &testutil.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var mu sync.Mutex
	tokens := map[string]string{}
	sb := fake.New(func(ctx context.Context, spec sandbox.Spec) (string, int) {
		mu.Lock()
		tokens[spec.AgentID] = spec.Env["AGENT_TOKEN"]
		mu.Unlock()
		<-ctx.Done()
		return "", 0
	})
	ctx := context.Background()
	a, err := app.Open(ctx, cfg, log, app.Options{Sandbox: sb})
	if err != nil {
		tb.Fatal(err)
	}
	if err := a.Economy.Kill(ctx, economy.GenesisID); err != nil {
		a.Close()
		tb.Fatal(err)
	}
	ids := make([]string, o.agents)
	for i := range ids {
		ids[i] = fmt.Sprintf("load-%04d", i)
		_, err := a.Economy.CreateAgent(ctx, economy.CreateAgentRequest{ID: ids[i],
			Files:   map[string]string{"main.py": "print('load')\n"},
			Credits: money.Credits(1000), Bid: &economy.BidSpec{Amount: money.Credits(5), Bundle: execBundle}})
		if err != nil {
			a.Close()
			tb.Fatal(err)
		}
	}
	srvCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- a.Serve(srvCtx, ln) }()
	tb.Cleanup(func() {
		stop()
		if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
			tb.Errorf("serve: %v", err)
		}
		if tb.Failed() {
			tb.Logf("server log:\n%s", tail(logs.String(), 40))
		}
	})
	e := &runningEconomy{app: a, url: "http://" + ln.Addr().String(), logs: logs}
	deadline := time.Now().Add(2*time.Minute + 10*o.cycle)
	for {
		mu.Lock()
		n := len(tokens)
		mu.Unlock()
		if n == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("only %d of %d agents run after %s", n, len(ids), time.Since(deadline.Add(-2*time.Minute)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	for _, id := range ids {
		e.agents = append(e.agents, loadgen.Agent{ID: id, Token: tokens[id]})
	}
	mu.Unlock()
	return e
}

// audit checks every ledger invariant and rebuilds every balance from the
// event log.
func (e *runningEconomy) audit(tb testing.TB) (ledger.Report, ledger.ReplayReport) {
	tb.Helper()
	ctx := context.Background()
	rep, err := ledger.Audit(ctx, e.app.Store)
	if err != nil {
		tb.Fatal(err)
	}
	if !rep.OK {
		tb.Errorf("audit failed: %v", rep.Violations)
	}
	rr, err := ledger.Replay(ctx, e.app.Store)
	if err != nil {
		tb.Fatal(err)
	}
	if !rr.OK {
		tb.Errorf("replay failed: %v", rr.Violations)
	}
	return rep, rr
}

// serverErrors returns the lines the server logged at level ERROR.
func (e *runningEconomy) serverErrors() []string {
	var out []string
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, `"level":"ERROR"`) {
			out = append(out, l)
		}
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
