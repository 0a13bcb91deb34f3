package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/economy"
)

// envFields are every top-level field SPEC §4 puts in env.json.
var envFields = []string{"schema_version", "agent_id", "execution_id", "token", "service_url", "credits", "held",
	"system_time", "deadline", "cycle", "lineage", "execution_count", "markets", "inbox", "pending_bids",
	"execution_context"}

var contextFields = []string{"cpu", "cpu_seconds", "memory_mb", "duration_seconds", "tokens", "attention"}

// checkEnv asserts an env.json document has every field with a sane value.
func checkEnv(t *testing.T, raw []byte, agent string) map[string]any {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("env.json is not JSON: %v\n%s", err, raw)
	}
	for _, f := range envFields {
		if _, ok := env[f]; !ok {
			t.Errorf("env.json lacks %q", f)
		}
	}
	if env["schema_version"] != float64(1) || env["agent_id"] != agent {
		t.Errorf("env.json schema_version/agent_id = %v/%v", env["schema_version"], env["agent_id"])
	}
	if tok, _ := env["token"].(string); len(tok) < 32 {
		t.Errorf("env.json token %q is too short", tok)
	}
	for _, f := range []string{"system_time", "deadline"} {
		if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(env[f])); err != nil {
			t.Errorf("env.json %s = %v: %v", f, env[f], err)
		}
	}
	markets, _ := env["markets"].(map[string]any)
	for _, r := range []string{"cpu", "memory_mb", "tokens", "attention"} {
		m, _ := markets[r].(map[string]any)
		for _, k := range []string{"price", "utilization", "capacity"} {
			if _, ok := m[k]; !ok {
				t.Errorf("env.json markets.%s lacks %s", r, k)
			}
		}
	}
	ec, _ := env["execution_context"].(map[string]any)
	for _, k := range contextFields {
		if _, ok := ec[k]; !ok {
			t.Errorf("env.json execution_context lacks %s", k)
		}
	}
	return env
}

func TestLivingEconomy(t *testing.T) {
	needPython(t)
	home := t.TempDir()
	s := startServer(t, home, "--cycle", "300ms")
	ctx := context.Background()

	// Watch genesis's env.json: each execution must bring a fresh one.
	envPath := filepath.Join(home, "workspaces", "genesis", "env.json")
	seen := map[string]bool{}
	waitFor(t, 30*time.Second, "3 genesis executions with fresh env.json", func() bool {
		raw, err := os.ReadFile(envPath)
		if err != nil || len(raw) == 0 {
			return false
		}
		env := checkEnv(t, raw, "genesis")
		seen[env["execution_id"].(string)] = true
		return len(seen) >= 3
	})

	var g economy.AgentView
	if err := s.client.Get(ctx, "/agents/genesis", &g); err != nil {
		t.Fatal(err)
	}
	if g.ExecutionCount < 3 {
		t.Fatalf("genesis execution_count = %d, want >= 3", g.ExecutionCount)
	}
	// Bids, executions and clearings are all in the audit log.
	for _, typ := range []string{"bid.placed", "bid.won", "execution.queued", "execution.started",
		"execution.finished", "market.cleared", "ledger.transfer", "agent.created"} {
		var page api.EventPage
		if err := s.client.Get(ctx, "/events?type="+typ+"&limit=5", &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Events) == 0 {
			t.Errorf("no %s event in /events", typ)
		}
	}
	// The executions genesis ran finished normally and their output is kept.
	var list api.ExecutionList
	if err := s.client.Get(ctx, "/executions?agent=genesis&status=finished", &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Executions) < 2 {
		t.Fatalf("want finished genesis executions, got %d", len(list.Executions))
	}
	ex := list.Executions[len(list.Executions)-1]
	if ex.Reason != "exited" || ex.ExitCode != 0 {
		t.Errorf("genesis execution %s ended %s/%d: %s", ex.ID, ex.Reason, ex.ExitCode, ex.Detail)
	}
	var logs api.ExecutionLogs
	if err := s.client.Get(ctx, "/executions/"+ex.ID+"/logs", &logs); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"genesis: execution", "balance:", "bid "} {
		if !strings.Contains(logs.Output, want) {
			t.Errorf("genesis output lacks %q:\n%s", want, logs.Output)
		}
	}

	audit(t, home) // while it runs
	s.stop()
	audit(t, home) // after it stops
}

func TestRestartResumes(t *testing.T) {
	needPython(t)
	home := t.TempDir()
	s := startServer(t, home, "--cycle", "300ms")
	ctx := context.Background()
	waitFor(t, 30*time.Second, "2 genesis executions", func() bool {
		var g economy.AgentView
		return s.client.Get(ctx, "/agents/genesis", &g) == nil && g.ExecutionCount >= 2
	})
	s.stop()
	before := audit(t, home)

	// A long cycle: nothing clears, so the economy must look exactly as it was left.
	s2 := startServer(t, home, "--cycle", "1h")
	after := audit(t, home)
	if before != after {
		t.Fatalf("restart changed the books:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	var page api.EventPage
	if err := s2.client.Get(ctx, "/events?type=agent.created", &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 1 {
		t.Fatalf("want exactly one agent.created (genesis) after a restart, got %d", len(page.Events))
	}
	var running api.ExecutionList
	if err := s2.client.Get(ctx, "/executions?status=running", &running); err != nil {
		t.Fatal(err)
	}
	if len(running.Executions) != 0 {
		t.Fatalf("executions running after a clean restart: %+v", running.Executions)
	}
	s2.stop()
}

// TestGenesisWakesDormantChild: a child whose bids lost and expired cannot
// run to bid again; genesis, when it can afford it, pays a wake-up bid
// (for_agent) for it. The parent here runs genesis's own code with a memory
// (state.json) naming a child that has never run and has no pending bid.
func TestGenesisWakesDormantChild(t *testing.T) {
	needPython(t)
	home := t.TempDir()
	s := startServer(t, home, "--cycle", "300ms")
	ctx := context.Background()
	src, err := os.ReadFile(filepath.Join("..", "agents", "genesis", "main.py"))
	if err != nil {
		t.Fatal(err)
	}
	child := s.createAgent(project(t, map[string]string{"main.py": "print('child awake')\n"}), "--credits", "10")
	state, _ := json.Marshal(map[string]any{"runs": 0, "children": []string{child}, "balances": []float64{},
		"child_runs": map[string]int{child: 0}})
	parent := s.createAgent(project(t, map[string]string{"main.py": string(src), "state.json": string(state)}),
		"--credits", "500", "--bid", "3")

	ex := s.finished(child, 30*time.Second)
	if out := s.output(ex.ID); !strings.Contains(out, "child awake") {
		t.Errorf("the child's output: %q", out)
	}
	var bids api.BidList
	if err := s.client.Get(ctx, "/agents/"+child+"/bids?status=won", &bids); err != nil {
		t.Fatal(err)
	}
	if len(bids.Bids) != 1 || bids.Bids[0].PayerID != parent || bids.Bids[0].AgentID != child {
		t.Fatalf("the child's won bids: %+v, want one paid by %s", bids.Bids, parent)
	}
	first := s.finished(parent, 10*time.Second)
	if out := s.output(first.ID); !strings.Contains(out, "to wake it") {
		t.Errorf("the parent's first execution did not say it woke the child:\n%s", out)
	}
}
