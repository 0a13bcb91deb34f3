//go:build linux

package process

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/sandbox"
)

// testMode is one way the backend enforces limits.
type testMode struct {
	name    string
	cgroups bool // limits by cgroups (needs root), else the rlimit fallback
}

var testModes = []testMode{{"cgroups", true}, {"rlimits", false}}

// sandbox returns a backend in this mode, with per-agent uids when root.
func (m testMode) sandbox(t testing.TB) *Sandbox {
	t.Helper()
	cfg := testConfig(t)
	cfg.UIDBase = testUIDBase
	cfg.NoCgroups = !m.cgroups
	if m.cgroups {
		requireRoot(t)
	}
	sb := newSandbox(t, cfg)
	if m.cgroups {
		requireCgroups(t, sb)
	}
	return sb
}

func TestDeadlineKillsCPUSpinner(t *testing.T) {
	t.Parallel()
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			sb := mode.sandbox(t)
			spec := newSpec(t, newWorkspace(t), "sh", "-c", "while :; do :; done")
			spec.Limits.CPUMillis = 500
			spec.Limits.Duration = 1500 * time.Millisecond
			spec.Deadline = time.Now().Add(spec.Limits.Duration)
			res := run(t, sb, spec)
			checkReason(t, res, sandbox.ReasonTimeout)
			wall := res.EndedAt.Sub(res.StartedAt).Seconds()
			t.Logf("%s: wall %.3fs, cpu %.3fs, detail %q", mode.name, wall, res.CPUSeconds, res.Detail)
			if wall < 1.3 || wall > 3 {
				t.Errorf("ran %.3fs of wall-clock time, want about 1.5s", wall)
			}
			if res.CPUSeconds < 0.2 {
				t.Errorf("CPU seconds = %.3f, want the spinner's time accounted", res.CPUSeconds)
			}
			if mode.cgroups && res.CPUSeconds > 0.5*wall+0.15 {
				t.Errorf("CPU seconds = %.3f in %.3fs at 0.5 core, want at most %.3f",
					res.CPUSeconds, wall, 0.5*wall+0.15)
			}
		})
	}
}

func TestMemoryLimit(t *testing.T) {
	t.Parallel()
	requirePython(t)
	const balloon = "b = []\nwhile True:\n    b.append(b'x' * (1 << 20))\n"
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			sb := mode.sandbox(t)
			spec := newSpec(t, newWorkspace(t), "python3", "-c", balloon)
			spec.Limits.MemoryBytes = 64 << 20
			res := run(t, sb, spec)
			t.Logf("%s: reason %s, exit %d, peak %d MiB, detail %q", mode.name, res.Reason, res.ExitCode,
				res.PeakMemory>>20, res.Detail)
			if mode.cgroups {
				checkReason(t, res, sandbox.ReasonOOM)
				if res.PeakMemory < 32<<20 || res.PeakMemory > 80<<20 {
					t.Errorf("peak memory = %d MiB, want near the 64 MiB limit", res.PeakMemory>>20)
				}
			} else if res.Reason != sandbox.ReasonExited || res.ExitCode == 0 {
				t.Errorf("rlimit mode: reason %q exit %d, want a failed exit", res.Reason, res.ExitCode)
			}
			if !strings.Contains(res.Detail, "64 MiB") {
				t.Errorf("detail = %q, want it to name the 64 MiB limit", res.Detail)
			}
		})
	}
}

func TestForkBombIsContained(t *testing.T) {
	t.Parallel()
	for _, mode := range testModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			sb := mode.sandbox(t)
			if !sb.Capabilities().UserIsolation && !sb.Capabilities().CgroupLimits {
				skipOrFail(t, "a fork bomb is only contained with cgroups or a uid of its own")
			}
			requirePython(t)
			// Every process forks forever and shrugs off failures.
			const bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
			marker := "bomb" + randomID(t)
			spec := newSpec(t, newWorkspace(t), "python3", "-c", bomb, marker)
			spec.Limits.MaxProcs = 32
			spec.Limits.Duration = 2 * time.Second
			spec.Deadline = time.Now().Add(spec.Limits.Duration)

			var worst atomic.Int64 // the test process's worst scheduling delay
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				for ctx.Err() == nil {
					t0 := time.Now()
					time.Sleep(10 * time.Millisecond)
					if d := int64(time.Since(t0) - 10*time.Millisecond); d > worst.Load() {
						worst.Store(d)
					}
				}
			}()
			h := start(t, sb, spec)
			res := wait(t, h)
			cancel()
			checkReason(t, res, sandbox.ReasonTimeout)
			t.Logf("%s: worst delay of the test process %v, cpu %.2fs", mode.name, time.Duration(worst.Load()), res.CPUSeconds)
			if d := time.Duration(worst.Load()); d > time.Second {
				t.Errorf("the test process stalled for %v during the fork bomb", d)
			}
			waitGone(t, marker)
			if g := h.(*handle).group; g != nil && g.exists() {
				t.Errorf("cgroup %v still exists", g.unique())
			}
		})
	}
}

func TestNothingOutlivesTheAgent(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name string
		cfg  func(*Config)
	}{
		{"cgroups and namespaces", func(*Config) {}},
		{"process group only", func(c *Config) { c.NoCgroups, c.NoNamespaces = true, true }},
	} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			mode.cfg(&cfg)
			sb := newSandbox(t, cfg)
			marker := "left" + randomID(t)
			// The background shell keeps running after the agent exits.
			res := run(t, sb, newSpec(t, newWorkspace(t), "sh", "-c",
				"sh -c 'sleep 30; : "+marker+"' & echo started"))
			checkReason(t, res, sandbox.ReasonExited)
			waitGone(t, marker)
		})
	}
}

func TestNprocLimit(t *testing.T) {
	t.Parallel()
	if got := nprocLimit(testUIDBase, 32); got != 32 {
		t.Errorf("own uid: %d, want exactly the limit", got)
	}
	got := nprocLimit(-1, 32)
	switch {
	case os.Getuid() == 0 && got != 0:
		t.Errorf("shared root uid: %d, want none (the kernel ignores it for root)", got)
	case os.Getuid() != 0 && got <= 32:
		t.Errorf("shared uid: %d, want the uid's current tasks on top of 32", got)
	}
	if n := countTasks(os.Getuid()); n < 1 {
		t.Errorf("countTasks(own uid) = %d, want at least this process", n)
	}
}
