//go:build linux

package process

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/sandbox"
)

func TestMain(m *testing.M) {
	MaybeRunInit()
	os.Exit(m.Run())
}

// testUIDBase is far above any real user on a development machine.
const testUIDBase = 1_700_000

// skipOrFail skips a test that needs something this host lacks, unless
// BPAGENTS_TEST_REQUIRE=all demands that everything runs.
func skipOrFail(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("BPAGENTS_TEST_REQUIRE") == "all" {
		t.Fatalf("BPAGENTS_TEST_REQUIRE=all but %s", reason)
	}
	t.Skip(reason)
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root")
	}
}

func requirePython(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		if _, err := os.Stat("/usr/local/bin/python3"); err != nil {
			skipOrFail(t, "needs python3 in the agent PATH")
		}
	}
}

// requireCgroups skips unless sb enforces limits with cgroups.
func requireCgroups(t testing.TB, sb *Sandbox) {
	t.Helper()
	if !sb.Capabilities().CgroupLimits {
		skipOrFail(t, "needs cgroup limits: "+sb.Capabilities().Description)
	}
}

func randomID(t testing.TB) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// testConfig is a Config with an instance of its own and a fresh state dir.
func testConfig(t testing.TB) Config {
	return Config{InstanceID: "test-" + randomID(t), StateDir: t.TempDir()}
}

// newSandbox starts a backend that is closed, and checked for leftovers,
// when the test ends.
func newSandbox(t testing.TB, cfg Config) *Sandbox {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	sb, err := New(cfg, logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		sb.mu.Lock()
		n := len(sb.active)
		sb.mu.Unlock()
		if n != 0 {
			t.Errorf("%d executions still registered after the test", n)
		}
		if sb.tree != nil {
			for _, dir := range uniqueDirs(sb.tree.parents) {
				if fileExists(dir) {
					t.Errorf("cgroup %s left behind", dir)
				}
			}
		}
	})
	return sb
}

// newWorkspace makes an empty workspace inside a directory that other
// users may traverse, as a real workspaces directory must be.
func newWorkspace(t testing.TB) string {
	t.Helper()
	base := t.TempDir()
	for _, dir := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(dir, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	ws := filepath.Join(base, "ws")
	if err := os.Mkdir(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	return ws
}

func writeTestFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// newSpec is a spec with generous limits that tests tighten as needed.
func newSpec(t testing.TB, ws string, cmd ...string) sandbox.Spec {
	return sandbox.Spec{
		ExecutionID: "ex_" + randomID(t),
		AgentID:     "agent-" + randomID(t),
		AgentNum:    1,
		Workspace:   ws,
		Command:     cmd,
		Env: map[string]string{
			"AGENT_ID":           "agent-x",
			"EXECUTION_ID":       "ex_1",
			"AGENT_TOKEN":        "secret-token",
			"SYSTEM_SERVICE_URL": "http://127.0.0.1:8000",
			"ENV_JSON_PATH":      filepath.Join(ws, "env.json"),
		},
		Limits: sandbox.Limits{
			CPUMillis:   1000,
			MemoryBytes: 256 << 20,
			Duration:    15 * time.Second,
			MaxProcs:    64,
		},
		Deadline: time.Now().Add(15 * time.Second),
	}
}

func start(t testing.TB, sb *Sandbox, spec sandbox.Spec) sandbox.Handle {
	t.Helper()
	h, err := sb.Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { // a failed test leaves nothing running
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.Kill(ctx)
	})
	return h
}

func wait(t testing.TB, h sandbox.Handle) sandbox.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := h.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return res
}

// run starts spec and waits for its result.
func run(t testing.TB, sb *Sandbox, spec sandbox.Spec) sandbox.Result {
	t.Helper()
	return wait(t, start(t, sb, spec))
}

// processesMatching lists the host pids whose command line contains s.
func processesMatching(s string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	self := fmt.Sprint(os.Getpid())
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' || e.Name() == self {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(cmdline), s) {
			found = append(found, e.Name())
		}
	}
	return found
}

// waitGone waits up to 2 s for processes matching s to disappear.
func waitGone(t testing.TB, s string) {
	t.Helper()
	for range 200 {
		if len(processesMatching(s)) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("processes still running with %q in their command line: %v", s, processesMatching(s))
}

// startSleeper starts an ordinary host process the tests must never harm.
func startSleeper(t testing.TB) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func checkReason(t testing.TB, res sandbox.Result, want sandbox.Reason) {
	t.Helper()
	if res.Reason != want {
		t.Errorf("reason = %q (exit %d, detail %q, output %q), want %q",
			res.Reason, res.ExitCode, res.Detail, res.Output, want)
	}
}
