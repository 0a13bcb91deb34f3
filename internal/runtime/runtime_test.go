package runtime_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/bpagents/bpagents/internal/agents"
	"github.com/bpagents/bpagents/internal/app"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/runtime"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/sandbox/fake"
	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/sqlite"
)

type rig struct {
	eco *economy.Economy
	st  store.Store
	rt  *runtime.Runtime
	ws  agents.Workspaces
}

func newRig(t *testing.T, agent fake.Agent, project fstest.MapFS) *rig {
	t.Helper()
	ctx := context.Background()
	home := t.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(home, "db.sqlite"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	set, err := app.Settings(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ws := agents.Workspaces{Root: filepath.Join(home, "workspaces")}
	eco := economy.New(db, set, ws, project, log, economy.Options{})
	if _, err := eco.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	rt := runtime.New(eco, fake.New(agent), runtime.Config{Cycle: time.Hour, ServiceURL: "http://api.invalid",
		OutputLimit: 4096, MaxProcs: 32, StopGrace: time.Second}, log)
	if err := rt.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	return &rig{eco: eco, st: db, rt: rt, ws: ws}
}

func genesisProject() fstest.MapFS {
	return fstest.MapFS{"main.py": {Data: []byte("print('hi')\n")}}
}

// One cycle runs genesis in the sandbox with the contract's environment and a
// complete env.json, and records the result.
func TestTickRunsWinnerWithHandshake(t *testing.T) {
	var sawEnv atomic.Value
	agent := func(ctx context.Context, spec sandbox.Spec) (string, int) {
		raw, err := os.ReadFile(spec.Env["ENV_JSON_PATH"])
		if err != nil {
			return err.Error(), 1
		}
		sawEnv.Store(raw)
		return "ran " + strings.Join(spec.Command, " "), 0
	}
	r := newRig(t, agent, genesisProject())
	ctx := context.Background()
	r.rt.Tick(ctx)
	r.rt.Wait()

	raw, _ := sawEnv.Load().([]byte)
	var env economy.Env
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("env.json: %v (%q)", err, raw)
	}
	if env.AgentID != "genesis" || env.Cycle != 1 || env.ExecutionCount != 1 || env.Token == "" ||
		env.ServiceURL != "http://api.invalid" || env.ExecutionContext.DurationSeconds != 10 {
		t.Errorf("env.json = %+v", env)
	}
	var ex []store.Execution
	r.st.Read(ctx, func(tx store.Tx) error {
		var err error
		ex, err = tx.ListExecutions(ctx, store.ExecutionFilter{})
		return err
	})
	if len(ex) != 1 || ex[0].Status != store.ExecFinished || ex[0].Reason != "exited" {
		t.Fatalf("executions = %+v", ex)
	}
	// Genesis (the fake) left no bid: it is dead and its credits burned.
	a, err := r.eco.Agent(ctx, "genesis")
	if err != nil || a.Status != store.AgentDead || a.DeathReason != economy.DeathNoBid {
		t.Fatalf("genesis after its execution: %+v, %v", a, err)
	}
	checkAudit(t, r.st)
}

// A workspace with nothing to run ends as no_entrypoint without a sandbox.
func TestNoEntrypoint(t *testing.T) {
	ran := atomic.Bool{}
	r := newRig(t, func(ctx context.Context, spec sandbox.Spec) (string, int) { ran.Store(true); return "", 0 },
		fstest.MapFS{"README": {Data: []byte("nothing to run")}})
	ctx := context.Background()
	r.rt.Tick(ctx)
	r.rt.Wait()
	var ex []store.Execution
	r.st.Read(ctx, func(tx store.Tx) error {
		var err error
		ex, err = tx.ListExecutions(ctx, store.ExecutionFilter{})
		return err
	})
	if len(ex) != 1 || ex[0].Reason != string(sandbox.ReasonNoEntrypoint) || ran.Load() {
		t.Fatalf("executions = %+v, sandbox ran = %v", ex, ran.Load())
	}
	checkAudit(t, r.st)
}

// Shutting down stops running executions and records them as killed.
func TestRunDrainsOnShutdown(t *testing.T) {
	started := make(chan struct{}, 1)
	r := newRig(t, func(ctx context.Context, spec sandbox.Spec) (string, int) {
		started <- struct{}{}
		<-ctx.Done()
		return "stopped", 137
	}, genesisProject())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.rt.Run(ctx) }()
	r.rt.Tick(context.Background())
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("execution did not start")
	}
	// The runtime registers the handle right after Start returns.
	for deadline := time.Now().Add(5 * time.Second); r.rt.Running() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Running() = %d, want 1", r.rt.Running())
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	var ex []store.Execution
	r.st.Read(context.Background(), func(tx store.Tx) error {
		var err error
		ex, err = tx.ListExecutions(context.Background(), store.ExecutionFilter{})
		return err
	})
	if len(ex) != 1 || ex[0].Status != store.ExecFinished || ex[0].Reason != string(sandbox.ReasonKilled) {
		t.Fatalf("executions after shutdown = %+v", ex)
	}
	// The system interrupted it, so genesis is not charged and keeps its turn:
	// the payment is back in a pending bid for the same bundle.
	a, err := r.eco.Agent(context.Background(), "genesis")
	if err != nil || a.Status != store.AgentAlive || a.Held != ex[0].Paid {
		t.Fatalf("genesis after an interrupted execution: %+v (paid %s), %v", a, ex[0].Paid, err)
	}
	bids, err := r.eco.Bids(context.Background(), "genesis", store.BidPending, 10)
	if err != nil || len(bids) != 1 || bids[0].Amount != ex[0].Paid || bids[0].Bundle != ex[0].Bundle {
		t.Fatalf("reinstated bids = %+v, %v", bids, err)
	}
	checkAudit(t, r.st)
}

func checkAudit(t *testing.T, st store.Store) {
	t.Helper()
	rep, err := ledger.Audit(context.Background(), st)
	if err != nil || !rep.OK {
		t.Fatalf("audit: %v %+v", err, rep)
	}
}
