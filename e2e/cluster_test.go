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
	"github.com/bpagents/bpagents/internal/client"
	"github.com/bpagents/bpagents/internal/store/postgres/pgtest"
	"github.com/bpagents/bpagents/internal/testutil"
)

// startRole runs `bpagents serve --role ROLE` on a shared database and home
// and waits until it serves (the API answers /healthz; other roles log
// "serving").
func startRole(t *testing.T, home string, env []string, role string, extra ...string) *server {
	t.Helper()
	args := append([]string{"serve", "--role", role, "--home", home}, extra...)
	addr := ""
	if role == "api" {
		addr = freePort(t)
		args = append(args, "--addr", addr)
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = append(append(os.Environ(), "BPAGENTS_LOG_FORMAT=json", "BPAGENTS_LOG_LEVEL=info"), env...)
	s := &server{t: t, home: home, cmd: cmd, log: &testutil.Buffer{}, done: make(chan struct{})}
	if addr != "" {
		s.url = "http://" + addr
	}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("%s log:\n%s", strings.Join(args[:3], " "), tail(s.log.String(), 40))
		}
	})
	waitFor(t, 30*time.Second, role+" to serve", func() bool {
		select {
		case <-s.done:
			t.Fatalf("bpagents serve --role %s exited early:\n%s", role, s.log.String())
		default:
		}
		if role != "api" {
			return len(s.logLines(`"msg":"serving"`)) > 0
		}
		var h api.Health
		return client.New(s.url, "").Get(context.Background(), "/healthz", &h) == nil
	})
	if role == "api" {
		tok, err := os.ReadFile(filepath.Join(home, "data", "operator.token"))
		if err != nil {
			t.Fatal(err)
		}
		s.client = client.New(s.url, strings.TrimSpace(string(tok)))
	}
	return s
}

// leadership is one scheduler.leader event.
type leadership struct {
	ID       string `json:"scheduler_id"`
	Previous string `json:"previous"`
}

// leaderEvents reads the scheduler.leader events in order.
func leaderEvents(t *testing.T, c *client.Client) []leadership {
	t.Helper()
	var page api.EventPage
	if err := c.Get(context.Background(), "/events?type=scheduler.leader&limit=100", &page); err != nil {
		t.Fatal(err)
	}
	var out []leadership
	for _, e := range page.Events {
		var l leadership
		if err := json.Unmarshal(e.Data, &l); err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

// TestCluster is the cluster demo (scripts/cluster-demo) in short: on one
// PostgreSQL schema and one home, 2 API replicas, a scheduler and a standby,
// 2 runners. Killing the leader hands the lead to the standby within
// seconds; killing a runner mid-execution gets that execution closed as
// killed with its bid reinstated while the economy goes on; nothing runs
// twice and the books balance.
func TestCluster(t *testing.T) {
	needPython(t)
	url := pgtest.Schema(t)
	home := t.TempDir()
	uidBase := 1_000_000 + 20_000*(os.Getpid()%500) + 1_000*int(uidRanges.Add(1)%20)
	env := []string{"BPAGENTS_DATABASE=" + url, "BPAGENTS_CYCLE=200ms", "BPAGENTS_CLUSTER_HEARTBEAT=200ms",
		"BPAGENTS_CLUSTER_RUNNER_TIMEOUT=1500ms", "BPAGENTS_CLUSTER_LEADER_RETRY=200ms", "BPAGENTS_CLUSTER_POLL=50ms",
		fmt.Sprintf("BPAGENTS_PROCESS_UID_BASE=%d", uidBase)}
	ctx := context.Background()

	api1 := startRole(t, home, env, "api")
	api2 := startRole(t, home, env, "api")
	sched := map[string]*server{"s1": startRole(t, home, env, "scheduler")}
	waitFor(t, 10*time.Second, "s1 to lead", func() bool { return len(sched["s1"].logLines("scheduler became leader")) == 1 })
	sched["s2"] = startRole(t, home, env, "scheduler")
	runners := map[string]*server{}
	for i, a := range []*server{api1, api2} {
		id := fmt.Sprintf("r%d", i+1)
		runners[id] = startRole(t, home, env, "runner", "--runner-id", id, "--runner-slots", "3", "--sandbox", "process",
			"--public-url", a.url)
	}

	// Genesis runs; both replicas tell the same story from the database.
	api1.finished("genesis", 30*time.Second)
	var st1, st2 api.StatusView
	if err := api1.client.Get(ctx, "/status", &st1); err != nil {
		t.Fatal(err)
	}
	if err := api2.client.Get(ctx, "/status", &st2); err != nil {
		t.Fatal(err)
	}
	if st1.Runtime.Leader == "" || st1.Runtime.Leader != st2.Runtime.Leader || len(st2.Runtime.Runners) != 2 {
		t.Fatalf("status: leader %q / %q, %d runners", st1.Runtime.Leader, st2.Runtime.Leader, len(st2.Runtime.Runners))
	}

	// Kill the leader: the standby leads within seconds and clearing goes on.
	sched["s1"].kill()
	killed := time.Now()
	waitFor(t, 10*time.Second, "the standby to lead", func() bool {
		return len(sched["s2"].logLines("scheduler became leader")) == 1
	})
	failover := time.Since(killed)
	t.Logf("failover after %s", failover.Round(time.Millisecond))
	if failover > 5*time.Second {
		t.Errorf("failover took %s", failover)
	}
	cycle := st1.Cycle
	waitFor(t, 10*time.Second, "clearing after the failover", func() bool {
		var st api.StatusView
		api2.client.Get(ctx, "/status", &st)
		cycle = st.Cycle
		return st.Cycle > st1.Cycle+5 && st.Runtime.Leader != st1.Runtime.Leader
	})

	// Kill a runner while it runs the sleeper.
	sleeper := api1.createAgent(project(t, map[string]string{"agent.json": `{"command": ["sleep", "60"]}`}),
		"--credits", "50", "--bid", "5", "--cpu", "0.1", "--memory-mb", "64", "--duration", "60")
	victim := api1.runningExecution(sleeper, 20*time.Second, nil)
	if runners[victim.RunnerID] == nil {
		t.Fatalf("the sleeper runs on %q, not a runner of this test", victim.RunnerID)
	}
	runners[victim.RunnerID].kill()
	lost := time.Now()
	waitFor(t, 15*time.Second, "the lost runner's execution to be closed", func() bool {
		var ex api.ExecutionView
		api2.client.Get(ctx, "/executions/"+victim.ID, &ex)
		return ex.Status == "finished"
	})
	t.Logf("runner %s declared lost %s after its kill", victim.RunnerID, time.Since(lost).Round(time.Millisecond))
	var ex api.ExecutionView
	if err := api2.client.Get(ctx, "/executions/"+victim.ID, &ex); err != nil {
		t.Fatal(err)
	}
	if ex.Reason != "killed" || !strings.Contains(ex.Detail, "lost") {
		t.Fatalf("the lost runner's execution ended %s (%s), want killed", ex.Reason, ex.Detail)
	}
	var page api.EventPage
	if err := api2.client.Get(ctx, "/events?type=bid.reinstated&agent="+sleeper, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 1 || !strings.Contains(string(page.Events[0].Data), victim.ID) {
		t.Fatalf("want one bid.reinstated for %s, got %d", victim.ID, len(page.Events))
	}
	// The economy goes on: the reinstated bid runs on the other runner.
	waitFor(t, 20*time.Second, "the sleeper to run again", func() bool {
		var list api.ExecutionList
		api1.client.Get(ctx, "/executions?status=running&agent="+sleeper, &list)
		return len(list.Executions) == 1 && list.Executions[0].ID != victim.ID && list.Executions[0].RunnerID != victim.RunnerID
	})

	// The killed runner restarts under its id: it reaps what its process
	// left and registers again.
	again := startRole(t, home, env, "runner", "--runner-id", victim.RunnerID, "--runner-slots", "3",
		"--sandbox", "process", "--public-url", api1.url)
	waitFor(t, 10*time.Second, "two active runners again", func() bool {
		var st api.StatusView
		api1.client.Get(ctx, "/status", &st)
		return len(st.Runtime.Runners) == 2
	})

	// Stop everything in order, then check the record.
	for _, s := range []*server{runners["r1"], runners["r2"], again, sched["s2"], api2} {
		if !s.exited() {
			s.stop()
		}
	}
	// One leader at a time: each leadership names the one it replaced.
	chain := leaderEvents(t, api1.client)
	if len(chain) != 2 {
		t.Fatalf("%d scheduler.leader events, want 2", len(chain))
	}
	for i := 1; i < len(chain); i++ {
		if chain[i].Previous != chain[i-1].ID {
			t.Errorf("leader %s took over from %q, but the leader was %s", chain[i].ID, chain[i].Previous, chain[i-1].ID)
		}
	}
	started := map[string]int{}
	for after := int64(0); ; {
		if err := api1.client.Get(ctx, fmt.Sprintf("/events?type=execution.started&after=%d&limit=500", after), &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Events) == 0 {
			break
		}
		for _, e := range page.Events {
			var d struct {
				ExecutionID string `json:"execution_id"`
			}
			json.Unmarshal(e.Data, &d)
			started[d.ExecutionID]++
			after = e.Seq
		}
	}
	for id, n := range started {
		if n != 1 {
			t.Errorf("execution %s started %d times", id, n)
		}
	}
	t.Logf("%d executions, each started once; last cycle seen %d", len(started), cycle)
	api1.stop()
	out, err := exec.Command(binary, "audit", "--replay", "--database", url).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "audit: OK") || !strings.Contains(string(out), "replay: OK") {
		t.Fatalf("audit --replay (%v):\n%s", err, out)
	}
}
