package docker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/sandbox/capture"
)

// contractAgent prints what an agent sees of the contract and writes a file.
const contractAgent = `import json, os, urllib.request
env = {k: v for k, v in os.environ.items()}
doc = json.load(open(os.environ["ENV_JSON_PATH"]))
open("made-by-agent.txt", "w").write("hello")
api = urllib.request.urlopen(os.environ["SYSTEM_SERVICE_URL"] + "/ping", timeout=5).read().decode()
print(json.dumps({"env": env, "cwd": os.getcwd(), "uid": os.getuid(), "gid": os.getgid(),
    "env_json": doc, "api": api, "groups": os.getgroups()}))
`

func TestRunsAgentUnderTheContract(t *testing.T) {
	t.Parallel()
	sb, api := sharedSandbox(t)
	ws := newWorkspace(t, map[string]string{"env.json": `{"schema_version": 1, "agent_id": "x"}`})
	spec := newSpec(t, ws, api, python(contractAgent)...)
	start := time.Now()
	h, err := sb.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	startLatency := time.Since(start)
	if st, err := h.Inspect(context.Background()); err != nil || !st.Running {
		t.Errorf("right after Start: Inspect = %+v, %v; want running", st, err)
	}
	res := wait(t, h)
	t.Logf("start took %s; result %s/%d cpu %.3fs peak %d", startLatency, res.Reason, res.ExitCode, res.CPUSeconds, res.PeakMemory)
	if res.Reason != sandbox.ReasonExited || res.ExitCode != 0 {
		t.Fatalf("ended %s/%d (%s): %s", res.Reason, res.ExitCode, res.Detail, res.Output)
	}
	got := jsonLines(t, res.Output)
	env, _ := got["env"].(map[string]any)
	var keys []string
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"AGENT_ID", "AGENT_TOKEN", "ENV_JSON_PATH", "EXECUTION_ID", "HOME", "LANG", "PATH", "SYSTEM_SERVICE_URL"}
	if !slices.Equal(keys, want) {
		t.Errorf("environment %v, want exactly %v", keys, want)
	}
	checks := map[string]any{
		"ENV_JSON_PATH": "/workspace/env.json", "HOME": "/workspace", "LANG": "C.UTF-8",
		"AGENT_ID": spec.AgentID, "EXECUTION_ID": spec.ExecutionID, "AGENT_TOKEN": spec.Env["AGENT_TOKEN"],
		"SYSTEM_SERVICE_URL": api,
	}
	for k, v := range checks {
		if env[k] != v {
			t.Errorf("%s = %v, want %v", k, env[k], v)
		}
	}
	uid := float64(testUIDBase + spec.AgentNum)
	if got["cwd"] != "/workspace" || got["uid"] != uid || got["gid"] != uid || got["api"] != "pong" {
		t.Errorf("cwd %v uid %v gid %v api %v; want /workspace, %v, %v, pong", got["cwd"], got["uid"], got["gid"], got["api"], uid, uid)
	}
	if doc, _ := got["env_json"].(map[string]any); doc["agent_id"] != "x" {
		t.Errorf("env.json as the agent read it: %v", got["env_json"])
	}
	// The file the agent wrote belongs to the agent's uid on the host, and
	// the operator (root) can use it.
	fi, err := os.Stat(filepath.Join(ws, "made-by-agent.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != uint32(uid) {
		t.Errorf("file written by the agent is owned by uid %d, want %v", st.Uid, uid)
	}
	if data, err := os.ReadFile(filepath.Join(ws, "made-by-agent.txt")); err != nil || string(data) != "hello" {
		t.Errorf("operator reads %q, %v", data, err)
	}
	if res.CPUSeconds <= 0 || res.PeakMemory <= 0 || res.EndedAt.Before(res.StartedAt) {
		t.Errorf("usage cpu %.3f peak %d, times %s..%s", res.CPUSeconds, res.PeakMemory, res.StartedAt, res.EndedAt)
	}
	if left := containersOf(t, sb, spec.ExecutionID); len(left) != 0 {
		t.Errorf("%d containers left after the execution", len(left))
	}
}

func TestOutputIsCombinedAndCapped(t *testing.T) {
	t.Parallel()
	sb, api := sharedSandbox(t)
	t.Run("stdout and stderr", func(t *testing.T) {
		t.Parallel()
		res := run(t, sb, newSpec(t, newWorkspace(t, nil), api, "sh", "-c", "echo out; sleep 0.1; echo err >&2"))
		if got := string(res.Output); got != "out\nerr\n" || res.OutputDropped != 0 {
			t.Errorf("output = %q (dropped %d), want both streams", got, res.OutputDropped)
		}
	})
	t.Run("head and tail kept", func(t *testing.T) {
		t.Parallel()
		spec := newSpec(t, newWorkspace(t, nil), api, "sh", "-c", "i=0; while [ $i -lt 20000 ]; do printf '%06d\\n' $i; i=$((i+1)); done")
		spec.OutputLimit = 1000
		res := run(t, sb, spec)
		var full strings.Builder
		for i := range 20000 {
			fmt.Fprintf(&full, "%06d\n", i)
		}
		want, dropped := capture.Expected([]byte(full.String()), 1000)
		if string(res.Output) != string(want) || res.OutputDropped != dropped {
			t.Errorf("output %d bytes (dropped %d), want %d (dropped %d)", len(res.Output), res.OutputDropped, len(want), dropped)
		}
	})
}

func TestExitCodesAndMissingPrograms(t *testing.T) {
	t.Parallel()
	sb, api := sharedSandbox(t)
	tests := []struct {
		name string
		cmd  []string
		code int
	}{
		{"exit 3", []string{"sh", "-c", "exit 3"}, 3},
		{"no such program", []string{"./not-there"}, 127},
		{"killed by itself", []string{"sh", "-c", "kill -9 $$"}, 137},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := run(t, sb, newSpec(t, newWorkspace(t, nil), api, tt.cmd...))
			if res.Reason != sandbox.ReasonExited || res.ExitCode != tt.code {
				t.Errorf("ended %s/%d (%s), want exited/%d; output %q", res.Reason, res.ExitCode, res.Detail, tt.code, res.Output)
			}
		})
	}
}

func TestStopAndKill(t *testing.T) {
	t.Parallel()
	sb, api := sharedSandbox(t)
	const handler = `import signal, sys, time
def term(*_):
    print("got SIGTERM", flush=True)
    sys.exit(3)
signal.signal(signal.SIGTERM, term)
print("ready", flush=True)
open("ready", "w").close()
time.sleep(30)
`
	tests := []struct {
		name    string
		cmd     []string
		stop    func(sandbox.Handle) error
		wantOut string
	}{
		{"stop lets a handler run", python(handler), func(h sandbox.Handle) error {
			return h.Stop(context.Background(), 5*time.Second)
		}, "got SIGTERM"},
		{"stop kills after grace", []string{"sh", "-c", "trap '' TERM; echo ready; touch ready; sleep 30"}, func(h sandbox.Handle) error {
			return h.Stop(context.Background(), 300*time.Millisecond)
		}, "ready"},
		{"kill", []string{"sh", "-c", "echo ready; touch ready; sleep 30"}, func(h sandbox.Handle) error {
			return h.Kill(context.Background())
		}, "ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ws := newWorkspace(t, nil)
			spec := newSpec(t, ws, api, tt.cmd...)
			h, err := sb.Start(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			waitForFile(t, filepath.Join(ws, "ready")) // the handler is installed
			start := time.Now()
			if err := tt.stop(h); err != nil {
				t.Fatal(err)
			}
			res := wait(t, h)
			if res.Reason != sandbox.ReasonKilled || !strings.Contains(string(res.Output), tt.wantOut) {
				t.Errorf("ended %s (%s) after %s with output %q; want killed, %q", res.Reason, res.Detail,
					time.Since(start), res.Output, tt.wantOut)
			}
			if left := containersOf(t, sb, spec.ExecutionID); len(left) != 0 {
				t.Errorf("%d containers left", len(left))
			}
		})
	}
}

// TestReapOrphans plays a crash: one backend starts an execution, and a new
// backend of the same instance (as after a restart) finds and removes it;
// a backend of another instance leaves it alone.
func TestReapOrphans(t *testing.T) {
	t.Parallel()
	needDocker(t)
	cfg := testConfig(t)
	first, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec := newSpec(t, newWorkspace(t, nil), "http://127.0.0.1:9", "sleep", "60")
	h, err := first.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}

	other, err := New(context.Background(), testConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ids, err := other.ReapOrphans(context.Background()); err != nil || len(ids) != 0 {
		t.Errorf("another instance reaped %v, %v", ids, err)
	}
	if err := other.Close(); err != nil {
		t.Errorf("close the other instance: %v", err)
	}
	if n := len(containersOf(t, first, spec.ExecutionID)); n != 1 {
		t.Fatalf("%d containers of the execution, want 1", n)
	}

	restarted, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := restarted.ReapOrphans(context.Background())
	if err != nil || !slices.Equal(ids, []string{spec.ExecutionID}) {
		t.Errorf("ReapOrphans = %v, %v; want [%s]", ids, err, spec.ExecutionID)
	}
	if n := len(containersOf(t, restarted, spec.ExecutionID)); n != 0 {
		t.Errorf("%d containers left after reaping", n)
	}
	res := wait(t, h) // the first backend sees its container vanish
	if res.Reason != sandbox.ReasonKilled {
		t.Errorf("the reaped execution ended %s (%s), want killed", res.Reason, res.Detail)
	}
	if err := first.Close(); err != nil {
		t.Errorf("close first: %v", err)
	}
	if err := restarted.Close(); err != nil {
		t.Errorf("close restarted: %v", err)
	}
}

func TestStartRefusesBadSpecs(t *testing.T) {
	t.Parallel()
	sb, api := sharedSandbox(t)
	ws := newWorkspace(t, nil)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(ws, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*sandbox.Spec)
	}{
		{"bad execution id", func(s *sandbox.Spec) { s.ExecutionID = "../x" }},
		{"empty command", func(s *sandbox.Spec) { s.Command = nil }},
		{"relative workspace", func(s *sandbox.Spec) { s.Workspace = "ws" }},
		{"workspace is a link", func(s *sandbox.Spec) { s.Workspace = link }},
		{"negative memory", func(s *sandbox.Spec) { s.Limits.MemoryBytes = -1 }},
		{"deadline passed", func(s *sandbox.Spec) { s.Deadline = time.Now().Add(-time.Second) }},
		{"bad variable", func(s *sandbox.Spec) { s.Env["A=B"] = "x" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spec := newSpec(t, ws, api, "true")
			tt.edit(&spec)
			if h, err := sb.Start(context.Background(), spec); err == nil {
				wait(t, h)
				t.Fatal("Start accepted the spec")
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"minimal", Config{InstanceID: "abc"}, true},
		{"no instance", Config{}, false},
		{"instance with slash", Config{InstanceID: "a/b"}, false},
		{"network starting with dash", Config{InstanceID: "a", Network: "-n"}, false},
		{"negative tmpfs", Config{InstanceID: "a", TmpfsBytes: -1}, false},
		{"huge uid base", Config{InstanceID: "a", UIDBase: 1<<30 + 1}, false},
		{"relative iptables", Config{InstanceID: "a", IPTables: "iptables"}, false},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	if got := bridgeName("0123456789ab"); got != "bp-0123456789ab" {
		t.Errorf("bridgeName = %q", got)
	}
	if got := bridgeName(strings.Repeat("x", 40)); len(got) != 15 {
		t.Errorf("bridgeName of a long instance = %q, want 15 bytes", got)
	}
	if got := chainName(strings.Repeat("x", 40)); len(got) > 28 {
		t.Errorf("chainName = %q, longer than iptables allows", got)
	}
	if got := hostname("Agent_7.x"); got != "agent-7-x" {
		t.Errorf("hostname = %q", got)
	}
}

// TestImageEntrypointRules runs the image's runner with no command, as
// `docker run` by hand would: it applies SPEC §4's rules itself.
func TestImageEntrypointRules(t *testing.T) {
	t.Parallel()
	sb, api := sharedSandbox(t)
	tests := []struct {
		name  string
		files map[string]string
		code  int
		out   string
	}{
		{"agent.json command", map[string]string{"agent.json": `{"command": ["sh", "-c", "echo from-agent-json"]}`,
			"main.py": "print('from main.py')"}, 0, "from-agent-json"},
		{"main.py", map[string]string{"agent.json": `{"name": "x"}`, "main.py": "import os; print('from main.py', os.getcwd())"},
			0, "from main.py /workspace"},
		{"executable main", map[string]string{"main": "#!/bin/sh\necho from-main\n"}, 0, "from-main"},
		{"nothing to run", map[string]string{"README": "hi"}, 127, "no_entrypoint"},
		{"bad agent.json", map[string]string{"agent.json": `{"command": []}`}, 127, "non-empty list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ws := newWorkspace(t, tt.files)
			if _, ok := tt.files["main"]; ok {
				os.Chmod(filepath.Join(ws, "main"), 0o755)
			}
			res := run(t, sb, newSpec(t, ws, api, "bp-agent-run"))
			if res.ExitCode != tt.code || !strings.Contains(string(res.Output), tt.out) {
				t.Errorf("exit %d output %q; want %d and %q", res.ExitCode, res.Output, tt.code, tt.out)
			}
		})
	}
}

// waitForFile waits until an agent has created path.
func waitForFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
