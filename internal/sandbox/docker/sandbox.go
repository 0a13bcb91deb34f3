package docker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"github.com/bpagents/bpagents/internal/sandbox"
)

// teardownTimeout bounds removing the firewall and the network on Close.
const teardownTimeout = 30 * time.Second

// Sandbox is the docker backend. It is safe for concurrent use.
type Sandbox struct {
	cfg  Config
	cli  *client.Client
	log  *slog.Logger
	caps sandbox.Capabilities

	net      sandboxNet
	fw       *firewall   // nil with NoFirewall
	acct     *accounting // nil: usage sampled from the stats API
	ncpu     int
	perAgent bool // uid = UIDBase + AgentNum, else uid/gid below
	uid, gid int
	entry    []string // the image's entrypoint, for the description

	mu       sync.Mutex
	active   map[string]*handle
	closed   bool
	tornDown bool
}

var (
	_ sandbox.ExecutionSandbox = (*Sandbox)(nil)
	_ sandbox.AgentNetwork     = (*Sandbox)(nil)
)

// New connects to the engine, checks it answers and holds the image, sets
// up the instance's network and firewall chain, and returns the backend.
// Executions cannot reach the system API until AllowAPI is called.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (sb *Sandbox, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("docker sandbox: %w", err)
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cli, err := NewClient(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("docker sandbox: %w", err)
	}
	s := &Sandbox{cfg: cfg, cli: cli, log: logger.With("sandbox", "docker", "instance", cfg.InstanceID),
		active: map[string]*handle{}}
	defer func() {
		if err != nil {
			s.teardown()
		}
	}()
	if err := probe(ctx, cli, cfg.Image); err != nil {
		return nil, fmt.Errorf("docker sandbox: %w", err)
	}
	img, err := cli.ImageInspect(ctx, cfg.Image)
	if err != nil {
		return nil, fmt.Errorf("docker sandbox: inspect image: %w", err)
	}
	if img.Config != nil {
		s.entry = img.Config.Entrypoint
	}
	info, err := cli.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("docker sandbox: engine info: %w", err)
	}
	s.ncpu = max(info.NCPU, 1)
	if err := s.chooseIdentity(); err != nil {
		return nil, fmt.Errorf("docker sandbox: %w", err)
	}
	acctNote := ""
	if strings.HasPrefix(cli.DaemonHost(), "unix://") {
		s.acct, err = newAccounting(cfg.InstanceID, info.CgroupDriver, info.CgroupVersion)
	} else {
		err = fmt.Errorf("the engine at %s is not reached through a local socket", cli.DaemonHost())
	}
	if err != nil {
		acctNote = err.Error()
		s.log.Warn("CPU and memory accounting falls back to the stats API", "reason", err)
	}
	if s.net, err = ensureNetwork(ctx, cli, cfg.Network, cfg.InstanceID); err != nil {
		return nil, fmt.Errorf("docker sandbox: %w", err)
	}
	if _, err := net.InterfaceByName(s.net.Bridge); err != nil {
		return nil, fmt.Errorf("docker sandbox: the bridge %s of network %s is not on this machine "+
			"(the engine must run here): %w", s.net.Bridge, s.net.Name, err)
	}
	if !cfg.NoFirewall {
		if s.fw, err = newFirewall(ctx, cfg.IPTables, cfg.InstanceID, s.net.Bridge, s.net.Gateway); err != nil {
			return nil, fmt.Errorf("docker sandbox: %w", err)
		}
	}
	s.caps = s.describe(info.ServerVersion, acctNote)
	s.log.Info("docker sandbox ready", "description", s.caps.Description)
	return s, nil
}

// chooseIdentity decides the uid agents run as: their own as root, this
// process's otherwise. Never root.
func (s *Sandbox) chooseIdentity() error {
	if os.Geteuid() == 0 {
		if s.cfg.UIDBase <= 0 {
			return fmt.Errorf("UIDBase must be positive when running as root: agents never run as root")
		}
		s.perAgent = true
		return nil
	}
	s.uid, s.gid = os.Getuid(), os.Getgid()
	return nil
}

func (s *Sandbox) describe(version, acctNote string) sandbox.Capabilities {
	c := sandbox.Capabilities{
		Namespaces:       true,
		CgroupLimits:     true,
		UserIsolation:    s.perAgent,
		NetworkIsolation: s.fw != nil,
	}
	parts := []string{
		fmt.Sprintf("engine %s, image %s (entrypoint %s)", version, s.cfg.Image, strings.Join(s.entry, " ")),
		"memory (no swap), CPU and pids limits; read-only root, /workspace bind-mounted, " +
			fmt.Sprintf("%d MiB tmpfs /tmp; no capabilities, no-new-privileges", s.cfg.TmpfsBytes>>20),
	}
	if s.perAgent {
		parts = append(parts, fmt.Sprintf("each agent runs as uid=gid=%d+AgentNum owning its 0700 workspace", s.cfg.UIDBase))
	} else {
		parts = append(parts, fmt.Sprintf("agents run as uid %d gid %d (not root: no per-agent users)", s.uid, s.gid))
	}
	parts = append(parts, fmt.Sprintf("network %s (internal, no inter-container traffic) via bridge %s, API host %s",
		s.net.Name, s.net.Bridge, s.net.Gateway))
	if s.fw != nil {
		parts = append(parts, "host firewall chain "+s.fw.chain+" rejects everything from the network but the API's port")
	} else {
		parts = append(parts, "NO host firewall: containers reach every port the host listens on at "+s.net.Gateway.String())
	}
	if s.acct != nil {
		parts = append(parts, "CPU and peak memory read exactly from per-execution cgroups")
	} else {
		parts = append(parts, "CPU and peak memory sampled from the stats API once a second ("+acctNote+")")
	}
	c.Description = "docker sandbox: " + strings.Join(parts, "; ")
	return c
}

// Name implements sandbox.ExecutionSandbox.
func (s *Sandbox) Name() string { return "docker" }

// Capabilities implements sandbox.ExecutionSandbox.
func (s *Sandbox) Capabilities() sandbox.Capabilities { return s.caps }

// APIHost implements sandbox.AgentNetwork: the host's address on the
// sandbox network.
func (s *Sandbox) APIHost() string { return s.net.Gateway.String() }

// AllowAPI implements sandbox.AgentNetwork: executions may reach
// APIHost():port, and still nothing else.
func (s *Sandbox) AllowAPI(ctx context.Context, port int) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("docker sandbox: API port %d out of range", port)
	}
	if s.fw == nil {
		return nil
	}
	if err := s.fw.allow(ctx, port); err != nil {
		return fmt.Errorf("docker sandbox: %w", err)
	}
	s.log.Info("sandbox network may reach the API", "firewall", s.fw.describe())
	return nil
}

// Close stops new executions. When none runs it removes the firewall chain,
// the network and the cgroup parent; otherwise the last execution to end
// does. Running executions are not touched.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	s.closed = true
	idle := len(s.active) == 0
	s.mu.Unlock()
	if idle {
		return s.teardown()
	}
	return nil
}

// teardown removes what New set up, once, and closes the engine client.
// The network goes before the firewall, so no container is ever on it
// unprotected; a network that cannot go keeps its firewall.
func (s *Sandbox) teardown() error {
	s.mu.Lock()
	if s.tornDown {
		s.mu.Unlock()
		return nil
	}
	s.tornDown = true
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), teardownTimeout)
	defer cancel()
	if s.net.ID != "" {
		if err := removeNetwork(ctx, s.cli, s.net); err != nil {
			s.log.Warn("sandbox network kept, and its firewall chain with it", "err", err)
			s.cli.Close()
			return fmt.Errorf("docker sandbox: %w", err)
		}
	}
	if s.fw != nil {
		if err := s.fw.remove(ctx); err != nil {
			return fmt.Errorf("docker sandbox: %w", err)
		}
	}
	if s.acct != nil {
		s.acct.removeParent()
	}
	return s.cli.Close()
}

// register reserves an execution id for a starting execution.
func (s *Sandbox) register(id string, h *handle) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if _, ok := s.active[id]; ok {
		return fmt.Errorf("execution %s is already running", id)
	}
	s.active[id] = h
	return nil
}

// unregister forgets a finished execution; the last one to finish after
// Close tears down what Close had to leave.
func (s *Sandbox) unregister(id string) {
	s.mu.Lock()
	delete(s.active, id)
	last := s.closed && len(s.active) == 0
	s.mu.Unlock()
	if last {
		if err := s.teardown(); err != nil {
			s.log.Warn("sandbox teardown after the last execution", "err", err)
		}
	}
}

func (s *Sandbox) isActive(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.active[id]
	return ok
}
