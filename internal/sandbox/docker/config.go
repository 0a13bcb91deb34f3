package docker

import (
	"errors"
	"fmt"
	"path/filepath"
)

// Labels on every container (and on the networks it creates).
const (
	LabelInstance  = "org.bpagents.instance"
	LabelExecution = "org.bpagents.execution"
	LabelAgent     = "org.bpagents.agent"
	LabelManaged   = "org.bpagents.managed"
)

// Defaults.
const (
	DefaultImage      = "bp-agent-runner:latest"
	DefaultMaxProcs   = 128
	DefaultTmpfsBytes = 64 << 20
	// minMemory is the engine's smallest accepted memory limit.
	minMemory = 6 << 20
	// minProcs leaves room for the init process and the runner's shell.
	minProcs = 8
)

// Workdir is where the workspace appears inside a container.
const Workdir = "/workspace"

// Config configures the docker backend.
type Config struct {
	// InstanceID names this system instance. Containers carry it as a label,
	// so that a restarted instance finds and removes its own orphans and never
	// another instance's. Letters, digits, '.', '_', '-'.
	InstanceID string
	// Host is the engine's address; empty means DOCKER_HOST or the local
	// socket. The engine must run on this machine (workspaces are
	// bind-mounted from it).
	Host string
	// Image runs every execution (DefaultImage when empty).
	Image string
	// Network is the dedicated network; empty means bpagents-<InstanceID>.
	Network string
	// TmpfsBytes sizes each container's /tmp (DefaultTmpfsBytes when 0).
	TmpfsBytes int64
	// UIDBase, when > 0 and running as root, runs agent n as
	// uid = gid = UIDBase + n, owner of its workspace (mode 0700). Otherwise
	// agents run as this process's uid and gid, so their files stay the
	// operator's.
	UIDBase int
	// MaxProcs is the pids limit when a Spec sets none (DefaultMaxProcs
	// when 0).
	MaxProcs int64
	// NoFirewall skips the host firewall chain. Containers can then reach
	// every port the host listens on at the network's gateway address.
	NoFirewall bool
	// IPTables is the iptables program (found in /usr/sbin or /sbin when
	// empty).
	IPTables string
}

func (c Config) withDefaults() Config {
	if c.Image == "" {
		c.Image = DefaultImage
	}
	if c.Network == "" {
		c.Network = "bpagents-" + c.InstanceID
	}
	if c.TmpfsBytes == 0 {
		c.TmpfsBytes = DefaultTmpfsBytes
	}
	if c.MaxProcs == 0 {
		c.MaxProcs = DefaultMaxProcs
	}
	return c
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if err := checkName("InstanceID", c.InstanceID, 40); err != nil {
		return err
	}
	if c.Network != "" {
		if err := checkName("Network", c.Network, 64); err != nil {
			return err
		}
	}
	if c.TmpfsBytes < 0 {
		return fmt.Errorf("TmpfsBytes %d: must not be negative", c.TmpfsBytes)
	}
	if c.UIDBase < 0 || c.UIDBase > 1<<30 {
		return fmt.Errorf("UIDBase %d: must be between 0 and 2^30", c.UIDBase)
	}
	if c.MaxProcs < 0 {
		return fmt.Errorf("MaxProcs %d: must not be negative", c.MaxProcs)
	}
	if c.IPTables != "" && !filepath.IsAbs(c.IPTables) {
		return fmt.Errorf("IPTables %q: must be an absolute path", c.IPTables)
	}
	return nil
}

// checkName accepts names that are safe as a container name part, label
// value and path component.
func checkName(what, s string, maxLen int) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > maxLen {
		return fmt.Errorf("%s %q: longer than %d bytes", what, s, maxLen)
	}
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || r != '.' && r != '_' && r != '-') {
			return fmt.Errorf("%s %q: only letters, digits, '.', '_' and '-' (not first) are allowed", what, s)
		}
	}
	return nil
}

// Errors that tell why the engine cannot be used.
var (
	// ErrEngineUnavailable: the engine did not answer a ping.
	ErrEngineUnavailable = errors.New("docker engine unavailable")
	// ErrImageMissing: the engine has no image of that name.
	ErrImageMissing = errors.New("docker image missing")
	// ErrClosed is returned by Start after Close.
	ErrClosed = errors.New("docker sandbox: closed")
)
