//go:build linux

package process

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/sandbox"
)

func TestReapOrphans(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name string
		cfg  func(*Config)
		root bool
	}{
		{"cgroups", func(*Config) {}, true},
		{"pid files", func(c *Config) { c.NoCgroups = true }, false},
		{"pid files without namespaces", func(c *Config) { c.NoCgroups, c.NoNamespaces = true, true }, false},
	} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			if mode.root {
				requireRoot(t)
			}
			cfg := testConfig(t)
			mode.cfg(&cfg)
			crashed := newSandbox(t, cfg) // stands for the run that crashed
			if mode.root {
				requireCgroups(t, crashed)
			}
			bystander := startSleeper(t)
			marker := "orphan" + randomID(t)
			spec := newSpec(t, newWorkspace(t), "sh", "-c", "sh -c 'sleep 30; : "+marker+"' & sleep 30")
			h := start(t, crashed, spec)

			fresh := newSandbox(t, cfg) // the restarted instance
			other := testConfig(t)      // another instance must not be touched
			other.StateDir = cfg.StateDir
			if ids, err := newSandbox(t, other).ReapOrphans(context.Background()); err != nil || len(ids) != 0 {
				t.Errorf("another instance reaped %v, %v", ids, err)
			}
			ids, err := fresh.ReapOrphans(context.Background())
			if err != nil || !slices.Equal(ids, []string{spec.ExecutionID}) {
				t.Fatalf("ReapOrphans = %v, %v; want [%s]", ids, err, spec.ExecutionID)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res, err := h.Wait(ctx)
			if err != nil {
				t.Fatalf("the orphan still runs: %v", err)
			}
			if res.Reason != sandbox.ReasonExited || res.ExitCode != 137 {
				t.Errorf("orphan ended %q exit %d (%s), want killed by SIGKILL", res.Reason, res.ExitCode, res.Detail)
			}
			waitGone(t, marker)
			if g := h.(*handle).group; g != nil && g.exists() {
				t.Errorf("cgroup %v still exists", g.unique())
			}
			if ids, err := fresh.ReapOrphans(context.Background()); err != nil || len(ids) != 0 {
				t.Errorf("second ReapOrphans = %v, %v; want nothing", ids, err)
			}
			if err := bystander.Process.Signal(syscall.Signal(0)); err != nil {
				t.Errorf("a process outside the sandbox was harmed: %v", err)
			}
		})
	}
}

// TestReapNeverKillsAReusedPid plants pid files naming live processes that
// are not sandboxes: a start time that does not match, or another boot.
func TestReapNeverKillsAReusedPid(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.NoCgroups = true
	sb := newSandbox(t, cfg)
	victim := startSleeper(t)
	ticks, err := procStartTicks(victim.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	for id, rec := range map[string]pidRecord{
		"ex_reused":    {PID: victim.Process.Pid, StartTicks: ticks + 1, BootID: sb.bootID},
		"ex_old_boot":  {PID: victim.Process.Pid, StartTicks: ticks, BootID: "another-boot"},
		"ex_dead_init": {PID: 1, StartTicks: 1, BootID: sb.bootID},
	} {
		rec.ExecutionID = id
		data, _ := json.Marshal(rec)
		writeTestFile(t, filepath.Join(sb.stateDir, id+".json"), string(data), 0o600)
	}
	writeTestFile(t, filepath.Join(sb.stateDir, "ex_garbage.json"), "not json", 0o600)
	ids, err := sb.ReapOrphans(context.Background())
	want := []string{"ex_dead_init", "ex_garbage", "ex_old_boot", "ex_reused"}
	if err != nil || !slices.Equal(ids, want) {
		t.Errorf("ReapOrphans = %v, %v; want %v", ids, err, want)
	}
	time.Sleep(50 * time.Millisecond)
	if err := victim.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("a reused pid was killed: %v", err)
	}
	if entries, _ := os.ReadDir(sb.stateDir); len(entries) != 0 {
		t.Errorf("pid files left: %v", entries)
	}
}
