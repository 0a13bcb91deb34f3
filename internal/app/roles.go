package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/runtime"
	"github.com/bpagents/bpagents/internal/store"
)

// The parts a role is made of.
const (
	roleAPI       = "api"
	roleScheduler = "scheduler"
	roleRunner    = "runner"
	roleAll       = "all"
)

// checkRole validates the role for cfg: every role but all needs a database
// that several processes share.
func checkRole(cfg config.Config, role string) (string, error) {
	if role == "" {
		role = roleAll
	}
	if !slices.Contains(config.Roles, role) {
		return "", fmt.Errorf("unknown role %q (known: %s)", role, strings.Join(config.Roles, ", "))
	}
	if role != roleAll && !cfg.IsPostgres() {
		return "", fmt.Errorf("role %s shares the economy with other processes, which needs PostgreSQL "+
			"(--database postgres://…); with SQLite run every role in one process (--role all, or bpagents up)", role)
	}
	return role, nil
}

// serves reports whether this process runs part (roleAPI, roleScheduler or
// roleRunner).
func (a *App) serves(part string) bool { return a.Role == roleAll || a.Role == part }

// locker elects the scheduler: the store's session locks when several
// processes share it, else a lock in this process.
func (a *App) locker() store.Locker {
	if l, ok := a.Store.(store.Locker); ok {
		return l
	}
	return &runtime.LocalLocker{}
}

// sandboxInstance labels this process's sandboxes. On a store only one
// process uses it is the economy's instance id, as it always was; on a
// shared one each runner has its own (instance-runner), so that a runner
// reaping orphans at start-up never touches another runner's sandboxes on
// the same host.
func (a *App) sandboxInstance() string {
	if _, shared := a.Store.(store.Locker); !shared {
		return a.InstanceID
	}
	return a.InstanceID + "-" + a.Cfg.RunnerIdentity()
}

// openRoles builds the scheduler and the runner this process runs; the
// runner registers at once (removing its orphaned sandboxes and closing what
// its previous process left).
func (a *App) openRoles(ctx context.Context) error {
	cfg, host := a.Cfg, hostname()
	k := cfg.Cluster
	switch a.Role {
	case roleAll:
		a.Runtime = runtime.New(a.Economy, a.Sandbox, runtime.Config{
			Cycle: cfg.Cycle, ServiceURL: a.AgentURL, OutputLimit: cfg.Execution.OutputLimit,
			MaxProcs: cfg.Execution.MaxProcs, StopGrace: cfg.Execution.StopGrace,
			RunnerID: cfg.RunnerIdentity(), Host: host, Slots: k.RunnerSlots, Heartbeat: k.Heartbeat,
			Poll:          max(k.Poll, time.Second), // the scheduler next to it wakes it after each clearing
			RunnerTimeout: k.RunnerTimeout, Locker: a.locker(),
		}, a.Log)
		a.Scheduler, a.Runner = a.Runtime.Scheduler(), a.Runtime.Runner()
		return a.Runtime.Recover(ctx)
	case roleScheduler:
		a.Scheduler = runtime.NewScheduler(a.Economy, a.locker(), runtime.SchedulerConfig{ID: runtime.SchedulerID(),
			Host: host, PID: os.Getpid(), Cycle: cfg.Cycle, CheckEvery: k.LeaderRetry, RunnerTimeout: k.RunnerTimeout}, a.Log)
	case roleRunner:
		a.Runner = runtime.NewRunner(a.Economy, a.Sandbox, runtime.RunnerConfig{ID: cfg.RunnerIdentity(), Host: host,
			PID: os.Getpid(), Slots: k.RunnerSlots, Heartbeat: k.Heartbeat, Poll: k.Poll, LostAfter: k.RunnerTimeout,
			ServiceURL: a.AgentURL, OutputLimit: cfg.Execution.OutputLimit, MaxProcs: cfg.Execution.MaxProcs,
			StopGrace: cfg.Execution.StopGrace}, a.Log)
		return a.Runner.Register(ctx)
	}
	return nil
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// bootstrap prepares the economy (system accounts, markets, genesis on first
// start), one process at a time: processes starting together on one
// database take turns on a session lock, so genesis is created once.
func (a *App) bootstrap(ctx context.Context) error {
	lk := a.locker()
	var lock store.SessionLock
	for {
		var err error
		lock, err = lk.TryLock(ctx, "bootstrap")
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("bootstrap: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bootstrap: waiting for another process: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	defer lock.Unlock(context.WithoutCancel(ctx))
	created, err := a.Economy.Bootstrap(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	a.GenesisNew = created
	if created {
		a.Log.Info("created genesis", "workspace", a.Economy.Workspaces().Dir(economy.GenesisID),
			"credits", a.Cfg.Economy.GenesisCredits)
	}
	return nil
}

// runRole runs the scheduler and runner loops of this process until ctx
// ends (an api process only waits).
func (a *App) runRole(ctx context.Context) error {
	switch {
	case a.Runtime != nil:
		return a.Runtime.Run(ctx)
	case a.Scheduler != nil:
		return a.Scheduler.Run(ctx)
	case a.Runner != nil:
		return a.Runner.Run(ctx)
	}
	<-ctx.Done()
	return nil
}

// runtimeStatus is what /status says about the processes, read from the
// database so that any API replica answers the same.
func (a *App) runtimeStatus(ctx context.Context) api.RuntimeStatus {
	st := api.RuntimeStatus{Role: a.Role, CycleSeconds: a.Cfg.Cycle.Seconds(), Runners: []economy.RunnerView{}}
	if a.Sandbox != nil {
		st.Sandbox, st.SandboxNotes = a.Sandbox.Name(), a.Sandbox.Capabilities().Description
	}
	c, err := a.Economy.Cluster(ctx)
	if err != nil {
		a.Log.Warn("cannot read the cluster's state for /status", "err", err)
		return st
	}
	st.Running, st.Queued, st.Runners, st.Leader = c.Running, c.Queued, c.Runners, c.Leader.ID
	if c.Leader.CycleSeconds > 0 {
		st.CycleSeconds = c.Leader.CycleSeconds // the clearing runs in the leader's process
	}
	if st.Sandbox == "" {
		var names []string
		for _, r := range c.Runners {
			if !slices.Contains(names, r.Sandbox) {
				names = append(names, r.Sandbox)
			}
		}
		st.Sandbox = strings.Join(names, ", ")
	}
	return st
}

// killExecution stops a running execution for the operator: at once when it
// runs in this process, else through its runner's next heartbeat.
func (a *App) killExecution(ctx context.Context, id string) error {
	if a.Runner != nil {
		err := a.Runner.Kill(ctx, id)
		if e, ok := economy.AsError(err); !ok || e.Code != economy.CodeConflict {
			return err
		}
	}
	return a.Economy.RequestKill(ctx, id)
}

// agentHandler serves agents on the sandbox network: the API itself when
// this process serves it, else a proxy to the API replicas at service_url
// (a runner without the API on a host whose sandbox network reaches only
// this process).
func (a *App) agentHandler() http.Handler {
	if a.API != nil {
		return a.API
	}
	target, err := url.Parse(a.Cfg.ServiceURL())
	if err != nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "bad service_url", http.StatusBadGateway)
		})
	}
	p := httputil.NewSingleHostReverseProxy(target)
	p.FlushInterval = -1 // event streams and streamed completions pass through at once
	return p
}
