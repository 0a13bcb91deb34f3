package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/economy"
)

// project writes a project directory holding files.
func project(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// createAgent runs `bpagents agent create` and returns the new agent's id.
func (s *server) createAgent(dir string, args ...string) string {
	s.t.Helper()
	all := append([]string{"agent", "create", "--server", s.url, "--home", s.home, "--from", dir, "--json"}, args...)
	out, code := s.cli(all...)
	if code != 0 {
		s.t.Fatalf("agent create failed (%d): %s", code, out)
	}
	var v economy.AgentView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		s.t.Fatalf("agent create printed %q: %v", out, err)
	}
	return v.ID
}

// finished waits for the agent's first finished execution.
func (s *server) finished(agent string, timeout time.Duration) api.ExecutionView {
	s.t.Helper()
	var ex api.ExecutionView
	waitFor(s.t, timeout, "an execution of "+agent+" to finish", func() bool {
		var list api.ExecutionList
		if err := s.client.Get(context.Background(), "/executions?status=finished&agent="+agent, &list); err != nil {
			s.t.Fatal(err)
		}
		if len(list.Executions) == 0 {
			return false
		}
		ex = list.Executions[len(list.Executions)-1]
		return true
	})
	return ex
}

func (s *server) output(executionID string) string {
	s.t.Helper()
	var logs api.ExecutionLogs
	if err := s.client.Get(context.Background(), "/executions/"+executionID+"/logs", &logs); err != nil {
		s.t.Fatal(err)
	}
	return logs.Output
}

// TestSeedAgent runs the seed's minimal main.py, unmodified, as an agent.
func TestSeedAgent(t *testing.T) {
	needPython(t, "requests")
	seed, err := os.ReadFile("testdata/seed/main.py")
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, t.TempDir(), "--cycle", "300ms")
	id := s.createAgent(project(t, map[string]string{"main.py": string(seed)}), "--credits", "50", "--bid", "2")
	ex := s.finished(id, 30*time.Second)
	if ex.Reason != "exited" || ex.ExitCode != 0 {
		t.Fatalf("seed agent ended %s/%d: %s", ex.Reason, ex.ExitCode, ex.Detail)
	}
	out := s.output(ex.ID)
	for _, want := range []string{
		"Genesis Agent " + id + " active.",
		"Balance: ",
		"API Check: {'agent_id': '" + id + "'",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("seed agent output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "API Error") {
		t.Errorf("seed agent's API check failed:\n%s", out)
	}
	// It left no bid, so by the death rule it is gone, its credits burned.
	var a economy.AgentView
	if err := s.client.Get(context.Background(), "/agents/"+id, &a); err != nil {
		t.Fatal(err)
	}
	if a.Status != "dead" || a.DeathReason != economy.DeathNoBid || a.Balance != 0 {
		t.Errorf("seed agent after its execution: %+v", a)
	}
	audit(t, s.home)
}

// TestHostileAgents runs a CPU spinner, a memory balloon and a fork bomb
// while the API keeps answering, then checks each was stopped for its cause.
func TestHostileAgents(t *testing.T) {
	needRoot(t)
	needPython(t)
	s := startServer(t, t.TempDir(), "--cycle", "300ms")
	cmd := func(argv ...string) string {
		b, _ := json.Marshal(map[string]any{"command": argv})
		return string(b)
	}
	spinner := s.createAgent(project(t, map[string]string{"agent.json": cmd("python3", "-c", "while True: pass")}),
		"--credits", "20", "--bid", "3", "--cpu", "0.5", "--duration", "2")
	balloon := s.createAgent(project(t, map[string]string{"agent.json": cmd("python3", "-c",
		"b=[]\nwhile True: b.append(bytearray(8<<20))")}),
		"--credits", "20", "--bid", "3", "--cpu", "0.25", "--memory-mb", "64", "--duration", "10")
	bomb := s.createAgent(project(t, map[string]string{"agent.json": cmd("/bin/sh", "-c", "f() { f | f & }; f; sleep 30")}),
		"--credits", "20", "--bid", "3", "--cpu", "0.25", "--duration", "3")

	// Keep asking the API while they run; every request must succeed.
	stopWatching := watchAPI(t, s.url)

	// The fork bomb sleeps once it has forked, so it ends at its deadline,
	// unless the process limit refuses its own shell the fork of sleep first,
	// and the shell gives up with an error: contained either way.
	cases := []struct {
		agent, reason string
		orFailed      bool // or it exited with a non-zero code
	}{{spinner, "timeout", false}, {balloon, "oom", false}, {bomb, "timeout", true}}
	results := map[string]api.ExecutionView{}
	for _, c := range cases {
		ex := s.finished(c.agent, 40*time.Second)
		results[c.agent] = ex
		failed := c.orFailed && ex.Reason == "exited" && ex.ExitCode != 0
		if ex.Reason != c.reason && !failed {
			t.Errorf("agent %s ended %q, exit code %d (%s), want %q", c.agent, ex.Reason, ex.ExitCode, ex.Detail, c.reason)
		}
	}
	stopWatching()
	sp := results[spinner]
	if limit := 0.5*sp.WallSeconds + 0.3; sp.CPUSeconds > limit {
		t.Errorf("spinner used %.2f CPU seconds in %.2f s at 0.5 cores (limit %.2f)", sp.CPUSeconds, sp.WallSeconds, limit)
	}
	if b := results[balloon]; b.PeakMemory > 64<<20+1<<20 {
		t.Errorf("balloon peaked at %d bytes, over its 64 MiB limit", b.PeakMemory)
	}
	// Nothing they started is left running.
	for _, c := range cases {
		if n := processesOf(t, s.home, c.agent); n > 0 {
			t.Errorf("%d processes of %s remain", n, c.agent)
		}
	}
	audit(t, s.home)
}

// processesOf counts live host processes owned by an agent's uid (the
// process sandbox runs each agent under its own uid, owner of its workspace).
func processesOf(t *testing.T, home, agent string) int {
	t.Helper()
	info, err := os.Stat(filepath.Join(home, "workspaces", "agent-"+agent))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("ps", "-o", "stat=", "-u", fmt.Sprint(statUID(info))).Output()
	n := 0
	for _, st := range strings.Fields(string(out)) {
		if !strings.HasPrefix(st, "Z") { // a zombie holds nothing but its pid until it is reaped
			n++
		}
	}
	return n
}
