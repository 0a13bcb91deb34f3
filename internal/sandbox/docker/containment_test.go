package docker

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/sandbox"
)

// forkBomb forks forever, in every process, shrugging off failures.
const forkBomb = `import os
while True:
    try:
        os.fork()
    except OSError:
        pass
`

// TestHostileAgents runs a fork bomb, a memory balloon and a CPU spinner at
// once while the host keeps serving requests, and checks each was stopped
// for its cause, within its limits, and left nothing behind.
func TestHostileAgents(t *testing.T) {
	t.Parallel()
	sb, api := sharedSandbox(t)

	// The host stays responsive: a request to the test API every 20 ms.
	var stop atomic.Bool
	var requests, failures, slowest atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := &http.Client{Timeout: 2 * time.Second}
		for !stop.Load() {
			start := time.Now()
			resp, err := c.Get(api + "/ping")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			} else {
				failures.Add(1)
			}
			requests.Add(1)
			if d := time.Since(start).Microseconds(); d > slowest.Load() {
				slowest.Store(d)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	type hostile struct {
		name   string
		cmd    []string
		limits sandbox.Limits
		reason sandbox.Reason
		check  func(t *testing.T, res sandbox.Result)
	}
	cases := []hostile{
		{"fork bomb", python(forkBomb),
			sandbox.Limits{CPUMillis: 250, MemoryBytes: 128 << 20, Duration: 3 * time.Second, MaxProcs: 64},
			sandbox.ReasonTimeout, nil},
		{"memory balloon", python("b=[]\nwhile True: b.append(bytearray(8<<20))"),
			sandbox.Limits{CPUMillis: 500, MemoryBytes: 64 << 20, Duration: 20 * time.Second},
			sandbox.ReasonOOM, func(t *testing.T, res sandbox.Result) {
				if res.PeakMemory > 64<<20+1<<20 || res.PeakMemory < 32<<20 {
					t.Errorf("balloon peaked at %d bytes; want about its 64 MiB limit", res.PeakMemory)
				}
			}},
		{"cpu spinner", python("while True: pass"),
			sandbox.Limits{CPUMillis: 500, MemoryBytes: 64 << 20, Duration: 2 * time.Second},
			sandbox.ReasonTimeout, func(t *testing.T, res sandbox.Result) {
				wall := res.EndedAt.Sub(res.StartedAt).Seconds()
				if limit := 0.5*wall + 0.3; res.CPUSeconds > limit || res.CPUSeconds < 0.05 {
					t.Errorf("spinner used %.2f CPU seconds in %.2f s at 0.5 cores (limit %.2f)", res.CPUSeconds, wall, limit)
				}
				t.Logf("spinner: %.2f CPU seconds in %.2f s of wall time at 0.5 cores", res.CPUSeconds, wall)
			}},
	}
	t.Run("all at once", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				runHostile(t, sb, api, c.cmd, c.limits, c.reason, c.check)
			})
		}
	})
	stop.Store(true)
	wg.Wait()
	t.Logf("host API while hostile agents ran: %d requests, %d failures, slowest %.1f ms",
		requests.Load(), failures.Load(), float64(slowest.Load())/1000)
	if failures.Load() > 0 || requests.Load() == 0 {
		t.Errorf("the host failed %d of %d requests", failures.Load(), requests.Load())
	}
}

// fsProbe tries to write everywhere and to fill /tmp, printing one JSON
// object per line.
const fsProbe = `import json, os
results = {}
for p in ["/x", "/etc/x", "/usr/x", "/var/x", "/var/tmp/x", "/root/x", "/home/x", "/run/x", "/dev/x",
          "/dev/shm/x", "/dev/mqueue/x", "/proc/x", "/sys/x", "/etc/hosts", "/etc/resolv.conf",
          "/usr/local/bin/bp-agent-run", "/sbin/docker-init", "/workspace/../x"]:
    try:
        with open(p, "a") as f:
            f.write("x")
        results[p] = "written"
    except OSError as e:
        results[p] = e.strerror
for p in ["/workspace/ok", "/tmp/ok"]:
    with open(p, "w") as f:
        f.write("ok")
    results[p] = "written"
print(json.dumps({"writes": results}), flush=True)
n = 0
chunk = b"x" * (1 << 20)
try:
    with open("/tmp/fill", "wb") as f:
        while n < (1 << 30):
            f.write(chunk)
            f.flush()
            n += len(chunk)
except OSError as e:
    print(json.dumps({"fill_error": e.strerror}), flush=True)
print(json.dumps({"filled": n, "statvfs_total": os.statvfs("/tmp").f_blocks * os.statvfs("/tmp").f_frsize}), flush=True)
`

func TestWritesOnlyToWorkspaceAndCappedTmp(t *testing.T) {
	t.Parallel()
	sb, api := sharedSandbox(t)
	ws := newWorkspace(t, nil)
	res := run(t, sb, newSpec(t, ws, api, python(fsProbe)...))
	if res.Reason != sandbox.ReasonExited || res.ExitCode != 0 {
		t.Fatalf("probe ended %s/%d (%s): %s", res.Reason, res.ExitCode, res.Detail, res.Output)
	}
	got := jsonLines(t, res.Output)
	writes, _ := got["writes"].(map[string]any)
	for path, outcome := range writes {
		allowed := path == "/workspace/ok" || path == "/tmp/ok"
		if allowed != (outcome == "written") {
			t.Errorf("write to %s: %v", path, outcome)
		}
	}
	t.Logf("writes: %v", writes)
	filled, _ := got["filled"].(float64)
	if got["fill_error"] != "No space left on device" || filled > testTmpfs || filled < testTmpfs/2 {
		t.Errorf("filling /tmp: wrote %v bytes, error %v; want ENOSPC at about %d", filled, got["fill_error"], testTmpfs)
	}
	if data, err := os.ReadFile(filepath.Join(ws, "ok")); err != nil || string(data) != "ok" {
		t.Errorf("workspace file: %q, %v", data, err)
	}
}

// TestCannotReadAnotherWorkspace gives agent A a secret and lets agent B
// look for it everywhere it can.
func TestCannotReadAnotherWorkspace(t *testing.T) {
	t.Parallel()
	sb, api := sharedSandbox(t)
	wsA := newWorkspace(t, map[string]string{"secret.txt": "the-secret-of-a"})
	specA := newSpec(t, wsA, api, "true")
	if res := run(t, sb, specA); res.Reason != sandbox.ReasonExited {
		t.Fatalf("agent A ended %s: %s", res.Reason, res.Detail)
	}
	// A's workspace now belongs to A's uid, closed to everyone else.
	fi, err := os.Stat(wsA)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != uint32(testUIDBase+specA.AgentNum) || fi.Mode().Perm() != 0o700 {
		t.Errorf("A's workspace: uid %d mode %o, want %d 0700", st.Uid, fi.Mode().Perm(), testUIDBase+specA.AgentNum)
	}
	probe := `import os, sys
target = sys.argv[1]
found = []
for p in [target + "/secret.txt", "/proc/1/root" + target + "/secret.txt"]:
    try:
        found.append(p + ": " + open(p).read())
    except OSError as e:
        print("open", p, e.strerror)
for root, dirs, files in os.walk("/", onerror=lambda e: None):
    if root.startswith(("/proc", "/sys")):
        dirs[:] = []
        continue
    for f in files:
        if f == "secret.txt":
            found.append(os.path.join(root, f))
print("FOUND" if found else "NOTHING", found)
`
	res := run(t, sb, newSpec(t, newWorkspace(t, nil), api, "python3", "-c", probe, wsA))
	if res.Reason != sandbox.ReasonExited || !strings.Contains(string(res.Output), "NOTHING") {
		t.Errorf("agent B looking for A's secret: %s (%s)\n%s", res.Reason, res.Detail, res.Output)
	}
}

// runHostile runs one hostile agent and checks how it ended.
func runHostile(t *testing.T, sb *Sandbox, api string, cmd []string, limits sandbox.Limits, reason sandbox.Reason,
	check func(*testing.T, sandbox.Result)) {
	spec := newSpec(t, newWorkspace(t, nil), api, cmd...)
	spec.Limits, spec.Deadline = limits, time.Now().Add(limits.Duration)
	h, err := sb.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	res := wait(t, h)
	if res.Reason != reason {
		t.Errorf("ended %s/%d (%s), want %s; output %q", res.Reason, res.ExitCode, res.Detail, reason, tailString(string(res.Output), 5))
	}
	if check != nil {
		check(t, res)
	}
	if left := containersOf(t, sb, spec.ExecutionID); len(left) != 0 {
		t.Errorf("%d containers left", len(left))
	}
}
