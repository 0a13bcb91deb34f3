package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/sandbox/fake"
	"github.com/bpagents/bpagents/internal/store"
)

// addSleepers creates n agents with one bid each for a small bundle.
func addSleepers(t *testing.T, eco *economy.Economy, n int, bid money.Micro) {
	t.Helper()
	for i := range n {
		_, err := eco.CreateAgent(context.Background(), economy.CreateAgentRequest{ID: fmt.Sprintf("s%02d", i),
			Files: map[string]string{"main.py": "pass\n"}, Credits: money.Credits(100),
			Bid: &economy.BidSpec{Amount: bid, Bundle: market.Bundle{CPUMillis: 100, MemoryMB: 64, DurationSeconds: 30}}})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestRunnersClaimEachExecutionOnce has several runners on their own pools
// claim from one queue while a scheduler clears: every execution starts
// exactly once, on the runner that claimed it, and no runner exceeds its
// slots.
func TestRunnersClaimEachExecutionOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range clusterBackends {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := tc.open(t)
			addSleepers(t, c.first, 24, money.Credits(2))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var busy, peak atomic.Int64
			agent := func(ctx context.Context, spec sandbox.Spec) (string, int) {
				n := busy.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(30 * time.Millisecond)
				busy.Add(-1)
				return "ok", 0
			}
			const runners, slots = 3, 2
			var wg sync.WaitGroup
			sbs := make([]*fake.Sandbox, runners)
			for i := range runners {
				r, sb := c.runner(fmt.Sprintf("r%d", i), 900000+i, slots, 50*time.Millisecond, agent)
				sbs[i] = sb
				if err := r.Register(ctx); err != nil {
					t.Fatal(err)
				}
				wg.Go(func() { r.Run(ctx) })
			}
			s, _ := c.scheduler(30*time.Millisecond, 50*time.Millisecond, time.Minute)
			wg.Go(func() { s.Run(ctx) })
			eventually(t, 30*time.Second, "every sleeper to run", func() bool {
				return len(c.executions(store.ExecutionFilter{Statuses: []string{store.ExecFinished}})) >= 24
			})
			cancel()
			wg.Wait()

			started := map[string]int{}
			for _, e := range c.events("execution.started") {
				var d struct {
					ExecutionID string `json:"execution_id"`
					RunnerID    string `json:"runner_id"`
				}
				json.Unmarshal(e.Data, &d)
				started[d.ExecutionID]++
				if d.RunnerID == "" {
					t.Errorf("execution %s started without a runner", d.ExecutionID)
				}
			}
			ran := map[string]int{}
			for i, sb := range sbs {
				for _, spec := range sb.Started() {
					ran[spec.ExecutionID]++
					if got := c.executions(store.ExecutionFilter{AgentID: spec.AgentID}); len(got) == 0 ||
						got[0].RunnerID != fmt.Sprintf("r%d", i) && got[len(got)-1].RunnerID != fmt.Sprintf("r%d", i) {
						t.Errorf("execution %s ran on r%d but is claimed by another", spec.ExecutionID, i)
					}
				}
			}
			// The shutdown may catch an execution after it was opened
			// (execution.started) and before its sandbox started: it never
			// runs and is closed as killed by the system. Nothing else may
			// start without running, and nothing may run twice.
			byID := map[string]store.Execution{}
			for _, ex := range c.executions(store.ExecutionFilter{}) {
				byID[ex.ID] = ex
			}
			for id, n := range started {
				cut := ran[id] == 0 && byID[id].Reason == string(sandbox.ReasonKilled) &&
					strings.Contains(byID[id].Detail, "shutting down")
				if n != 1 || ran[id] > 1 || ran[id] == 0 && !cut {
					t.Errorf("execution %s: %d execution.started events, ran %d times (%s: %s)", id, n, ran[id],
						byID[id].Reason, byID[id].Detail)
				}
			}
			for id := range ran {
				if started[id] != 1 {
					t.Errorf("execution %s ran with %d execution.started events", id, started[id])
				}
			}
			if len(ran) < 24 {
				t.Errorf("%d executions ran, want 24", len(ran))
			}
			if p := peak.Load(); p > runners*slots {
				t.Errorf("%d executions ran at once, more than %d runners × %d slots", p, runners, slots)
			}
			checkAudit(t, c.first.Store())
		})
	}
}

// TestLostRunner: a runner that stops sending heartbeats is declared lost by
// the leader after the timeout; its running execution is closed as killed
// with the bid reinstated, and the runner, which still believed it ran it,
// cannot record it again.
func TestLostRunner(t *testing.T) {
	t.Parallel()
	for _, tc := range clusterBackends {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := tc.open(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			started := make(chan struct{}, 1)
			block := func(ctx context.Context, spec sandbox.Spec) (string, int) {
				started <- struct{}{}
				<-ctx.Done()
				return "stopped", 137
			}
			// Heartbeats so rare they never come: the runner is "frozen".
			r, sb := c.runner("frozen", 900100, 0, time.Hour, block)
			if err := r.Register(ctx); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			rctx, stopRunner := context.WithCancel(ctx)
			wg.Go(func() { r.Run(rctx) })
			s, _ := c.scheduler(50*time.Millisecond, 30*time.Millisecond, 300*time.Millisecond)
			wg.Go(func() { s.Run(ctx) })
			select {
			case <-started:
			case <-time.After(10 * time.Second):
				t.Fatal("genesis did not start")
			}
			ex := c.executions(store.ExecutionFilter{AgentID: economy.GenesisID})[0]
			took := eventually(t, 10*time.Second, "the runner to be declared lost", func() bool {
				return c.runnerRow("frozen").Status == store.RunnerLost
			})
			t.Logf("declared lost %s after the execution started", took.Round(time.Millisecond))
			got := c.executions(store.ExecutionFilter{AgentID: economy.GenesisID})
			closed := got[len(got)-1]
			if closed.ID != ex.ID || closed.Status != store.ExecFinished || closed.Reason != string(sandbox.ReasonKilled) {
				t.Fatalf("the lost runner's execution: %+v", closed)
			}
			if len(c.events("runner.lost")) != 1 || len(c.events("bid.reinstated")) != 1 {
				t.Fatalf("%d runner.lost, %d bid.reinstated events", len(c.events("runner.lost")), len(c.events("bid.reinstated")))
			}
			a, err := c.first.Agent(ctx, economy.GenesisID)
			if err != nil || a.Status != store.AgentAlive {
				t.Fatalf("genesis after its runner was lost: %+v, %v", a, err)
			}
			// The frozen runner wakes and shuts down: its late result changes nothing.
			stopRunner()
			cancel()
			wg.Wait()
			if n := len(c.events("execution.finished")); n < 1 {
				t.Fatal("no execution.finished")
			}
			finished := 0
			for _, e := range c.events("execution.finished") {
				if e.Ref == ex.ID {
					finished++
				}
			}
			if finished != 1 || len(sb.Started()) != 1 {
				t.Fatalf("execution %s finished %d times, sandbox started %d", ex.ID, finished, len(sb.Started()))
			}
			if c.runnerRow("frozen").Status != store.RunnerLost {
				t.Fatalf("a lost runner's shutdown changed its status to %s", c.runnerRow("frozen").Status)
			}
			checkAudit(t, c.first.Store())
		})
	}
}

// TestRunnerShutdownInterrupts: a runner stopping in order stops its
// executions, records them as interrupted (bids reinstated), gives back its
// unstarted claims and records that it stopped.
func TestRunnerShutdownInterrupts(t *testing.T) {
	t.Parallel()
	c := sqliteCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 1)
	r, _ := c.runner("r1", 900200, 1, 50*time.Millisecond, func(ctx context.Context, spec sandbox.Spec) (string, int) {
		started <- struct{}{}
		<-ctx.Done()
		return "stopped", 143
	})
	if err := r.Register(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	s, _ := c.scheduler(time.Hour, time.Hour, time.Minute)
	s.Tick(ctx)
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("genesis did not start")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ex := c.executions(store.ExecutionFilter{AgentID: economy.GenesisID})[0]
	if ex.Status != store.ExecFinished || ex.Reason != string(sandbox.ReasonKilled) || ex.RunnerID != "r1" {
		t.Fatalf("execution after the runner's shutdown: %+v", ex)
	}
	if len(c.events("bid.reinstated")) != 1 || len(c.events("runner.stopped")) != 1 {
		t.Fatalf("%d bid.reinstated, %d runner.stopped", len(c.events("bid.reinstated")), len(c.events("runner.stopped")))
	}
	if st := c.runnerRow("r1").Status; st != store.RunnerStopped {
		t.Fatalf("runner status %s after shutdown", st)
	}
	checkAudit(t, c.first.Store())
}

// TestRunnerRegistration: a runner id held by a live process is refused; one
// whose process is gone is taken over, and what that process left running is
// closed as killed.
func TestRunnerRegistration(t *testing.T) {
	t.Parallel()
	c := sqliteCluster(t)
	ctx := t.Context()
	idle := func(ctx context.Context, spec sandbox.Spec) (string, int) { <-ctx.Done(); return "", 0 }
	// The test's parent process is alive: a registration in its name holds.
	alive, _ := c.runner("r", os.Getppid(), 0, time.Hour, idle)
	if err := alive.Register(ctx); err != nil {
		t.Fatal(err)
	}
	second, _ := c.runner("r", os.Getpid(), 0, time.Hour, idle)
	err := second.Register(ctx)
	if e, ok := economy.AsError(err); !ok || e.Code != economy.CodeConflict {
		t.Fatalf("registering a live runner's id: %v", err)
	}

	// A "crashed" runner: it claimed and started genesis, then its process
	// (a pid that does not exist) vanished.
	crashed, _ := c.runner("c", 1<<22+12345, 0, time.Hour, idle)
	if err := crashed.Register(ctx); err != nil {
		t.Fatal(err)
	}
	s, _ := c.scheduler(time.Hour, time.Hour, time.Minute)
	s.Tick(ctx)
	list, err := c.first.ClaimExecutions(ctx, "c", 1)
	if err != nil || len(list) != 1 {
		t.Fatalf("claim: %v, %v", list, err)
	}
	if _, err := c.first.StartClaimed(ctx, "c", list[0].ID, "fake", "http://api.invalid"); err != nil {
		t.Fatal(err)
	}
	// Another runner cannot start it.
	if _, err := c.first.StartClaimed(ctx, "r", list[0].ID, "fake", "http://api.invalid"); err == nil {
		t.Fatal("a runner started an execution another claimed")
	}
	restarted, _ := c.runner("c", os.Getpid(), 0, time.Hour, idle)
	if err := restarted.Register(ctx); err != nil {
		t.Fatal(err)
	}
	ex := c.executions(store.ExecutionFilter{AgentID: economy.GenesisID})[0]
	if ex.Status != store.ExecFinished || ex.Reason != string(sandbox.ReasonKilled) {
		t.Fatalf("execution of the crashed runner after its restart: %+v", ex)
	}
	if len(c.events("bid.reinstated")) != 1 {
		t.Fatalf("%d bid.reinstated", len(c.events("bid.reinstated")))
	}
	checkAudit(t, c.first.Store())
}

// TestLostRunnerStopsWhatItRuns: a runner that learns from its heartbeat
// that it was declared lost (a pause longer than the timeout) kills the
// executions the leader already closed, then registers again and works on.
func TestLostRunnerStopsWhatItRuns(t *testing.T) {
	t.Parallel()
	c := sqliteCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan struct{})
	r, _ := c.runner("paused", 900300, 0, 30*time.Millisecond, func(ctx context.Context, spec sandbox.Spec) (string, int) {
		<-ctx.Done()
		close(stopped)
		return "stopped", 137
	})
	if err := r.Register(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	s, _ := c.scheduler(time.Hour, time.Hour, time.Minute)
	s.Tick(ctx)
	eventually(t, 10*time.Second, "genesis to run", func() bool { return r.Running() == 1 })
	// The leader gives up on it (as after a pause longer than the timeout).
	row := c.runnerRow("paused")
	if _, ok, err := c.first.DeclareRunnerLost(ctx, "paused", row.Heartbeat, time.Minute); err != nil || !ok {
		// A heartbeat may have landed between the read and the call: try on the next value.
		eventually(t, 5*time.Second, "declaring the runner lost", func() bool {
			row := c.runnerRow("paused")
			_, ok, err := c.first.DeclareRunnerLost(ctx, "paused", row.Heartbeat, time.Minute)
			return err == nil && ok
		})
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the lost runner did not stop its execution")
	}
	eventually(t, 5*time.Second, "the runner to register again", func() bool {
		return c.runnerRow("paused").Status == store.RunnerActive && len(c.events("runner.started")) == 2
	})
	ex := c.executions(store.ExecutionFilter{AgentID: economy.GenesisID})
	if ex[len(ex)-1].Reason != string(sandbox.ReasonKilled) || len(c.events("bid.reinstated")) != 1 {
		t.Fatalf("execution %+v, %d bid.reinstated", ex[len(ex)-1], len(c.events("bid.reinstated")))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkAudit(t, c.first.Store())
}

// TestKillRequestReachesRunner: the operator's kill of an execution running
// in another process reaches its runner through the database, and the
// execution ends killed at the operator's request (charged: not reinstated).
func TestKillRequestReachesRunner(t *testing.T) {
	t.Parallel()
	c := postgresCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, _ := c.runner("r1", 900400, 0, 30*time.Millisecond, func(ctx context.Context, spec sandbox.Spec) (string, int) {
		<-ctx.Done()
		return "stopped", 137
	})
	if err := r.Register(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	s, _ := c.scheduler(time.Hour, time.Hour, time.Minute)
	s.Tick(ctx)
	eventually(t, 10*time.Second, "genesis to run", func() bool { return r.Running() == 1 })
	ex := c.executions(store.ExecutionFilter{AgentID: economy.GenesisID})[0]
	api := c.economy() // the API replica's own economy and pool
	if err := api.RequestKill(ctx, ex.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the kill to reach the runner", func() bool {
		return c.executions(store.ExecutionFilter{AgentID: economy.GenesisID})[0].Status == store.ExecFinished
	})
	got := c.executions(store.ExecutionFilter{AgentID: economy.GenesisID})[0]
	if got.Reason != string(sandbox.ReasonKilled) || len(c.events("bid.reinstated")) != 0 ||
		len(c.events("execution.kill_requested")) != 1 {
		t.Fatalf("killed execution %+v, %d bid.reinstated", got, len(c.events("bid.reinstated")))
	}
	if err := api.RequestKill(ctx, ex.ID); err == nil {
		t.Fatal("a kill request for a finished execution was accepted")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkAudit(t, c.first.Store())
}
