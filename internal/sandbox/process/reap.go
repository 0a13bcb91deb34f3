//go:build linux

package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pidRecord is the pid file of one execution: enough to find its processes
// after a crash and to be sure a reused pid is never mistaken for them.
type pidRecord struct {
	ExecutionID string `json:"execution_id"`
	PID         int    `json:"pid"`
	StartTicks  uint64 `json:"start_ticks"` // /proc/<pid>/stat field 22
	BootID      string `json:"boot_id"`
	Namespaced  bool   `json:"namespaced"` // pid is a PID namespace's init
}

func (s *Sandbox) pidFile(id string) string { return filepath.Join(s.stateDir, id+".json") }

// writePidFile records a started execution; failure only costs the ability
// to reap it after a crash, so it is logged, not returned.
func (s *Sandbox) writePidFile(id string, pid int) {
	if s.stateDir == "" {
		return
	}
	start, err := procStartTicks(pid)
	if err == nil {
		var data []byte
		data, err = json.Marshal(pidRecord{ExecutionID: id, PID: pid, StartTicks: start, BootID: s.bootID, Namespaced: s.ns})
		if err == nil {
			err = os.WriteFile(s.pidFile(id), data, 0o600)
		}
	}
	if err != nil {
		s.log.Warn("cannot write sandbox pid file", "execution_id", id, "err", err)
	}
}

func (s *Sandbox) removePidFile(id string) {
	if s.stateDir != "" {
		os.Remove(s.pidFile(id))
	}
}

// ReapOrphans implements sandbox.ExecutionSandbox: it kills and removes
// every sandbox of this InstanceID that this Sandbox value did not start —
// cgroups, and pid files whose process still has the recorded start time —
// and returns their execution ids.
func (s *Sandbox) ReapOrphans(ctx context.Context) ([]string, error) {
	found := map[string]bool{}
	var errs []error
	if s.reapTree != nil {
		names, err := s.reapTree.list()
		errs = append(errs, err)
		for _, name := range names {
			if s.isActive(name) {
				continue
			}
			g := s.reapTree.group(name)
			errs = append(errs, g.kill(ctx), g.remove(ctx))
			if !strings.HasPrefix(name, ".") { // probes are not executions
				found[name] = true
			}
		}
	}
	if s.stateDir != "" {
		ids, err := s.reapPidFiles(ctx)
		errs = append(errs, err)
		for _, id := range ids {
			found[id] = true
		}
	}
	ids := make([]string, 0, len(found))
	for id := range found {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(ids) > 0 {
		s.log.Info("reaped orphaned sandboxes", "count", len(ids), "execution_ids", ids)
	}
	if err := errors.Join(errs...); err != nil {
		return ids, fmt.Errorf("process sandbox: reap orphans: %w", err)
	}
	return ids, nil
}

// reapPidFiles kills the live processes recorded in pid files not owned by
// a running execution and removes the files.
func (s *Sandbox) reapPidFiles(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(s.stateDir)
	if err != nil {
		return nil, fmt.Errorf("read state dir: %w", err)
	}
	var ids []string
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || s.isActive(id) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.stateDir, e.Name()))
		var rec pidRecord
		if err == nil && json.Unmarshal(data, &rec) == nil && rec.ExecutionID == id {
			s.killRecorded(ctx, rec)
		}
		if err := os.Remove(filepath.Join(s.stateDir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return ids, fmt.Errorf("remove pid file: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// killRecorded kills the process of rec if it is still the same process
// (same boot, same start time) and waits briefly for it to go.
func (s *Sandbox) killRecorded(ctx context.Context, rec pidRecord) {
	same := func() bool {
		st, err := procStartTicks(rec.PID)
		return err == nil && st == rec.StartTicks && rec.BootID == s.bootID && !procZombie(rec.PID)
	}
	if rec.PID <= 1 || !same() {
		return
	}
	// The group id stays reserved while its leader lives, so it is safe to
	// signal; a namespace's init takes the whole namespace with it.
	syscall.Kill(-rec.PID, syscall.SIGKILL)
	syscall.Kill(rec.PID, syscall.SIGKILL)
	for range 200 {
		if !same() || !sleepCtx(ctx, 5*time.Millisecond) {
			return
		}
	}
	s.log.Warn("orphaned sandbox process did not die", "execution_id", rec.ExecutionID, "pid", rec.PID)
}

// procStartTicks reads a process's start time in clock ticks since boot.
func procStartTicks(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	f := statFields(string(data))
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func procZombie(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := statFields(string(data))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}
