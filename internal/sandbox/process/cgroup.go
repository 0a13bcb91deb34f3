//go:build linux

package process

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Controller names as keys of cgroupTree.parents and execGroup.dirs. On a
// cgroup v2 host everything lives in one directory, keyed ctrlV2.
const (
	ctrlV2      = ""
	ctrlMemory  = "memory"
	ctrlCPU     = "cpu"
	ctrlCPUAcct = "cpuacct"
	ctrlPids    = "pids"
	ctrlFreezer = "freezer"
	ctrlUnified = "unified" // the cgroup2 mount of a hybrid v1 host: kill and events only
)

// v1Required are the cgroup v1 controllers without which limits cannot be
// enforced; v1Optional improve accounting and killing when present.
var (
	v1Required = []string{ctrlMemory, ctrlCPU, ctrlPids}
	v1Optional = []string{ctrlCPUAcct, ctrlFreezer}
	v2Needed   = []string{"memory", "cpu", "pids"}
)

// cgroupTree is this instance's place in the host's cgroup hierarchy:
// <root>/bpagents-<InstanceID> (per controller on cgroup v1).
type cgroupTree struct {
	v2 bool
	// parents maps a controller to this instance's directory under it.
	// Co-mounted v1 controllers (cpu,cpuacct) map to the same directory.
	parents map[string]string
}

// detectCgroups finds the cgroup layout under root. It only looks; it
// creates nothing.
func detectCgroups(root, instanceID string) (*cgroupTree, error) {
	name := "bpagents-" + instanceID
	if fileExists(filepath.Join(root, "cgroup.controllers")) {
		return &cgroupTree{v2: true, parents: map[string]string{ctrlV2: filepath.Join(root, name)}}, nil
	}
	t := &cgroupTree{parents: map[string]string{}}
	for _, c := range slices.Concat(v1Required, v1Optional) {
		dir := filepath.Join(root, c)
		if !fileExists(filepath.Join(dir, "cgroup.procs")) {
			if slices.Contains(v1Required, c) {
				return nil, fmt.Errorf("cgroup v1 controller %q not mounted under %s", c, root)
			}
			continue
		}
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			dir = real // cpu -> cpu,cpuacct: one directory for both
		}
		t.parents[c] = filepath.Join(dir, name)
	}
	if !fileExists(filepath.Join(t.parents[ctrlMemory], "..", "memory.limit_in_bytes")) {
		return nil, fmt.Errorf("no cgroup v2 (cgroup.controllers) or v1 memory controller under %s", root)
	}
	unified := filepath.Join(root, "unified")
	if fileExists(filepath.Join(unified, "cgroup.controllers")) {
		t.parents[ctrlUnified] = filepath.Join(unified, name)
	}
	return t, nil
}

// describe names the layout for Capabilities.
func (t *cgroupTree) describe() string {
	if t.v2 {
		return "cgroup v2 (memory, cpu, pids; cgroup.kill)"
	}
	var have []string
	for c := range t.parents {
		if c != ctrlUnified {
			have = append(have, c)
		}
	}
	slices.Sort(have)
	s := "cgroup v1 (" + strings.Join(have, ", ") + ")"
	if _, ok := t.parents[ctrlUnified]; ok {
		s += " with the hybrid cgroup2 mount for cgroup.kill"
	}
	return s
}

// ensureParents creates this instance's parent directories and, on cgroup
// v2, delegates the needed controllers to them.
func (t *cgroupTree) ensureParents() error {
	for _, dir := range uniqueDirs(t.parents) {
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create cgroup: %w", err)
		}
	}
	if !t.v2 {
		return nil
	}
	parent := t.parents[ctrlV2]
	if err := enableControllers(filepath.Dir(parent)); err != nil {
		return err
	}
	return enableControllers(parent)
}

// enableControllers turns on v2Needed in dir's cgroup.subtree_control.
func enableControllers(dir string) error {
	have, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	fields := strings.Fields(string(have))
	for _, c := range v2Needed {
		if slices.Contains(fields, c) {
			continue
		}
		if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+"+c); err != nil {
			return fmt.Errorf("enable cgroup controller %s: %w", c, err)
		}
	}
	return nil
}

// group returns the (possibly not yet existing) group of an execution.
func (t *cgroupTree) group(id string) *execGroup {
	g := &execGroup{v2: t.v2, dirs: make(map[string]string, len(t.parents))}
	for c, p := range t.parents {
		g.dirs[c] = filepath.Join(p, id)
	}
	return g
}

// create makes the group of an execution, ready for limits and processes.
func (t *cgroupTree) create(id string) (*execGroup, error) {
	g := t.group(id)
	for _, dir := range g.unique() {
		if err := os.Mkdir(dir, 0o755); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				// The parent vanished (another process cleaned up): retry once.
				if err := t.ensureParents(); err == nil {
					err = os.Mkdir(dir, 0o755)
				}
			}
			if err != nil && !errors.Is(err, fs.ErrExist) {
				g.remove(context.Background())
				return nil, fmt.Errorf("create cgroup: %w", err)
			}
		}
	}
	return g, nil
}

// list returns the names of the execution groups that exist under any of
// this instance's parents.
func (t *cgroupTree) list() ([]string, error) {
	seen := map[string]bool{}
	for _, p := range uniqueDirs(t.parents) {
		entries, err := os.ReadDir(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list cgroups: %w", err)
		}
		for _, e := range entries {
			if e.IsDir() {
				seen[e.Name()] = true
			}
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

// removeParents removes this instance's parent directories if they are empty.
func (t *cgroupTree) removeParents() {
	for _, dir := range uniqueDirs(t.parents) {
		os.Remove(dir) // fails while executions still exist, which is fine
	}
}

// uniqueDirs returns the distinct values of m, sorted.
func uniqueDirs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, d := range m {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// writeFile writes one value to a cgroup (or other kernel) file.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// sleepCtx sleeps for d or until ctx is done, and reports whether ctx is
// still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
