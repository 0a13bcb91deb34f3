package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/sandbox/docker"
	"github.com/bpagents/bpagents/internal/testutil"
)

// needDocker makes a test that runs agents in containers skip or fail: it
// needs root (firewall, per-agent uids), an engine that answers a ping and
// the runner image (`bpagents image build`).
func needDocker(t *testing.T) {
	t.Helper()
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := docker.Probe(ctx, "", docker.DefaultImage)
	testutil.Need(t, "docker", err == nil, fmt.Sprint(err))
}

// startDocker runs `bpagents up --sandbox docker` in home.
func startDocker(t *testing.T, home string, extra ...string) *server {
	t.Helper()
	s := startServer(t, home, append([]string{"--sandbox", "docker"}, extra...)...)
	if len(s.logLines(`"backend":"docker"`)) == 0 {
		t.Fatalf("the server did not choose the docker backend:\n%s", tail(s.log.String(), 20))
	}
	instance := s.instanceOf()
	t.Cleanup(func() {
		s.kill() // a no-op when the test stopped it
		cleanupInstance(t, instance)
	})
	return s
}

// cleanupInstance removes what a server killed by a test (on failure, or
// by the harness) left on the host, the way its restart would: containers,
// network, firewall chain and cgroups of its instance.
func cleanupInstance(t *testing.T, instance string) {
	ctx := context.Background()
	cli, err := docker.NewClient("")
	if err != nil {
		t.Errorf("clean up instance %s: %v", instance, err)
		return
	}
	defer cli.Close()
	_, nerr := cli.NetworkInspect(ctx, "bpagents-"+instance, network.InspectOptions{})
	if nerr != nil && len(dockerLeftovers(t, instance)) == 0 {
		return // stopped cleanly: nothing left
	}
	sb, err := docker.New(ctx, docker.Config{InstanceID: instance, UIDBase: 200000}, nil)
	if err != nil {
		t.Errorf("clean up instance %s: %v", instance, err)
		return
	}
	if _, err := sb.ReapOrphans(ctx); err != nil {
		t.Errorf("clean up instance %s: %v", instance, err)
	}
	if err := sb.Close(); err != nil {
		t.Errorf("clean up instance %s: %v", instance, err)
	}
}

// instanceOf reads the system instance id from the server's log.
func (s *server) instanceOf() string {
	s.t.Helper()
	for _, line := range s.logLines("docker sandbox ready") {
		var m struct {
			Instance string `json:"instance"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.Instance != "" {
			return m.Instance
		}
	}
	s.t.Fatal("no instance id in the server log")
	return ""
}

// agentURL reads SYSTEM_SERVICE_URL as the server gives it to agents.
func (s *server) agentURL() string {
	s.t.Helper()
	for _, line := range s.logLines(`"agent_url"`) {
		var m struct {
			AgentURL string `json:"agent_url"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.AgentURL != "" {
			return m.AgentURL
		}
	}
	s.t.Fatal("no agent_url in the server log")
	return ""
}

// dockerLeftovers lists, with the docker CLI, the containers of an
// instance in any state.
func dockerLeftovers(t *testing.T, instance string) []string {
	t.Helper()
	out, err := exec.Command("docker", "ps", "-a", "-q", "--filter", "label="+docker.LabelInstance+"="+instance).CombinedOutput()
	if err != nil {
		t.Fatalf("docker ps -a: %v: %s", err, out)
	}
	return strings.Fields(string(out))
}

// TestDockerUpFromEmptyDir runs `bpagents up --sandbox docker` in an empty
// directory: genesis runs in a container of the real image with a correct
// env.json, acts through the API (bids, spawns a child), its child runs in
// a container too, and after a stop nothing is left and the books balance.
func TestDockerUpFromEmptyDir(t *testing.T) {
	needDocker(t)
	home := t.TempDir()
	s := startDocker(t, home, "--cycle", "300ms")
	ctx := context.Background()
	agentURL := s.agentURL()
	if u, err := url.Parse(agentURL); err != nil || strings.HasPrefix(u.Host, "127.") {
		t.Fatalf("agents get %q: it must be the API's address on the sandbox network", agentURL)
	}

	// Genesis's first execution, and the env.json it was given.
	first := s.finished("genesis", 30*time.Second)
	if first.Sandbox != "docker" || first.Reason != "exited" || first.ExitCode != 0 {
		t.Fatalf("genesis's first execution: sandbox %q, %s/%d (%s)\n%s", first.Sandbox, first.Reason, first.ExitCode,
			first.Detail, s.output(first.ID))
	}
	raw, err := os.ReadFile(filepath.Join(home, "workspaces", "genesis", "env.json"))
	if err != nil {
		t.Fatal(err)
	}
	env := checkEnv(t, raw, "genesis")
	if env["service_url"] != agentURL {
		t.Errorf("env.json service_url %v, want %s", env["service_url"], agentURL)
	}
	if env["execution_id"] == first.ID {
		// Read before a second execution replaced it: it is the first one's.
		if env["execution_count"] != float64(1) || len(env["lineage"].([]any)) != 0 {
			t.Errorf("env.json of the first execution: execution_count %v lineage %v", env["execution_count"], env["lineage"])
		}
	}
	ec, _ := env["execution_context"].(map[string]any)
	if ec["cpu"] != 0.5 || ec["memory_mb"] != float64(256) || ec["duration_seconds"] != float64(10) {
		t.Errorf("env.json execution_context %v, want genesis's bundle", ec)
	}
	sys, _ := time.Parse(time.RFC3339Nano, env["system_time"].(string))
	dl, _ := time.Parse(time.RFC3339Nano, env["deadline"].(string))
	if d := dl.Sub(sys); d != 10*time.Second {
		t.Errorf("env.json deadline - system_time = %s, want 10s", d)
	}
	out := s.output(first.ID)
	for _, want := range []string{"genesis: execution", "balance:", "bid "} {
		if !strings.Contains(out, want) {
			t.Errorf("genesis output lacks %q:\n%s", want, out)
		}
	}

	// Its effects, seen through the API: a bid placed during the execution
	// and, being rich, a child that then runs in a container of its own.
	var bids api.EventPage
	if err := s.client.Get(ctx, "/events?type=bid.placed&agent=genesis&limit=50", &bids); err != nil {
		t.Fatal(err)
	}
	if len(bids.Events) < 2 { // the bootstrap bid and at least one of its own
		t.Errorf("genesis placed %d bids, want its own after the bootstrap one", len(bids.Events))
	}
	var child economy.AgentView
	waitFor(t, 30*time.Second, "a child of genesis", func() bool {
		var list api.AgentList
		if err := s.client.Get(ctx, "/agents", &list); err != nil {
			t.Fatal(err)
		}
		for _, a := range list.Agents {
			if len(a.Lineage) > 0 && a.Lineage[0] == "genesis" {
				child = a
				return true
			}
		}
		return false
	})
	cx := s.finished(child.ID, 30*time.Second)
	if cx.Sandbox != "docker" || cx.Reason != "exited" || cx.ExitCode != 0 {
		t.Errorf("child %s's execution: sandbox %q, %s/%d (%s)", child.ID, cx.Sandbox, cx.Reason, cx.ExitCode, cx.Detail)
	}
	if _, err := os.Stat(filepath.Join(home, "workspaces", "agent-"+child.ID, "main.py")); err != nil {
		t.Errorf("child workspace: %v", err)
	}

	audit(t, home) // while it runs
	instance := s.instanceOf()
	s.stop()
	if left := dockerLeftovers(t, instance); len(left) != 0 {
		t.Errorf("docker ps -a shows %d containers of instance %s after the stop: %v", len(left), instance, left)
	}
	if out, _ := exec.Command("docker", "network", "ls", "-q", "--filter", "name=bpagents-"+instance).Output(); len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("the sandbox network is left after the stop: %s", out)
	}
	audit(t, home)
}

// TestDockerSeedAgent runs the seed's minimal main.py, unmodified (it
// imports requests), in the runner image; its API check succeeds.
func TestDockerSeedAgent(t *testing.T) {
	needDocker(t)
	seed, err := os.ReadFile("testdata/seed/main.py")
	if err != nil {
		t.Fatal(err)
	}
	s := startDocker(t, t.TempDir(), "--cycle", "300ms")
	id := s.createAgent(project(t, map[string]string{"main.py": string(seed)}), "--credits", "50", "--bid", "2")
	ex := s.finished(id, 30*time.Second)
	if ex.Sandbox != "docker" || ex.Reason != "exited" || ex.ExitCode != 0 {
		t.Fatalf("seed agent ended %s/%d in %q: %s\n%s", ex.Reason, ex.ExitCode, ex.Sandbox, ex.Detail, s.output(ex.ID))
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
	audit(t, s.home)
	instance := s.instanceOf()
	s.stop()
	if left := dockerLeftovers(t, instance); len(left) != 0 {
		t.Errorf("docker ps -a shows %d containers after the stop", len(left))
	}
}
