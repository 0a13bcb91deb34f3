//go:build linux

package process

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/sandbox/capture"
)

func TestCapabilitiesAsRoot(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	cfg := testConfig(t)
	cfg.UIDBase = testUIDBase
	caps := newSandbox(t, cfg).Capabilities()
	t.Logf("%s", caps.Description)
	if !caps.CgroupLimits || !caps.Namespaces || !caps.UserIsolation || caps.Rlimits {
		t.Errorf("capabilities as root = %+v, want cgroups, namespaces and user isolation", caps)
	}
	cfg = testConfig(t)
	cfg.NoCgroups = true
	caps = newSandbox(t, cfg).Capabilities()
	if caps.CgroupLimits || !caps.Rlimits || !strings.Contains(caps.Description, "rlimit") {
		t.Errorf("with NoCgroups: %+v, want the rlimit fallback described", caps)
	}
}

func TestEnvIsExactlyTheContract(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, testConfig(t))
	ws := newWorkspace(t)
	spec := newSpec(t, ws, "env")
	spec.Env["PATH"] = "/evil" // the backend owns PATH, HOME and LANG
	res := run(t, sb, spec)
	checkReason(t, res, sandbox.ReasonExited)
	got := strings.Split(strings.TrimSpace(string(res.Output)), "\n")
	slices.Sort(got)
	want := []string{
		"AGENT_ID=agent-x",
		"AGENT_TOKEN=secret-token",
		"ENV_JSON_PATH=" + filepath.Join(ws, "env.json"),
		"EXECUTION_ID=ex_1",
		"HOME=" + ws,
		"LANG=C.UTF-8",
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"SYSTEM_SERVICE_URL=http://127.0.0.1:8000",
	}
	if !slices.Equal(got, want) {
		t.Errorf("agent environment:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestWorkingDirectoryAndRelativeCommand(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, testConfig(t))
	ws := newWorkspace(t)
	writeTestFile(t, filepath.Join(ws, "main"), "#!/bin/sh\npwd\ncat env.json\n", 0o755)
	writeTestFile(t, filepath.Join(ws, "env.json"), `{"schema_version":1}`, 0o644)
	res := run(t, sb, newSpec(t, ws, "./main"))
	checkReason(t, res, sandbox.ReasonExited)
	want := ws + "\n" + `{"schema_version":1}`
	if got := string(res.Output); got != want {
		t.Errorf("output = %q, want %q", got, want)
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, testConfig(t))
	tests := []struct {
		name       string
		python     bool
		cmd        []string
		wantCode   int
		wantDetail string
	}{
		{"success", false, []string{"sh", "-c", "exit 0"}, 0, ""},
		{"failure", false, []string{"sh", "-c", "exit 3"}, 3, ""},
		{"large code", false, []string{"sh", "-c", "exit 255"}, 255, ""},
		{"segfault", true, []string{"python3", "-c", "import ctypes; ctypes.string_at(0)"}, 139, "SIGSEGV"},
		{"child killed", false, []string{"sh", "-c", "sh -c 'kill -KILL $$'; exit $?"}, 137, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.python {
				requirePython(t)
			}
			res := run(t, sb, newSpec(t, newWorkspace(t), tt.cmd...))
			checkReason(t, res, sandbox.ReasonExited)
			if res.ExitCode != tt.wantCode {
				t.Errorf("exit code = %d, want %d (detail %q)", res.ExitCode, tt.wantCode, res.Detail)
			}
			if !strings.Contains(res.Detail, tt.wantDetail) {
				t.Errorf("detail = %q, want it to mention %q", res.Detail, tt.wantDetail)
			}
			if res.StartedAt.IsZero() || res.EndedAt.Before(res.StartedAt) {
				t.Errorf("times: started %v, ended %v", res.StartedAt, res.EndedAt)
			}
		})
	}
}

func TestExecFailureIsAnErrorResult(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, testConfig(t))
	tests := []struct {
		name       string
		file       string // created in the workspace with mode
		mode       os.FileMode
		cmd        string
		wantDetail string
	}{
		{"not in PATH", "", 0, "no-such-interpreter-xyz", "not found in PATH"},
		{"missing relative", "", 0, "./missing", "no such file"},
		{"not executable", "main", 0o644, "./main", "permission denied"},
		{"not a program", "main", 0o755, "./main", "exec format error"},
		{"missing interpreter", "main", 0o755, "./main", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ws := newWorkspace(t)
			if tt.file != "" {
				content := "\x00\x01binary junk"
				if tt.name == "missing interpreter" {
					content = "#!/nonexistent/python9\n"
				}
				writeTestFile(t, filepath.Join(ws, tt.file), content, tt.mode)
			}
			res := run(t, sb, newSpec(t, ws, tt.cmd))
			checkReason(t, res, sandbox.ReasonError)
			if !strings.Contains(res.Detail, tt.wantDetail) || !strings.Contains(res.Detail, tt.cmd) {
				t.Errorf("detail = %q, want it to name %q and say %q", res.Detail, tt.cmd, tt.wantDetail)
			}
		})
	}
}

func TestStartRejectsBadSpecs(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, testConfig(t))
	ws := newWorkspace(t)
	tests := []struct {
		name   string
		mutate func(*sandbox.Spec)
	}{
		{"empty command", func(s *sandbox.Spec) { s.Command = nil }},
		{"relative workspace", func(s *sandbox.Spec) { s.Workspace = "ws" }},
		{"missing workspace", func(s *sandbox.Spec) { s.Workspace = filepath.Join(ws, "nope") }},
		{"execution id with slash", func(s *sandbox.Spec) { s.ExecutionID = "../x" }},
		{"deadline passed", func(s *sandbox.Spec) { s.Deadline = time.Now().Add(-time.Second) }},
		{"bad env name", func(s *sandbox.Spec) { s.Env["A=B"] = "x" }},
		{"negative memory", func(s *sandbox.Spec) { s.Limits.MemoryBytes = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := newSpec(t, ws, "true")
			tt.mutate(&spec)
			if h, err := sb.Start(context.Background(), spec); err == nil {
				wait(t, h)
				t.Fatalf("Start accepted %s", tt.name)
			}
		})
	}
	t.Run("duplicate running id", func(t *testing.T) {
		spec := newSpec(t, ws, "sleep", "5")
		h := start(t, sb, spec)
		if _, err := sb.Start(context.Background(), spec); err == nil {
			t.Error("Start accepted an execution id that is running")
		}
		h.Kill(context.Background())
		wait(t, h)
	})
}

func TestOutputIsCombinedAndCapped(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, testConfig(t))
	t.Run("stdout and stderr", func(t *testing.T) {
		t.Parallel()
		res := run(t, sb, newSpec(t, newWorkspace(t), "sh", "-c", "echo out; echo err >&2"))
		if got := string(res.Output); got != "out\nerr\n" || res.OutputDropped != 0 {
			t.Errorf("output = %q (dropped %d), want both streams", got, res.OutputDropped)
		}
	})
	t.Run("head and tail kept", func(t *testing.T) {
		t.Parallel()
		spec := newSpec(t, newWorkspace(t), "sh", "-c", "i=0; while [ $i -lt 20000 ]; do printf '%06d\\n' $i; i=$((i+1)); done")
		spec.OutputLimit = 1000
		res := run(t, sb, spec)
		var full strings.Builder
		for i := range 20000 {
			fmt.Fprintf(&full, "%06d\n", i)
		}
		want, dropped := capture.Expected([]byte(full.String()), 1000)
		if string(res.Output) != string(want) || res.OutputDropped != dropped {
			t.Errorf("output %d bytes (dropped %d), want %d (dropped %d); head %q tail %q",
				len(res.Output), res.OutputDropped, len(want), dropped,
				res.Output[:min(20, len(res.Output))], res.Output[max(0, len(res.Output)-20):])
		}
	})
}

func TestStopAndKill(t *testing.T) {
	t.Parallel()
	requirePython(t)
	sb := newSandbox(t, testConfig(t))
	const handler = `import signal, sys, time
def term(*_):
    print("got SIGTERM", flush=True)
    sys.exit(3)
signal.signal(signal.SIGTERM, term)
open("ready", "w").close()
time.sleep(30)
`
	tests := []struct {
		name     string
		cmd      []string
		stop     func(sandbox.Handle) error
		wantOut  string
		minTaken time.Duration
	}{
		{"stop reaches a handler", []string{"python3", "-c", handler},
			func(h sandbox.Handle) error { return h.Stop(context.Background(), 10*time.Second) }, "got SIGTERM", 0},
		{"stop kills after grace", []string{"sh", "-c", "trap '' TERM; touch ready; sleep 30"},
			func(h sandbox.Handle) error { return h.Stop(context.Background(), 300*time.Millisecond) }, "", 300 * time.Millisecond},
		{"kill", []string{"sh", "-c", "touch ready; sleep 30"},
			func(h sandbox.Handle) error { return h.Kill(context.Background()) }, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ws := newWorkspace(t)
			h := start(t, sb, newSpec(t, ws, tt.cmd...))
			waitForFile(t, filepath.Join(ws, "ready"))
			began := time.Now()
			if err := tt.stop(h); err != nil {
				t.Fatalf("stop: %v", err)
			}
			taken := time.Since(began)
			res := wait(t, h)
			checkReason(t, res, sandbox.ReasonKilled)
			if !strings.Contains(string(res.Output), tt.wantOut) {
				t.Errorf("output = %q, want %q", res.Output, tt.wantOut)
			}
			if taken < tt.minTaken || taken > 5*time.Second {
				t.Errorf("took %v, want at least %v and not seconds", taken, tt.minTaken)
			}
			if err := h.Kill(context.Background()); err != nil {
				t.Errorf("Kill after the end: %v", err)
			}
			if again := wait(t, h); again.Reason != res.Reason {
				t.Errorf("result changed after a late Kill: %q", again.Reason)
			}
		})
	}
}

func waitForFile(t testing.TB, path string) {
	t.Helper()
	for range 500 {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never appeared", path)
}

func TestInspectAndConcurrentWait(t *testing.T) {
	t.Parallel()
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			sb := mode.sandbox(t)
			h := start(t, sb, newSpec(t, newWorkspace(t), "sh", "-c", "while :; do :; done"))
			// Poll: on a loaded host the spinner may wait for a core.
			var st sandbox.Status
			var err error
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if st, err = h.Inspect(context.Background()); err != nil || st.CPUSeconds > 0.05 {
					break
				}
			}
			if err != nil || !st.Running || st.CPUSeconds <= 0 || st.Memory <= 0 {
				t.Errorf("Inspect while running = %+v, %v; want running with CPU and memory", st, err)
			}
			results := make([]sandbox.Result, 8)
			var wg sync.WaitGroup
			for i := range results {
				wg.Go(func() { results[i], _ = h.Wait(context.Background()) })
			}
			if err := h.Kill(context.Background()); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			for i, r := range results {
				if r.Reason != sandbox.ReasonKilled || r.EndedAt != results[0].EndedAt {
					t.Errorf("waiter %d got %q ended %v; waiter 0 ended %v", i, r.Reason, r.EndedAt, results[0].EndedAt)
				}
			}
			st, err = h.Inspect(context.Background())
			if err != nil || st.Running || st.CPUSeconds < 0.05 {
				t.Errorf("Inspect after the end = %+v, %v; want stopped with its CPU time", st, err)
			}
		})
	}
}

func TestConcurrentStarts(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, testConfig(t))
	ws := newWorkspace(t)
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			spec := newSpec(t, ws, "sh", "-c", "echo $EXECUTION_ID")
			spec.Env["EXECUTION_ID"] = fmt.Sprintf("ex_%d", i)
			h, err := sb.Start(context.Background(), spec)
			if err != nil {
				t.Errorf("Start %d: %v", i, err)
				return
			}
			res, err := h.Wait(context.Background())
			if got, want := string(res.Output), fmt.Sprintf("ex_%d\n", i); err != nil || got != want || res.ExitCode != 0 {
				t.Errorf("execution %d printed %q (exit %d), want %q", i, got, res.ExitCode, want)
			}
		})
	}
	wg.Wait()
}
