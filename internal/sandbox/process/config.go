//go:build linux

package process

import (
	"errors"
	"fmt"
	"path/filepath"
)

// DefaultMaxProcs is the process limit when neither the spec nor the Config
// sets one.
const DefaultMaxProcs = 128

// minProcs is the lowest process limit applied: the init helper is a Go
// program that briefly needs a few threads of its own inside the limits
// before it execs the agent.
const minProcs = 16

// maxUID bounds per-agent uids below the kernel's "no uid" value.
const maxUID = 1<<31 - 1

// Config configures the process backend.
type Config struct {
	// InstanceID names this system instance. Cgroups are created under
	// bpagents-<InstanceID> and pid files under <StateDir>/process-<InstanceID>,
	// so two instances on one host never touch each other's sandboxes and a
	// restarted instance finds its own orphans. Letters, digits, '.', '_', '-'.
	InstanceID string
	// StateDir is a directory the backend may use for pid files. Empty
	// disables pid files: orphans are then found through cgroups only.
	StateDir string
	// UIDBase, when > 0 and running as root, makes each agent run as
	// uid = gid = UIDBase + spec.AgentNum. 0 disables per-agent users.
	UIDBase int
	// MaxProcs is the process (and thread) limit when spec.Limits.MaxProcs
	// is 0; 0 means DefaultMaxProcs.
	MaxProcs int64
	// CgroupRoot overrides the cgroup mount point (default /sys/fs/cgroup).
	CgroupRoot string
	// SelfExe is the binary re-executed as the init helper; its main must
	// call MaybeRunInit first. Default /proc/self/exe.
	SelfExe string
	// NoCgroups forces the rlimit fallback even where cgroups would work.
	NoCgroups bool
	// NoNamespaces runs agents without PID/mount/IPC/UTS namespaces even
	// as root.
	NoNamespaces bool
}

// withDefaults returns c with empty fields filled in.
func (c Config) withDefaults() Config {
	if c.MaxProcs == 0 {
		c.MaxProcs = DefaultMaxProcs
	}
	if c.CgroupRoot == "" {
		c.CgroupRoot = "/sys/fs/cgroup"
	}
	if c.SelfExe == "" {
		c.SelfExe = "/proc/self/exe"
	}
	return c
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if err := checkName("InstanceID", c.InstanceID); err != nil {
		return err
	}
	if c.StateDir != "" && !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("StateDir %q: must be an absolute path", c.StateDir)
	}
	if c.UIDBase < 0 || c.UIDBase > maxUID {
		return fmt.Errorf("UIDBase %d: must be between 0 and %d", c.UIDBase, maxUID)
	}
	if c.MaxProcs < 0 {
		return fmt.Errorf("MaxProcs %d: must not be negative", c.MaxProcs)
	}
	if c.CgroupRoot != "" && !filepath.IsAbs(c.CgroupRoot) {
		return fmt.Errorf("CgroupRoot %q: must be an absolute path", c.CgroupRoot)
	}
	return nil
}

// checkName accepts names that are safe as a single path component.
func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > 128 {
		return fmt.Errorf("%s %q: longer than 128 bytes", what, s)
	}
	if s[0] == '.' {
		return fmt.Errorf("%s %q: must not start with '.'", what, s)
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '.' || r == '_' || r == '-'
		if !ok {
			return fmt.Errorf("%s %q: only letters, digits, '.', '_' and '-' are allowed", what, s)
		}
	}
	return nil
}

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("process sandbox: closed")
