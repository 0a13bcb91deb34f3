package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/sandbox/docker"
)

const dockerForkBomb = `import os
while True:
    try:
        os.fork()
    except OSError:
        pass
`

// dockerWriter tries to write outside /workspace and /tmp, then fills /tmp.
const dockerWriter = `import json
res = {}
for p in ["/x", "/etc/x", "/usr/x", "/var/tmp/x", "/root/x", "/dev/shm/x", "/dev/mqueue/x", "/workspace/../x"]:
    try:
        open(p, "a").write("x")
        res[p] = "written"
    except OSError as e:
        res[p] = e.strerror
n = 0
try:
    with open("/tmp/fill", "wb") as f:
        while n < (1 << 30):
            f.write(b"x" * (1 << 20)); f.flush(); n += 1 << 20
except OSError as e:
    res["fill"] = e.strerror
res["filled"] = n
print(json.dumps(res), flush=True)
`

// dockerSnooper looks for another agent's secret at its host path and
// anywhere in the container.
const dockerSnooper = `import os, sys
target, name = sys.argv[1], sys.argv[2]
found = []
try:
    found.append(open(os.path.join(target, name)).read())
except OSError:
    pass
for root, dirs, files in os.walk("/", onerror=lambda e: None):
    if root.startswith(("/proc", "/sys")):
        dirs[:] = []
        continue
    if name in files:
        found.append(os.path.join(root, name))
print("SNOOPED" if found else "NOTHING", found, flush=True)
`

// dockerProber connects to each name=host:port argument.
const dockerProber = `import json, socket, sys
out = {}
for arg in sys.argv[1:]:
    name, target = arg.split("=", 1)
    host, port = target.rsplit(":", 1)
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, int(port))); out[name] = "connected"
    except OSError as e:
        out[name] = e.strerror or str(e)
    s.close()
print(json.dumps(out), flush=True)
`

func agentJSON(argv ...string) string {
	b, _ := json.Marshal(map[string]any{"command": argv})
	return string(b)
}

// TestDockerHostileAgents runs hostile agents in containers through the
// whole system while the API keeps answering: a fork bomb, a memory
// balloon (oom), a CPU spinner (timeout, CPU within cores × wall), a writer
// (only /workspace and a capped /tmp), a snooper (no other workspace) and
// a prober (only the API is reachable). The books balance afterwards.
func TestDockerHostileAgents(t *testing.T) {
	needDocker(t)
	s := startDocker(t, t.TempDir(), "--cycle", "300ms")

	// Targets on this machine for the prober: a listener on every host
	// address, on a port that is not the API's.
	other, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	otherPort := strconv.Itoa(other.Addr().(*net.TCPAddr).Port)
	au, _ := url.Parse(s.agentURL())
	probes := []string{"api=" + au.Host, "other port on the api's host=" + net.JoinHostPort(au.Hostname(), otherPort)}
	for _, a := range hostAddrs(t) {
		if a != au.Hostname() {
			probes = append(probes, "host "+a+"="+net.JoinHostPort(a, otherPort))
		}
	}

	victim := s.createAgent(project(t, map[string]string{"agent.json": agentJSON("true"), "secret-of-victim.txt": "s3cr3t"}),
		"--credits", "20", "--bid", "3", "--cpu", "0.25", "--memory-mb", "64", "--duration", "5")
	s.finished(victim, 40*time.Second)
	victimWS := filepath.Join(s.home, "workspaces", "agent-"+victim)

	type hostile struct {
		name, agent, reason string
	}
	create := func(name, reason string, files map[string]string, args ...string) hostile {
		return hostile{name, s.createAgent(project(t, files), append([]string{"--credits", "20", "--bid", "3"}, args...)...), reason}
	}
	cases := []hostile{
		create("spinner", "timeout", map[string]string{"agent.json": agentJSON("python3", "-c", "while True: pass")},
			"--cpu", "0.5", "--memory-mb", "64", "--duration", "4"),
		create("balloon", "oom", map[string]string{"agent.json": agentJSON("python3", "-c", "b=[]\nwhile True: b.append(bytearray(8<<20))")},
			"--cpu", "0.25", "--memory-mb", "64", "--duration", "10"),
		create("fork bomb", "timeout", map[string]string{"agent.json": agentJSON("python3", "-c", dockerForkBomb)},
			"--cpu", "0.25", "--memory-mb", "128", "--duration", "3"),
		create("writer", "exited", map[string]string{"agent.json": agentJSON("python3", "-c", dockerWriter)},
			"--cpu", "0.25", "--memory-mb", "256", "--duration", "10"),
		create("snooper", "exited", map[string]string{"agent.json": agentJSON("python3", "-c", dockerSnooper, victimWS, "secret-of-victim.txt")},
			"--cpu", "0.25", "--memory-mb", "64", "--duration", "10"),
		create("prober", "exited", map[string]string{"agent.json": agentJSON(append([]string{"python3", "-c", dockerProber}, probes...)...)},
			"--cpu", "0.25", "--memory-mb", "64", "--duration", "20"),
	}

	// Keep asking the API while they run; every request must succeed.
	stopWatching := watchAPI(t, s.url)

	results := map[string]api.ExecutionView{}
	for _, c := range cases {
		ex := s.finished(c.agent, 60*time.Second)
		results[c.name] = ex
		if ex.Sandbox != "docker" || ex.Reason != c.reason {
			t.Errorf("%s ended %q in %q (%s), want %q; output:\n%s", c.name, ex.Reason, ex.Sandbox, ex.Detail, c.reason, s.output(ex.ID))
		}
	}
	stopWatching()

	sp := results["spinner"]
	t.Logf("spinner: %.2f CPU seconds in %.2f s at 0.5 cores", sp.CPUSeconds, sp.WallSeconds)
	if limit := 0.5*sp.WallSeconds + 0.3; sp.CPUSeconds > limit {
		t.Errorf("spinner used %.2f CPU seconds in %.2f s at 0.5 cores (limit %.2f)", sp.CPUSeconds, sp.WallSeconds, limit)
	}
	if b := results["balloon"]; b.PeakMemory > 64<<20+1<<20 {
		t.Errorf("balloon peaked at %d bytes, over its 64 MiB limit", b.PeakMemory)
	}
	var w map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(s.output(results["writer"].ID))), &w); err != nil {
		t.Fatalf("writer output: %v", err)
	}
	for k, v := range w {
		switch {
		case k == "filled":
			if n := v.(float64); n > 64<<20 || n < 32<<20 {
				t.Errorf("writer filled %v bytes of /tmp, want about its 64 MiB cap", n)
			}
		case k == "fill":
			if v != "No space left on device" {
				t.Errorf("filling /tmp ended with %v", v)
			}
		case v == "written":
			t.Errorf("writer wrote %s", k)
		}
	}
	if out := s.output(results["snooper"].ID); !strings.HasPrefix(out, "NOTHING") {
		t.Errorf("snooper found another agent's secret: %s", out)
	}
	var probed map[string]string
	if err := json.Unmarshal([]byte(strings.TrimSpace(s.output(results["prober"].ID))), &probed); err != nil {
		t.Fatalf("prober output: %v", err)
	}
	for name, outcome := range probed {
		t.Logf("prober: %-36s %s", name, outcome)
		if (name == "api") != (outcome == "connected") {
			t.Errorf("prober %s: %s", name, outcome)
		}
	}
	audit(t, s.home)
	instance := s.instanceOf()
	s.stop()
	if left := dockerLeftovers(t, instance); len(left) != 0 {
		t.Errorf("docker ps -a shows %d containers after the stop", len(left))
	}
	audit(t, s.home)
}

// TestDockerCrashRecovery kills `bpagents up --sandbox docker` with SIGKILL
// while an agent's container runs, restarts it, and checks that the orphan
// is removed at start-up, its execution closed as killed and refunded, and
// the books balance.
func TestDockerCrashRecovery(t *testing.T) {
	needDocker(t)
	home := t.TempDir()
	s := startDocker(t, home, "--cycle", "200ms")
	ctx := context.Background()
	sleeper := s.createAgent(project(t, map[string]string{"agent.json": agentJSON("sleep", "30")}),
		"--credits", "50", "--bid", "10", "--duration", "60")
	victim := s.runningExecution(sleeper, 30*time.Second, func(ex api.ExecutionView) bool {
		return len(containersOfExecution(t, ex.ID)) == 1 // its container exists
	})
	time.Sleep(300 * time.Millisecond) // let it run
	instance := s.instanceOf()
	s.kill()
	orphans := containersOfExecution(t, victim.ID)
	if len(orphans) != 1 {
		t.Fatalf("after the crash %d containers of %s exist, want the orphan", len(orphans), victim.ID)
	}
	audit(t, home)

	s2 := startDocker(t, home, "--cycle", "200ms")
	if got := s2.instanceOf(); got != instance {
		t.Fatalf("restart has instance %s, want %s", got, instance)
	}
	if left := containersOfExecution(t, victim.ID); len(left) != 0 {
		t.Errorf("the orphan of %s survived the restart", victim.ID)
	}
	if lines := s2.logLines("removed orphaned sandboxes"); len(lines) == 0 || !strings.Contains(lines[0], victim.ID) {
		t.Errorf("start-up did not report removing %s: %v", victim.ID, lines)
	}
	var ex api.ExecutionView
	if err := s2.client.Get(ctx, "/executions/"+victim.ID, &ex); err != nil {
		t.Fatal(err)
	}
	if ex.Status != "finished" || ex.Reason != "killed" {
		t.Fatalf("execution running at the crash is %s/%s after restart, want finished/killed", ex.Status, ex.Reason)
	}
	var page api.EventPage
	if err := s2.client.Get(ctx, "/events?type=bid.reinstated&agent="+sleeper, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 1 {
		t.Errorf("want one bid.reinstated for %s, got %d", sleeper, len(page.Events))
	}
	audit(t, home)
	s2.stop()
	if left := dockerLeftovers(t, instance); len(left) != 0 {
		t.Errorf("docker ps -a shows %d containers after the stop", len(left))
	}
	audit(t, home)
}

func containersOfExecution(t *testing.T, id string) []string {
	t.Helper()
	out, err := exec.Command("docker", "ps", "-a", "-q", "--filter", "label="+docker.LabelExecution+"="+id).CombinedOutput()
	if err != nil {
		t.Fatalf("docker ps -a: %v: %s", err, out)
	}
	return strings.Fields(string(out))
}

// hostAddrs lists this machine's IPv4 addresses but loopback and sandbox
// bridges (which come and go with other tests).
func hostAddrs(t *testing.T) []string {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, iface := range ifaces {
		if strings.HasPrefix(iface.Name, "bp-") {
			continue
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() {
				out = append(out, p.Addr().String())
			}
		}
	}
	return out
}
