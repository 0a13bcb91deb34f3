package docker

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// accounting reads an execution's CPU time and peak memory from the cgroup
// files of a parent cgroup the container is created under
// (<parent>/<execution id>/<container id>). The parent outlives the
// container, and the kernel charges its usage to every ancestor, so after
// the container has exited the parent still holds the whole execution's
// CPU time and memory high-water mark, exactly; the stats API, by contrast,
// samples once a second and stops with the container. It needs an engine on
// this machine using the cgroupfs driver.
type accounting struct {
	parent string // "/bpagents-docker-<instance>"
	v2     bool
	cpu    string   // cgroup v1 cpuacct mount, or the v2 root
	memory string   // cgroup v1 memory mount, or the v2 root
	all    []string // every cgroup mount, where the engine creates directories
}

// usage is what a cgroup accounted.
type usage struct {
	cpuSeconds float64
	peak       int64 // bytes; 0 when the kernel keeps no high-water mark
	current    int64 // bytes
	oomKills   int64 // processes the kernel's OOM killer took, in the whole tree
}

// newAccounting finds the cgroup mounts for an engine with the given cgroup
// driver and version; it returns an error saying why accounting cannot work.
func newAccounting(instance, driver, version string) (*accounting, error) {
	if driver != "cgroupfs" {
		return nil, fmt.Errorf("the engine's cgroup driver is %q, not cgroupfs", driver)
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	a := &accounting{parent: "/bpagents-docker-" + instance, v2: version == "2"}
	for line := range strings.Lines(string(data)) {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 || f[3] != "/" {
			continue
		}
		mp := f[4]
		switch g[0] {
		case "cgroup2":
			a.all = append(a.all, mp)
			if a.v2 && mp == "/sys/fs/cgroup" {
				a.cpu, a.memory = mp, mp
			}
		case "cgroup":
			a.all = append(a.all, mp)
			for _, opt := range strings.Split(g[2], ",") {
				switch {
				case opt == "cpuacct" && !a.v2:
					a.cpu = mp
				case opt == "memory" && !a.v2:
					a.memory = mp
				}
			}
		}
	}
	if a.cpu == "" || a.memory == "" {
		return nil, fmt.Errorf("no cgroup v%s cpu and memory accounting mounted here", version)
	}
	return a, nil
}

// cgroupParent is the parent an execution's container is created under.
func (a *accounting) cgroupParent(execID string) string { return a.parent + "/" + execID }

// read returns the execution's usage so far (or in total, once its
// container has exited).
func (a *accounting) read(execID string) (usage, error) {
	rel := a.cgroupParent(execID)
	var u usage
	if a.v2 {
		dir := filepath.Join(a.cpu, rel)
		stat, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
		if err != nil {
			return u, err
		}
		for line := range strings.Lines(string(stat)) {
			if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
				us, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				u.cpuSeconds = float64(us) / 1e6
			}
		}
		u.peak, _ = readInt(filepath.Join(dir, "memory.peak")) // kernels before 5.19 keep none
		u.current, _ = readInt(filepath.Join(dir, "memory.current"))
		u.oomKills = readKey(filepath.Join(dir, "memory.events"), "oom_kill")
		return u, nil
	}
	ns, err := readInt(filepath.Join(a.cpu, rel, "cpuacct.usage"))
	if err != nil {
		return u, err
	}
	u.cpuSeconds = float64(ns) / 1e9
	u.peak, _ = readInt(filepath.Join(a.memory, rel, "memory.max_usage_in_bytes"))
	u.current, _ = readInt(filepath.Join(a.memory, rel, "memory.usage_in_bytes"))
	// The kernel counts OOM kills up the hierarchy, so the parent knows of
	// kills in the container's own cgroup even after it is gone.
	u.oomKills = readKey(filepath.Join(a.memory, rel, "memory.oom_control"), "oom_kill")
	return u, nil
}

func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}

// readKey reads the value of "key value" line in a cgroup file, 0 if absent.
func readKey(path, key string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// remove deletes an execution's parent cgroups in every hierarchy, once
// the engine has removed the container's own; it retries briefly while the
// kernel still holds them.
func (a *accounting) remove(execID string) error {
	var errs []error
	for _, mp := range a.all {
		errs = append(errs, removeTree(filepath.Join(mp, a.cgroupParent(execID))))
	}
	return errors.Join(errs...)
}

// executions lists the execution ids that have a parent cgroup.
func (a *accounting) executions() []string {
	seen := map[string]bool{}
	var ids []string
	for _, mp := range a.all {
		entries, _ := os.ReadDir(filepath.Join(mp, a.parent))
		for _, e := range entries {
			if e.IsDir() && !seen[e.Name()] {
				seen[e.Name()] = true
				ids = append(ids, e.Name())
			}
		}
	}
	return ids
}

// removeParent deletes the instance's top cgroup where it is empty.
func (a *accounting) removeParent() {
	for _, mp := range a.all {
		os.Remove(filepath.Join(mp, a.parent))
	}
}

// removeTree removes an empty cgroup directory tree, children first
// (cgroup directories are removed with rmdir, never their files).
func removeTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	for i := 0; ; i++ {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if i == 50 {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
