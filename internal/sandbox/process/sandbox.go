//go:build linux

package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/sandbox/capture"
)

// Sandbox is the process backend. It is safe for concurrent use.
type Sandbox struct {
	cfg  Config
	log  *slog.Logger
	caps sandbox.Capabilities

	tree     *cgroupTree // nil: limits fall back to rlimits
	reapTree *cgroupTree // where orphans may be, even when tree is nil
	ns       bool        // PID/mount/IPC/UTS namespaces
	uids     bool        // per-agent uids
	stateDir string      // "" disables pid files
	bootID   string

	mu     sync.Mutex
	active map[string]*handle
	closed bool
}

var _ sandbox.ExecutionSandbox = (*Sandbox)(nil)

var probeSeq atomic.Int64

// New probes the host (a real test cgroup, a real namespaced helper) and
// returns a backend that uses what works, reported by Capabilities.
func New(cfg Config, logger *slog.Logger) (*Sandbox, error) {
	if os.Getenv(helperEnvVar) != "" {
		return nil, errors.New("process sandbox: this binary was started as the sandbox init helper " +
			"but its main does not call process.MaybeRunInit first")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("process sandbox: %w", err)
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Sandbox{
		cfg:    cfg,
		log:    logger.With("sandbox", "process", "instance", cfg.InstanceID),
		active: map[string]*handle{},
		bootID: readBootID(),
	}
	if cfg.StateDir != "" {
		s.stateDir = filepath.Join(cfg.StateDir, "process-"+cfg.InstanceID)
		if err := os.MkdirAll(s.stateDir, 0o700); err != nil {
			return nil, fmt.Errorf("process sandbox: state dir: %w", err)
		}
	}
	cgNote := s.probeCgroups()
	idNote, err := s.probeIsolation()
	if err != nil {
		if s.tree != nil {
			s.tree.removeParents()
		}
		return nil, fmt.Errorf("process sandbox: %w", err)
	}
	s.caps = s.describe(cgNote, idNote)
	s.log.Info("process sandbox ready", "description", s.caps.Description)
	return s, nil
}

// probeCgroups sets s.tree when a test cgroup can really be created, given
// limits and removed. It returns a note for the description when not.
func (s *Sandbox) probeCgroups() string {
	if os.Geteuid() != 0 {
		return "no cgroups (not root)"
	}
	tree, err := detectCgroups(s.cfg.CgroupRoot, s.cfg.InstanceID)
	if err != nil {
		s.log.Warn("cgroups unavailable, falling back to rlimits", "err", err)
		return "no cgroups (" + err.Error() + ")"
	}
	s.reapTree = tree
	if s.cfg.NoCgroups {
		return "no cgroups (disabled by configuration)"
	}
	err = tree.ensureParents()
	if err == nil {
		var g *execGroup
		name := fmt.Sprintf(".probe-%d-%d", os.Getpid(), probeSeq.Add(1))
		if g, err = tree.create(name); err == nil {
			err = g.setLimits(groupLimits{memory: 64 << 20, cpuMillis: 500, procs: minProcs})
			if rerr := g.remove(context.Background()); err == nil {
				err = rerr
			}
		}
	}
	if err != nil {
		s.log.Warn("cgroups unusable, falling back to rlimits", "err", err)
		return "no cgroups (" + err.Error() + ")"
	}
	s.tree = tree
	return ""
}

// probeIsolation runs the init helper for real with the isolation this
// host should allow, dropping namespaces and then per-agent uids when they
// fail. It fails only when even a plain helper cannot run.
func (s *Sandbox) probeIsolation() (string, error) {
	root := os.Geteuid() == 0
	ns := root && !s.cfg.NoNamespaces
	uids := root && s.cfg.UIDBase > 0
	var notes []string
	for {
		err := s.runProbe(ns, uids)
		if err == nil {
			s.ns, s.uids = ns, uids
			return strings.Join(notes, "; "), nil
		}
		switch {
		case ns:
			ns = false
			notes = append(notes, "no namespaces ("+err.Error()+")")
		case uids:
			uids = false
			notes = append(notes, "no per-agent uids ("+err.Error()+")")
		default:
			return "", fmt.Errorf("init helper probe: %w", err)
		}
		s.log.Warn("sandbox isolation probe failed, degrading", "err", err)
	}
}

// runProbe starts the helper in probe mode and expects its acknowledgement.
func (s *Sandbox) runProbe(ns, uids bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	outR, outW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("pipe: %w", err)
	}
	defer outR.Close()
	hp, err := s.spawnHelper(ns, outW)
	outW.Close()
	if err != nil {
		return err
	}
	defer hp.status.Close()
	out := capture.New(2048)
	outDone := make(chan struct{})
	go func() { defer close(outDone); copyOutput(out, outR) }()
	cfg := initConfig{Probe: true, Namespaces: ns, Hostname: "probe", UID: -1, GID: -1}
	if uids {
		cfg.UID, cfg.GID = s.cfg.UIDBase, s.cfg.UIDBase
	}
	stop := context.AfterFunc(ctx, func() { hp.proc.Kill() })
	defer stop()
	msg, err := hp.handshake(ctx, cfg)
	if err != nil {
		hp.proc.Kill()
	}
	state, werr := hp.proc.Wait()
	outR.Close()
	<-outDone
	switch {
	case err != nil:
		return err
	case werr != nil:
		return fmt.Errorf("wait for probe: %w", werr)
	case msg != probeOK || !state.Success():
		return fmt.Errorf("probe of %s said %q, %s; output %q", s.cfg.SelfExe, msg, state, out.Bytes())
	}
	return nil
}

// describe builds the Capabilities report.
func (s *Sandbox) describe(cgNote, idNote string) sandbox.Capabilities {
	c := sandbox.Capabilities{
		Namespaces:    s.ns,
		CgroupLimits:  s.tree != nil,
		Rlimits:       s.tree == nil,
		UserIsolation: s.uids,
	}
	var parts []string
	if s.tree != nil {
		parts = append(parts, "limits by "+s.tree.describe()+"; rlimits for core dumps and a CPU-time backstop")
	} else {
		nproc := "per uid, and each agent has its own"
		if !s.uids {
			nproc = "per uid, shared with this process's user, and ignored for root"
		}
		parts = append(parts, cgNote, "limits by rlimits: address space for memory, RLIMIT_NPROC ("+nproc+
			") for processes, CPU time only as a total (no per-core rate)")
		if !s.ns {
			parts = append(parts, "processes that leave the process group may outlive the execution")
		}
	}
	if s.ns {
		parts = append(parts, "PID, mount, IPC and UTS namespaces with a private /proc")
	}
	if s.uids {
		parts = append(parts, fmt.Sprintf("each agent runs as uid=gid=%d+AgentNum in a 0700 workspace", s.cfg.UIDBase))
	} else {
		parts = append(parts, fmt.Sprintf("agents run as uid %d (no per-agent users)", os.Geteuid()))
	}
	if idNote != "" {
		parts = append(parts, idNote)
	}
	parts = append(parts, "no network isolation")
	c.Description = "process sandbox: " + strings.Join(parts, "; ")
	return c
}

// Name implements sandbox.ExecutionSandbox.
func (s *Sandbox) Name() string { return "process" }

// Capabilities implements sandbox.ExecutionSandbox.
func (s *Sandbox) Capabilities() sandbox.Capabilities { return s.caps }

// Close stops new executions and removes this instance's empty parent
// cgroups. Running executions are not touched.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	s.closed = true
	idle := len(s.active) == 0
	s.mu.Unlock()
	if idle && s.tree != nil {
		s.tree.removeParents()
	}
	return nil
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
// Close removes the parent cgroups Close had to leave.
func (s *Sandbox) unregister(id string) {
	s.mu.Lock()
	delete(s.active, id)
	last := s.closed && len(s.active) == 0
	s.mu.Unlock()
	if last && s.tree != nil {
		s.tree.removeParents()
	}
}

func (s *Sandbox) isActive(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.active[id]
	return ok
}

func readBootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}
