//go:build linux

package process

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// These tests run the cgroup code against a plain directory laid out like
// a cgroup mount, to cover the layout this host does not have.

func fakeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, path, content, 0o644)
}

func readFake(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func TestCgroupV2Layout(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	fakeFile(t, filepath.Join(root, "cgroup.controllers"), "cpuset cpu io memory pids")
	fakeFile(t, filepath.Join(root, "cgroup.subtree_control"), "memory")
	tree, err := detectCgroups(root, "inst")
	if err != nil || !tree.v2 {
		t.Fatalf("detect = %+v, %v; want cgroup v2", tree, err)
	}
	if err := tree.ensureParents(); err != nil {
		t.Fatal(err)
	}
	// A real cgroupfs takes one "+ctrl" per write; the fake keeps the last.
	if got := readFake(t, filepath.Join(root, "cgroup.subtree_control")); got != "+pids" {
		t.Errorf("root subtree_control = %q", got)
	}
	g, err := tree.create("ex_1")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "bpagents-inst", "ex_1")
	fakeFile(t, filepath.Join(dir, "memory.swap.max"), "max")
	if err := g.setLimits(groupLimits{memory: 64 << 20, cpuMillis: 500, procs: 32}); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"memory.max": "67108864", "memory.swap.max": "0", "cpu.max": "50000 100000", "pids.max": "32",
	} {
		if got := readFake(t, filepath.Join(dir, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if fileExists(filepath.Join(dir, "memory.oom.group")) {
		t.Error("wrote memory.oom.group, which this kernel does not have")
	}
	if err := g.add(42); err != nil || readFake(t, filepath.Join(dir, "cgroup.procs")) != "42" {
		t.Errorf("add: %v", err)
	}
	fakeFile(t, filepath.Join(dir, "cpu.stat"), "usage_usec 1500000\nuser_usec 1000000\n")
	fakeFile(t, filepath.Join(dir, "memory.current"), "1048576\n")
	fakeFile(t, filepath.Join(dir, "memory.peak"), "67100000\n")
	fakeFile(t, filepath.Join(dir, "memory.events"), "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
	u := g.usage()
	if u.cpuSeconds != 1.5 || u.memory != 1<<20 || u.peak != 67100000 || u.oomKills != 1 {
		t.Errorf("usage = %+v", u)
	}
	if names, err := tree.list(); err != nil || !slices.Equal(names, []string{"ex_1"}) {
		t.Errorf("list = %v, %v", names, err)
	}
}

func TestCgroupV1Layout(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	fakeFile(t, filepath.Join(root, "memory", "cgroup.procs"), "")
	fakeFile(t, filepath.Join(root, "memory", "memory.limit_in_bytes"), "9223372036854771712")
	fakeFile(t, filepath.Join(root, "cpu,cpuacct", "cgroup.procs"), "")
	fakeFile(t, filepath.Join(root, "pids", "cgroup.procs"), "")
	for _, link := range []string{"cpu", "cpuacct"} {
		if err := os.Symlink("cpu,cpuacct", filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	tree, err := detectCgroups(root, "inst")
	if err != nil || tree.v2 {
		t.Fatalf("detect = %+v, %v; want cgroup v1", tree, err)
	}
	if desc := tree.describe(); !strings.Contains(desc, "cgroup v1") || strings.Contains(desc, "cgroup.kill") {
		t.Errorf("describe = %q", desc)
	}
	if err := tree.ensureParents(); err != nil {
		t.Fatal(err)
	}
	g, err := tree.create("ex_1")
	if err != nil {
		t.Fatalf("create with co-mounted cpu,cpuacct: %v", err)
	}
	if n := len(g.unique()); n != 3 {
		t.Errorf("%d directories for memory, cpu,cpuacct and pids, want 3: %v", n, g.unique())
	}
	mem := filepath.Join(root, "memory", "bpagents-inst", "ex_1")
	fakeFile(t, filepath.Join(mem, "memory.memsw.limit_in_bytes"), "9223372036854771712")
	if err := g.setLimits(groupLimits{memory: 64 << 20, cpuMillis: 2500, procs: 16}); err != nil {
		t.Fatal(err)
	}
	cpu := filepath.Join(root, "cpu,cpuacct", "bpagents-inst", "ex_1")
	for path, want := range map[string]string{
		filepath.Join(mem, "memory.limit_in_bytes"):                      "67108864",
		filepath.Join(mem, "memory.memsw.limit_in_bytes"):                "67108864",
		filepath.Join(cpu, "cpu.cfs_quota_us"):                           "250000",
		filepath.Join(cpu, "cpu.cfs_period_us"):                          "100000",
		filepath.Join(root, "pids", "bpagents-inst", "ex_1", "pids.max"): "16",
	} {
		if got := readFake(t, path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	fakeFile(t, filepath.Join(cpu, "cpuacct.usage"), "2500000000")
	fakeFile(t, filepath.Join(mem, "memory.max_usage_in_bytes"), "1000")
	fakeFile(t, filepath.Join(mem, "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
	if u := g.usage(); u.cpuSeconds != 2.5 || u.peak != 1000 || u.oomKills != 3 {
		t.Errorf("usage = %+v", u)
	}
}

func TestCgroupDetectFailures(t *testing.T) {
	t.Parallel()
	if _, err := detectCgroups(t.TempDir(), "inst"); err == nil {
		t.Error("an empty directory was taken for a cgroup mount")
	}
	root := t.TempDir()
	fakeFile(t, filepath.Join(root, "memory", "cgroup.procs"), "")
	if _, err := detectCgroups(root, "inst"); err == nil || !strings.Contains(err.Error(), "cpu") {
		t.Errorf("missing cpu controller: %v", err)
	}
}
