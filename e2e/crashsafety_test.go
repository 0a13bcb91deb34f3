package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/store/postgres/pgtest"
)

// crashAgent is the load of the crash-safety test, a Python agent: each
// execution bids for the next one first (so it lives on), then pays and
// messages random living agents with idempotency keys, and sometimes spawns
// a child that copies its workspace.
const crashAgent = `import json, random, time, urllib.request, urllib.error
env = json.load(open("env.json"))
URL, TOKEN, ME, EX = env["service_url"], env["token"], env["agent_id"], env["execution_id"]

def call(method, path, body=None, key=None):
    headers = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        e.read()
    except Exception:
        pass
    return None

bundle = {"cpu": 0.1, "memory_mb": 64, "duration_seconds": 3}
call("POST", "/market/bid", {"amount": 1, "bundle": bundle}, EX + "-bid")
alive = call("GET", "/agents?status=alive") or {}
others = [a["id"] for a in alive.get("agents", []) if a["id"] != ME]
rng = random.Random()
for i in range(8):
    if others:
        to = rng.choice(others)
        call("POST", "/economic/transfer", {"to_id": to, "amount": 0.01, "memo": "crash load"}, EX + "-t%d" % i)
        if i % 3 == 0:
            call("POST", "/social/message", {"to_id": to, "content": "hello from " + ME}, EX + "-m%d" % i)
    time.sleep(0.1)
if env["credits"] > 150 and rng.random() < 0.3:
    call("POST", "/social/spawn", {"initial_credits": 20, "copy_workspace": True,
                                   "bid": {"amount": 1, "bundle": bundle}}, EX + "-spawn")
`

// TestCrashSafety runs an economy on the real binary — genesis plus agents
// paying, messaging, bidding and spawning — and, again and again, kills it
// with SIGKILL at a random moment (seeded, logged), then restarts it. After
// every crash the audit and the event-log replay must pass on the database as
// the crash left it; after every restart no process of the executions the
// crash interrupted may be left; and over the whole run no execution may
// start twice and no agent may have two executions running at once. Every
// other round kills the sandboxes' processes with the server (a machine
// going down) instead of the server alone (a crashed process). It runs on
// SQLite (`bpagents up`), on PostgreSQL (`bpagents up --database`), and on
// PostgreSQL as a cluster of processes (`serve --role api`, `scheduler` and
// `runner`), all killed at once.
//
// BPAGENTS_CRASH_ROUNDS (default 6) sets the rounds per backend and
// BPAGENTS_CRASH_SEED the seed, for a bigger run or to replay one:
//
//	BPAGENTS_CRASH_ROUNDS=50 go test -run TestCrashSafety -v -timeout 60m ./e2e/
func TestCrashSafety(t *testing.T) {
	needRoot(t) // per-agent users: how this test finds each sandbox's processes
	needPython(t)
	rounds := 6
	if v := os.Getenv("BPAGENTS_CRASH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("BPAGENTS_CRASH_ROUNDS=%q: want a positive integer", v)
		}
		rounds = n
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("BPAGENTS_CRASH_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("BPAGENTS_CRASH_SEED=%q: %v", v, err)
		}
		seed = n
	}
	t.Logf("seed %d (BPAGENTS_CRASH_SEED=%d replays these kill times), %d rounds per backend", seed, seed, rounds)
	t.Run("sqlite", func(t *testing.T) {
		crashLoop(t, crashSetup{home: t.TempDir(), seed: seed, rounds: rounds})
	})
	t.Run("postgres", func(t *testing.T) {
		crashLoop(t, crashSetup{home: t.TempDir(), database: pgtest.Schema(t), seed: seed + 1, rounds: rounds})
	})
	t.Run("postgres-cluster", func(t *testing.T) {
		crashLoop(t, crashSetup{home: t.TempDir(), database: pgtest.Schema(t), seed: seed + 2, rounds: rounds, cluster: true})
	})
}

type crashSetup struct {
	home     string
	database string // "" for SQLite in home
	seed     uint64
	rounds   int
	// cluster runs an API, a scheduler and a runner process instead of one
	// `bpagents up`.
	cluster bool
}

// start runs the economy and returns the process serving the API and every
// process started.
func (cs crashSetup) start(t *testing.T, env []string) (*server, []*server) {
	t.Helper()
	if !cs.cluster {
		flags := []string{"--cycle", "200ms"}
		if cs.database != "" {
			flags = append(flags, "--database", cs.database)
		}
		s := startServerEnv(t, cs.home, env, flags...)
		return s, []*server{s}
	}
	env = append(env, "BPAGENTS_DATABASE="+cs.database, "BPAGENTS_CYCLE=200ms", "BPAGENTS_CLUSTER_HEARTBEAT=200ms",
		"BPAGENTS_CLUSTER_RUNNER_TIMEOUT=1500ms", "BPAGENTS_CLUSTER_LEADER_RETRY=200ms", "BPAGENTS_CLUSTER_POLL=50ms")
	api := startRole(t, cs.home, env, "api")
	sched := startRole(t, cs.home, env, "scheduler")
	runner := startRole(t, cs.home, env, "runner", "--runner-id", "crash", "--sandbox", "process", "--public-url", api.url)
	return api, []*server{api, sched, runner}
}

// hostProc is a process on the host, identified across pid reuse.
type hostProc struct {
	pid   int
	start uint64 // clock ticks after boot
	uid   int
	ppid  int
	state string
}

// hostProcs reads every process's uid, parent, state and start time.
func hostProcs() map[int]hostProc {
	out := map[int]hostProc{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command may hold spaces and parentheses: fields start after the last ')'.
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 20 {
			continue
		}
		p := hostProc{pid: pid, state: f[0]}
		p.ppid, _ = strconv.Atoi(f[1])
		p.start, _ = strconv.ParseUint(f[19], 10, 64)
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name(), &st) == nil {
			p.uid = int(st.Uid)
		}
		out[pid] = p
	}
	return out
}

// sandboxProcs returns the live (not zombie) processes whose uid is in the
// agents' range.
func sandboxProcs(uidBase int) []hostProc {
	var out []hostProc
	for _, p := range hostProcs() {
		if p.uid >= uidBase && p.uid < uidBase+1000 && p.state != "Z" {
			out = append(out, p)
		}
	}
	return out
}

// descendants returns every process below pid.
func descendants(pid int) []hostProc {
	procs := hostProcs()
	children := map[int][]int{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	var out []hostProc
	queue := []int{pid}
	for len(queue) > 0 {
		for _, c := range children[queue[0]] {
			out = append(out, procs[c])
			queue = append(queue, c)
		}
		queue = queue[1:]
	}
	return out
}

// stillAlive returns the processes of before that still run (same pid and
// start time, not a zombie).
func stillAlive(before []hostProc) []hostProc {
	now := hostProcs()
	var out []hostProc
	for _, p := range before {
		if q, ok := now[p.pid]; ok && q.start == p.start && q.state != "Z" {
			out = append(out, q)
		}
	}
	return out
}

// auditOffline runs `bpagents audit --replay` on the database directly and
// fails the test unless both the audit and the replay pass.
func auditOffline(t *testing.T, cs crashSetup) string {
	t.Helper()
	args := []string{"audit", "--replay", "--home", cs.home}
	if cs.database != "" {
		args = append(args, "--database", cs.database)
	}
	out, err := exec.Command(binary, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "audit: OK") || !strings.Contains(string(out), "replay: OK") {
		t.Fatalf("audit --replay failed (%v):\n%s", err, out)
	}
	return string(out)
}

func crashLoop(t *testing.T, cs crashSetup) {
	rng := rand.New(rand.NewPCG(cs.seed, 0x5eed))
	uidBase := 1_000_000 + 20_000*(os.Getpid()%500) + 1_000*int(uidRanges.Add(1)%20)
	env := []string{fmt.Sprintf("BPAGENTS_PROCESS_UID_BASE=%d", uidBase)}
	ctx := context.Background()
	var interrupted []hostProc // sandbox processes alive when the last crash came
	var procs []*server        // the processes of the running economy
	restart := func(round int) *server {
		t.Helper()
		began := time.Now()
		var s *server
		s, procs = cs.start(t, env)
		// Start-up reaped the orphans of the crash before serving.
		deadline := time.Now().Add(10 * time.Second)
		for left := stillAlive(interrupted); len(left) > 0; left = stillAlive(interrupted) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d processes of the interrupted executions are still running after the restart: %+v",
					round, len(left), left)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("round %d: up in %s; none of the %d processes the crash interrupted is left",
			round, time.Since(began).Round(time.Millisecond), len(interrupted))
		return s
	}
	for round := 1; round <= cs.rounds; round++ {
		s := restart(round)
		if round == 1 {
			for range 5 {
				s.createAgent(project(t, map[string]string{"main.py": crashAgent}), "--credits", "1000", "--bid", "2",
					"--cpu", "0.1", "--memory-mb", "64", "--duration", "3")
			}
		}
		wholeMachine := round%2 == 0
		after := time.Duration(500+rng.IntN(3500)) * time.Millisecond
		time.Sleep(after)
		var running api.ExecutionList
		_ = s.client.Get(ctx, "/executions?status=running", &running)
		var victims []hostProc
		for _, p := range procs {
			victims = append(victims, hostProc{pid: p.cmd.Process.Pid})
		}
		servers := len(victims)
		if wholeMachine {
			for _, p := range procs {
				victims = append(victims, descendants(p.cmd.Process.Pid)...)
			}
		}
		interrupted = sandboxProcs(uidBase)
		for _, v := range victims {
			_ = syscall.Kill(v.pid, syscall.SIGKILL)
		}
		for _, p := range procs {
			p.kill()
		}
		what := fmt.Sprintf("%d bpagents processes", servers)
		if wholeMachine {
			what += fmt.Sprintf(" and their %d sandbox processes", len(victims)-servers)
		}
		out := auditOffline(t, cs)
		t.Logf("round %d: SIGKILL to %s after %s, %d executions running; %s", round, what, after,
			len(running.Executions), strings.TrimSpace(strings.Split(out, "\n")[1]))
	}

	s := restart(cs.rounds + 1)
	checkExecutions(t, s)
	// Executions the crashes left running are closed (as killed) by now.
	var running api.ExecutionList
	waitFor(t, 30*time.Second, "the executions of before the last crash to be closed", func() bool {
		if err := s.client.Get(ctx, "/executions?status=running&limit=500", &running); err != nil {
			t.Fatal(err)
		}
		for _, ex := range running.Executions {
			if ex.Started < time.Now().Add(-10*time.Second).UTC().Format(time.RFC3339Nano) {
				return false
			}
		}
		return true
	})
	for i := len(procs) - 1; i >= 0; i-- { // runner first: it drains its executions
		procs[i].stop()
	}
	auditOffline(t, cs)
	if left := sandboxProcs(uidBase); len(left) > 0 {
		t.Fatalf("%d agent processes remain after a clean stop: %+v", len(left), left)
	}
}

// checkExecutions reads every execution event and checks that no execution
// started twice and no agent had two executions running at once; it also
// checks the load did its work (transfers, messages, spawns, bids, kills).
func checkExecutions(t *testing.T, s *server) {
	t.Helper()
	ctx := context.Background()
	started := map[string]int{}
	running := map[string]string{} // agent → its running execution
	counts := map[string]int{}
	var after int64
	for {
		var page api.EventPage
		if err := s.client.Get(ctx, fmt.Sprintf("/events?after=%d&limit=500", after), &page); err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			after = e.Seq
			counts[e.Type]++
			var d struct {
				ExecutionID string `json:"execution_id"`
				Reason      string `json:"reason"`
			}
			_ = json.Unmarshal(e.Data, &d)
			switch e.Type {
			case "execution.started":
				started[d.ExecutionID]++
				if started[d.ExecutionID] > 1 {
					t.Errorf("execution %s started a second time (event %d)", d.ExecutionID, e.Seq)
				}
				if other, ok := running[e.AgentID]; ok {
					t.Errorf("agent %s started execution %s while %s was running (event %d)", e.AgentID, d.ExecutionID, other, e.Seq)
				}
				running[e.AgentID] = d.ExecutionID
			case "execution.finished":
				if running[e.AgentID] == d.ExecutionID {
					delete(running, e.AgentID)
				}
				if d.Reason == "killed" {
					counts["killed"]++
				}
			}
		}
		if len(page.Events) < 500 {
			break
		}
	}
	t.Logf("%d events: %d executions started (%d ended killed), %d transfers, %d messages, %d spawns, %d bids",
		after, counts["execution.started"], counts["killed"], counts["ledger.transfer"], counts["message.sent"],
		counts["agent.spawned"], counts["bid.placed"])
	for _, typ := range []string{"execution.started", "message.sent", "agent.spawned", "bid.placed"} {
		if counts[typ] == 0 {
			t.Errorf("the load made no %s event", typ)
		}
	}
}
