package e2e

import (
	"context"
	"encoding/json"
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
	var victim api.ExecutionView
	waitFor(t, 20*time.Second, "the sleeper to run", func() bool {
		var list api.ExecutionList
		if err := s.client.Get(ctx, "/executions?status=running&agent="+sleeper, &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Executions) == 0 {
			return false
		}
		victim = list.Executions[0]
		return true
	})
	// Let a few more cycles start so the kill lands mid-cycle somewhere.
	time.Sleep(700 * time.Millisecond)
	s.kill()
	audit(t, home)

	s2 := startServer(t, home, "--cycle", "200ms")
	var ex api.ExecutionView
	if err := s2.client.Get(ctx, "/executions/"+victim.ID, &ex); err != nil {
		t.Fatal(err)
	}
	if ex.Status != "finished" || ex.Reason != "killed" {
		t.Fatalf("execution running at the crash is %s/%s after restart, want finished/killed", ex.Status, ex.Reason)
	}
	if n := processesOf(t, sleeper, s2); n > 0 {
		t.Fatalf("%d processes of the killed execution survived the crash", n)
	}
	// Let the restarted economy run, then check nothing ran twice.
	time.Sleep(1500 * time.Millisecond)
	var page api.EventPage
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
