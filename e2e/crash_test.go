package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/api"
)

// TestCrashMidExecution kills the server with SIGKILL while an agent runs,
// restarts it on the same home, and checks the books and the executions.
func TestCrashMidExecution(t *testing.T) {
	needPython(t)
	home := t.TempDir()
	s := startServer(t, home, "--cycle", "200ms")
	ctx := context.Background()
	sleeper := s.createAgent(project(t, map[string]string{"agent.json": `{"command": ["sleep", "30"]}`}),
		"--credits", "50", "--bid", "10", "--duration", "60")
	victim := s.runningExecution(sleeper, 20*time.Second, nil)
	// Let a few more cycles start so the kill lands mid-cycle somewhere.
	time.Sleep(700 * time.Millisecond)
	s.kill()
	waitFor(t, 5*time.Second, "the crashed server's sandboxes to die", func() bool {
		return processesOf(t, home, sleeper) == 0
	})
	audit(t, home)

	s2 := startServer(t, home, "--cycle", "200ms")
	var ex api.ExecutionView
	if err := s2.client.Get(ctx, "/executions/"+victim.ID, &ex); err != nil {
		t.Fatal(err)
	}
	if ex.Status != "finished" || ex.Reason != "killed" {
		t.Fatalf("execution running at the crash is %s/%s after restart, want finished/killed", ex.Status, ex.Reason)
	}
	// The crash was not the agent's doing: it is alive, with its payment
	// back in a reinstated bid.
	var page api.EventPage
	if err := s2.client.Get(ctx, "/events?type=bid.reinstated&agent="+sleeper, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 1 || !strings.Contains(string(page.Events[0].Data), victim.ID) {
		t.Fatalf("want one bid.reinstated for %s's execution %s, got %d", sleeper, victim.ID, len(page.Events))
	}
	// Let the restarted economy run, then check nothing ran twice.
	time.Sleep(1500 * time.Millisecond)
	if err := s2.client.Get(ctx, "/events?type=execution.started&limit=500", &page); err != nil {
		t.Fatal(err)
	}
	started := map[string]int{}
	for _, e := range page.Events {
		var d struct {
			ExecutionID string `json:"execution_id"`
		}
		json.Unmarshal(e.Data, &d)
		started[d.ExecutionID]++
	}
	for id, n := range started {
		if n != 1 {
			t.Errorf("execution %s started %d times", id, n)
		}
	}
	audit(t, home)
	s2.stop()
	audit(t, home)
}

// TestCrashLoop kills a busy economy with SIGKILL at several moments and
// restarts it each time; the books must balance after every crash.
func TestCrashLoop(t *testing.T) {
	needPython(t)
	home := t.TempDir()
	delays := []time.Duration{150 * time.Millisecond, 420 * time.Millisecond, 777 * time.Millisecond,
		1100 * time.Millisecond, 1900 * time.Millisecond}
	for i, d := range delays {
		s := startServer(t, home, "--cycle", "100ms")
		time.Sleep(d)
		s.kill()
		out := audit(t, home)
		t.Logf("crash %d after %s: %s", i+1, d, strings.TrimSpace(strings.Split(out, "\n")[1]))
	}
	s := startServer(t, home, "--cycle", "100ms")
	var running api.ExecutionList
	if err := s.client.Get(context.Background(), "/executions?status=running", &running); err != nil {
		t.Fatal(err)
	}
	for _, ex := range running.Executions {
		if ex.Started < time.Now().Add(-5*time.Second).Format(time.RFC3339Nano) {
			t.Errorf("execution %s from before the crashes is still running", ex.ID)
		}
	}
	s.stop()
	audit(t, home)
}
