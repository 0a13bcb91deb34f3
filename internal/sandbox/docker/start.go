package docker

import (
	"context"
	"fmt"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/sandbox/ownership"
)

// agentPATH is the PATH agents get.
const agentPATH = "/usr/local/bin:/usr/bin:/bin"

// backstopGrace is how long after the deadline the container's own
// `timeout` kills the agent if this process, which kills it at the
// deadline, has died meanwhile.
const backstopGrace = 5 * time.Second

// plan is everything Start derived from a Spec before talking to the engine.
type plan struct {
	name     string
	uid, gid int
	deadline time.Time
	config   *container.Config
	host     *container.HostConfig
}

// Start implements sandbox.ExecutionSandbox. It returns once the
// container's process is running under its limits.
func (s *Sandbox) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := s.plan(spec)
	if err != nil {
		return nil, fmt.Errorf("docker sandbox: %w", err)
	}
	h := newHandle(s, spec, p)
	if err := s.register(spec.ExecutionID, h); err != nil {
		return nil, fmt.Errorf("docker sandbox: %w", err)
	}
	if err := h.launch(ctx, p); err != nil {
		s.unregister(spec.ExecutionID)
		return nil, fmt.Errorf("docker sandbox: start %s: %w", spec.ExecutionID, err)
	}
	return h, nil
}

// plan validates spec and builds the container's configuration.
func (s *Sandbox) plan(spec sandbox.Spec) (plan, error) {
	if err := checkName("ExecutionID", spec.ExecutionID, 128); err != nil {
		return plan{}, err
	}
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return plan{}, fmt.Errorf("execution %s: empty command", spec.ExecutionID)
	}
	if err := ownership.CheckDir(spec.Workspace); err != nil {
		return plan{}, err
	}
	l := spec.Limits
	if l.CPUMillis < 0 || l.MemoryBytes < 0 || l.Duration < 0 || l.MaxProcs < 0 {
		return plan{}, fmt.Errorf("execution %s: negative limit in %+v", spec.ExecutionID, l)
	}
	env, err := agentEnv(spec)
	if err != nil {
		return plan{}, err
	}
	p := plan{name: "bpagents-" + s.cfg.InstanceID + "-" + spec.ExecutionID, uid: s.uid, gid: s.gid, deadline: spec.Deadline}
	if p.deadline.IsZero() && l.Duration > 0 {
		p.deadline = time.Now().Add(l.Duration)
	}
	if !p.deadline.IsZero() && !time.Now().Before(p.deadline) {
		return plan{}, fmt.Errorf("execution %s: deadline %s has already passed", spec.ExecutionID, p.deadline)
	}
	if s.perAgent {
		uid := int64(s.cfg.UIDBase) + spec.AgentNum
		if spec.AgentNum < 0 || uid > math.MaxInt32 {
			return plan{}, fmt.Errorf("execution %s: AgentNum %d gives no valid uid", spec.ExecutionID, spec.AgentNum)
		}
		p.uid, p.gid = int(uid), int(uid)
	}
	cmd := slices.Clone(spec.Command)
	if !p.deadline.IsZero() {
		// A backstop inside the container: should this process die, the
		// agent still ends shortly after its deadline.
		secs := int64(math.Ceil((time.Until(p.deadline) + backstopGrace).Seconds()))
		cmd = append([]string{"timeout", "--signal=KILL", strconv.FormatInt(secs, 10) + "s"}, cmd...)
	}
	p.config = &container.Config{
		Image:      s.cfg.Image,
		Cmd:        cmd,
		Env:        env,
		WorkingDir: Workdir,
		User:       fmt.Sprintf("%d:%d", p.uid, p.gid),
		Hostname:   hostname(spec.AgentID),
		Labels: map[string]string{
			LabelInstance:  s.cfg.InstanceID,
			LabelExecution: spec.ExecutionID,
			LabelAgent:     spec.AgentID,
		},
		AttachStdout:    true,
		AttachStderr:    true,
		NetworkDisabled: false,
	}
	p.host = s.hostConfig(spec, l)
	return p, nil
}

// hostConfig is the containment: mounts, limits, privileges, network.
func (s *Sandbox) hostConfig(spec sandbox.Spec, l sandbox.Limits) *container.HostConfig {
	procs := l.MaxProcs
	if procs == 0 {
		procs = s.cfg.MaxProcs
	}
	procs = max(procs, minProcs)
	res := container.Resources{
		PidsLimit: &procs,
		Ulimits: []*container.Ulimit{
			{Name: "core", Soft: 0, Hard: 0},
			{Name: "msgqueue", Soft: 0, Hard: 0}, // no POSIX message queues: /dev/mqueue stays empty
		},
	}
	if l.MemoryBytes > 0 {
		res.Memory = max(l.MemoryBytes, minMemory)
		res.MemorySwap = res.Memory // no swap
	}
	if l.CPUMillis > 0 {
		res.NanoCPUs = min(max(l.CPUMillis*1_000_000, 10_000_000), int64(s.ncpu)*1_000_000_000)
	}
	if s.acct != nil {
		res.CgroupParent = s.acct.cgroupParent(spec.ExecutionID)
	}
	init := true
	return &container.HostConfig{
		Mounts: []mount.Mount{{
			Type:        mount.TypeBind,
			Source:      spec.Workspace,
			Target:      Workdir,
			BindOptions: &mount.BindOptions{Propagation: mount.PropagationRPrivate, NonRecursive: true},
		}},
		Tmpfs: map[string]string{
			"/tmp": fmt.Sprintf("rw,nosuid,nodev,noexec,size=%d,nr_inodes=16384,mode=1777", s.cfg.TmpfsBytes),
		},
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		Privileged:     false,
		IpcMode:        container.IPCModeNone, // no /dev/shm: /workspace and /tmp are the only writable places
		NetworkMode:    container.NetworkMode(s.net.Name),
		// Names the container asks about resolve through the engine's
		// resolver, which forwards what it does not know to this address,
		// from inside the container, where the firewall refuses it.
		DNS:         []string{s.net.Gateway.String()},
		DNSOptions:  []string{"timeout:1", "attempts:1"}, // fail fast: there is nothing to resolve
		Sysctls:     map[string]string{"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"},
		LogConfig:   container.LogConfig{Type: "none"}, // output is captured through attach, capped
		Init:        &init,
		AutoRemove:  false, // removed after its state and usage are read
		Resources:   res,
		OomScoreAdj: 500, // under host memory pressure, agents go before the system
	}
}

// agentEnv is the contract's variables, ENV_JSON_PATH seen from inside the
// container, and PATH, HOME and LANG.
func agentEnv(spec sandbox.Spec) ([]string, error) {
	env := make([]string, 0, len(spec.Env)+3)
	for k, v := range spec.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
			return nil, fmt.Errorf("execution %s: invalid environment variable %q", spec.ExecutionID, k)
		}
		switch k {
		case "PATH", "HOME", "LANG":
			continue
		case "ENV_JSON_PATH":
			v = path.Join(Workdir, "env.json")
		}
		env = append(env, k+"="+v)
	}
	env = append(env, "PATH="+agentPATH, "HOME="+Workdir, "LANG=C.UTF-8")
	slices.Sort(env)
	return env, nil
}

// hostname derives a valid host name from an agent id.
func hostname(agentID string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(agentID) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	h := strings.Trim(b.String(), "-")
	if len(h) > 63 {
		h = h[:63]
	}
	if h == "" {
		return "agent"
	}
	return h
}

// launch creates the container, attaches to its output, starts it and
// hands it to the run goroutine. On failure nothing is left behind.
func (h *handle) launch(ctx context.Context, p plan) error {
	s := h.sb
	if s.perAgent {
		if err := ownership.Give(h.spec.Workspace, p.uid, p.gid); err != nil {
			return err
		}
	}
	created, err := s.cli.ContainerCreate(ctx, p.config, p.host, nil, nil, p.name)
	if err != nil {
		if ctx.Err() != nil {
			// The engine may have created it after we stopped listening.
			rctx, cancel := engineCtx()
			s.cli.ContainerRemove(rctx, p.name, container.RemoveOptions{Force: true})
			cancel()
		}
		return fmt.Errorf("create container: %w", err)
	}
	h.id = created.ID
	// The hijacked connection outlives ctx, which only bounds setting it up.
	att, err := s.cli.ContainerAttach(context.WithoutCancel(ctx), h.id,
		container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		h.discard()
		return fmt.Errorf("attach to container: %w", err)
	}
	h.attach = att
	go func() {
		defer close(h.outDone)
		stdcopy.StdCopy(h.out, h.out, att.Reader) // stdout and stderr interleaved, as written
	}()
	if err := s.cli.ContainerStart(ctx, h.id, container.StartOptions{}); err != nil {
		att.Close()
		<-h.outDone
		h.discard()
		return fmt.Errorf("start container: %w", err)
	}
	h.startedAt = time.Now()
	h.armDeadline(p.deadline)
	if s.acct == nil {
		go h.sampleStats()
	}
	go h.run(p.deadline)
	return nil
}
