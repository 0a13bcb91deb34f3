//go:build linux

package process

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuPeriodUS is the CFS period; the quota is cores × period.
const cpuPeriodUS = 100_000

// groupLimits are the limits written into an execution's cgroup.
type groupLimits struct {
	memory    int64 // bytes; 0 = none
	cpuMillis int64 // thousandths of a core; 0 = none
	procs     int64
}

// groupUsage is what an execution's cgroup accounted.
type groupUsage struct {
	cpuSeconds float64
	hasCPU     bool
	memory     int64 // current
	peak       int64
	hasMemory  bool
	oomKills   int64 // kills by the kernel's OOM killer (v2, v1 on kernels ≥ 4.13)
	failcnt    int64 // v1: times the memory limit was hit
}

// execGroup is the cgroup (one directory per controller on v1) of one
// execution.
type execGroup struct {
	v2   bool
	dirs map[string]string
}

func (g *execGroup) unique() []string { return uniqueDirs(g.dirs) }

// path returns the file name in controller c's directory, or "" when the
// controller is not available.
func (g *execGroup) path(c, name string) string {
	if g.v2 {
		c = ctrlV2
	}
	dir, ok := g.dirs[c]
	if !ok {
		return ""
	}
	return filepath.Join(dir, name)
}

// setLimits writes memory (with swap forbidden), CPU and pids limits.
func (g *execGroup) setLimits(l groupLimits) error {
	var steps [][2]string // file, value; a "?" prefix marks an optional file
	if g.v2 {
		if l.memory > 0 {
			m := strconv.FormatInt(l.memory, 10)
			steps = append(steps, [2]string{"memory.max", m}, [2]string{"?memory.swap.max", "0"},
				[2]string{"?memory.oom.group", "1"})
		}
		if l.cpuMillis > 0 {
			steps = append(steps, [2]string{"cpu.max", fmt.Sprintf("%d %d", cpuQuotaUS(l.cpuMillis), cpuPeriodUS)})
		}
		steps = append(steps, [2]string{"pids.max", strconv.FormatInt(l.procs, 10)})
		return g.apply(ctrlV2, steps)
	}
	if l.memory > 0 {
		m := strconv.FormatInt(l.memory, 10)
		// memsw must be set after, and never below, the memory limit.
		if err := g.apply(ctrlMemory, [][2]string{{"memory.limit_in_bytes", m},
			{"?memory.memsw.limit_in_bytes", m}, {"?memory.swappiness", "0"}}); err != nil {
			return err
		}
	}
	if l.cpuMillis > 0 {
		if err := g.apply(ctrlCPU, [][2]string{{"cpu.cfs_period_us", strconv.Itoa(cpuPeriodUS)},
			{"cpu.cfs_quota_us", strconv.FormatInt(cpuQuotaUS(l.cpuMillis), 10)}}); err != nil {
			return err
		}
	}
	return g.apply(ctrlPids, [][2]string{{"pids.max", strconv.FormatInt(l.procs, 10)}})
}

func (g *execGroup) apply(c string, steps [][2]string) error {
	for _, s := range steps {
		name, optional := strings.CutPrefix(s[0], "?")
		p := g.path(c, name)
		if optional && (p == "" || !fileExists(p)) {
			continue
		}
		if err := writeFile(p, s[1]); err != nil {
			return fmt.Errorf("cgroup limit: %w", err)
		}
	}
	return nil
}

// cpuQuotaUS converts thousandths of a core to a CFS quota per period.
func cpuQuotaUS(millis int64) int64 {
	return max(millis*cpuPeriodUS/1000, 1000) // the kernel's minimum is 1 ms
}

// add moves pid (and so all its future children) into every controller.
func (g *execGroup) add(pid int) error {
	s := strconv.Itoa(pid)
	for _, dir := range g.unique() {
		if err := writeFile(filepath.Join(dir, "cgroup.procs"), s); err != nil {
			return fmt.Errorf("cgroup add: %w", err)
		}
	}
	return nil
}

// procs lists the pids in the group.
func (g *execGroup) procs() ([]int, error) {
	p := g.path(ctrlPids, "cgroup.procs")
	if p == "" {
		p = g.path(ctrlMemory, "cgroup.procs")
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids, nil
}

// kill SIGKILLs every process in the group until it is empty or ctx ends.
// cgroup.kill (v2, or the hybrid cgroup2 mount) does it atomically; without
// it the group is frozen so that a fork bomb cannot outrun the loop.
func (g *execGroup) kill(ctx context.Context) error {
	k := g.path(ctrlUnified, "cgroup.kill")
	if g.v2 {
		k = g.path(ctrlV2, "cgroup.kill")
	}
	if k != "" && fileExists(k) {
		writeFile(k, "1") // best effort; the loop below checks the result
	}
	for round := 0; ; round++ {
		pids, err := g.procs()
		if errors.Is(err, fs.ErrNotExist) || err == nil && len(pids) == 0 {
			return nil
		}
		if err != nil {
			return fmt.Errorf("cgroup kill: %w", err)
		}
		if round > 0 {
			g.freeze(true)
			if pids, err = g.procs(); err != nil {
				pids = nil
			}
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if round > 0 {
			g.freeze(false)
		}
		if !sleepCtx(ctx, time.Duration(min(round+1, 20))*time.Millisecond) {
			return fmt.Errorf("cgroup kill: %w", ctx.Err())
		}
	}
}

// freeze freezes or thaws the group where a freezer is available.
func (g *execGroup) freeze(on bool) {
	if g.v2 {
		writeFile(g.path(ctrlV2, "cgroup.freeze"), map[bool]string{true: "1", false: "0"}[on])
		return
	}
	p := g.path(ctrlFreezer, "freezer.state")
	if p == "" {
		return
	}
	if !on {
		writeFile(p, "THAWED")
		return
	}
	writeFile(p, "FROZEN")
	for range 50 { // FREEZING until every task has stopped
		if s, _ := os.ReadFile(p); strings.TrimSpace(string(s)) != "FREEZING" {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// usage reads the group's CPU and memory accounting.
func (g *execGroup) usage() groupUsage {
	var u groupUsage
	if g.v2 {
		if v, ok := readKeyed(g.path(ctrlV2, "cpu.stat"), "usage_usec"); ok {
			u.cpuSeconds, u.hasCPU = float64(v)/1e6, true
		}
		u.memory, u.hasMemory = readInt(g.path(ctrlV2, "memory.current"))
		if p, ok := readInt(g.path(ctrlV2, "memory.peak")); ok {
			u.peak = p
		}
		u.oomKills, _ = readKeyed(g.path(ctrlV2, "memory.events"), "oom_kill")
		return u
	}
	if v, ok := readInt(g.path(ctrlCPUAcct, "cpuacct.usage")); ok {
		u.cpuSeconds, u.hasCPU = float64(v)/1e9, true
	} else if v, ok := readKeyed(g.path(ctrlUnified, "cpu.stat"), "usage_usec"); ok {
		u.cpuSeconds, u.hasCPU = float64(v)/1e6, true
	}
	u.memory, u.hasMemory = readInt(g.path(ctrlMemory, "memory.usage_in_bytes"))
	u.peak, _ = readInt(g.path(ctrlMemory, "memory.max_usage_in_bytes"))
	u.oomKills, _ = readKeyed(g.path(ctrlMemory, "memory.oom_control"), "oom_kill")
	u.failcnt, _ = readInt(g.path(ctrlMemory, "memory.failcnt"))
	return u
}

// remove deletes the group's directories, waiting while the kernel still
// counts exiting tasks in them.
func (g *execGroup) remove(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for _, dir := range g.unique() {
		for {
			err := os.Remove(dir)
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) && !errors.Is(err, syscall.ENOTEMPTY) {
				return fmt.Errorf("remove cgroup: %w", err)
			}
			if !sleepCtx(ctx, 2*time.Millisecond) {
				return fmt.Errorf("remove cgroup %s: %w", dir, err)
			}
		}
	}
	return nil
}

// exists reports whether any of the group's directories is still there.
func (g *execGroup) exists() bool {
	for _, dir := range g.unique() {
		if fileExists(dir) {
			return true
		}
	}
	return false
}

// readInt reads a file holding one integer ("max" is not an integer).
func readInt(path string) (int64, bool) {
	if path == "" {
		return 0, false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseInt(string(bytes.TrimSpace(data)), 10, 64)
	return v, err == nil
}

// readKeyed reads the value of key from a "key value" per line file.
func readKeyed(path, key string) (int64, bool) {
	if path == "" {
		return 0, false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
