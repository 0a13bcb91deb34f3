// Package app is the composition root: it turns a validated Config into the
// running system (store, economy, sandbox, runtime, API) and shuts it down in
// order. The sandbox backend is chosen here and nowhere else.
//
// It holds no domain logic; it only wires packages together, so that the
// binary and the end-to-end tests build exactly the same object graph.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bpagents/bpagents"
	"github.com/bpagents/bpagents/internal/agents"
	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/ids"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/metrics"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/runtime"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/sandbox/docker"
	"github.com/bpagents/bpagents/internal/sandbox/process"
	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/web"
)

// App is the running system.
type App struct {
	Cfg           config.Config
	Log           *slog.Logger
	Store         store.Store
	Economy       *economy.Economy
	Sandbox       sandbox.ExecutionSandbox
	Runtime       *runtime.Runtime
	API           *api.Server
	OperatorToken string
	InstanceID    string
	GenesisNew    bool
	// Role is what this process runs: api, scheduler, runner or all (see
	// config.Roles). Runtime is set for all; Scheduler and Runner for their
	// roles (and, within Runtime, for all); API for api and all.
	Role      string
	Scheduler *runtime.Scheduler
	Runner    *runtime.Runner
	// AgentURL is the API's URL as agents reach it (SYSTEM_SERVICE_URL).
	AgentURL string
	// AgentListener serves the API on the sandbox network, when the backend
	// has one and the main listener does not cover it; Serve serves it.
	AgentListener net.Listener
	// Metrics are the Prometheus instruments; Dashboard is the web UI.
	Metrics   *metrics.Metrics
	Dashboard *web.Dashboard

	closers []closer
}

type closer struct {
	name string
	fn   func() error
}

// Options replace parts of the graph (tests).
type Options struct {
	// Sandbox, when set, is used instead of the configured backend.
	Sandbox sandbox.ExecutionSandbox
	Version string
	// Role is what the process runs (config.Roles); empty means all.
	Role string
}

// Open builds the system from cfg for opt.Role: directories, database
// (migrated), operator token, economy (bootstrapped), sandbox and runner
// (recovered from any crash), scheduler, API. Nothing runs until Serve.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger, opt Options) (a *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	role, err := checkRole(cfg, opt.Role)
	if err != nil {
		return nil, err
	}
	opened := &App{Cfg: cfg, Log: log, Role: role}
	a = opened
	defer func() {
		if err != nil { // a is nil by now: every failure returns nil, err
			opened.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir(), 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := os.Chmod(cfg.DataDir(), 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	db, err := OpenStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	log.Info("store open", "backend", db.Backend())
	a.Store = db
	a.closers = append(a.closers, closer{"store", db.Close})
	if a.serves(roleAPI) {
		if a.OperatorToken, err = EnsureOperatorToken(cfg.DataDir()); err != nil {
			return nil, err
		}
	}
	if a.InstanceID, err = instanceID(ctx, db); err != nil {
		return nil, err
	}
	set, err := Settings(cfg)
	if err != nil {
		return nil, err
	}
	ws := agents.Workspaces{Root: cfg.WorkspacesDir()}
	changes := api.NewChanges() // wakes live event streams after each commit
	a.Economy = economy.New(db, set, ws, bpagents.GenesisProject(), log, economy.Options{Changed: changes.Notify})
	if a.serves(roleRunner) {
		if a.Sandbox, err = a.chooseSandbox(ctx, opt); err != nil {
			return nil, err
		}
		a.closers = append(a.closers, closer{"sandbox", a.Sandbox.Close})
		a.AgentURL = cfg.ServiceURL()
		if an, ok := a.Sandbox.(sandbox.AgentNetwork); ok {
			if a.AgentURL, err = a.listenForAgents(ctx, an); err != nil {
				return nil, err
			}
		}
	}
	if err := a.openRoles(ctx); err != nil {
		return nil, err
	}
	if err := a.bootstrap(ctx); err != nil {
		return nil, err
	}
	if !a.serves(roleAPI) {
		return a, nil
	}
	proxy, err := newProxy(cfg, a.Economy, log)
	if err != nil {
		return nil, err
	}
	if err := a.openObservability(opt.Version); err != nil {
		return nil, err
	}
	a.API = api.New(a.Economy, log, api.Options{
		Changes: changes, Dashboard: a.Dashboard, Session: a.Dashboard.Authenticated,
		Metrics: a.Metrics.Handler(), Observe: a.Metrics.ObserveRequest,
		OperatorToken: a.OperatorToken, MaxBody: cfg.API.MaxBodyBytes, MaxSpawnBody: cfg.API.MaxSpawnBodyBytes,
		Version:       opt.Version,
		Status:        a.runtimeStatus,
		KillExecution: a.killExecution,
		Intelligence:  proxy,
	})
	return a, nil
}

// chooseSandbox picks the backend: the one validated switch. It logs which
// backend it chose and why.
func (a *App) chooseSandbox(ctx context.Context, opt Options) (sandbox.ExecutionSandbox, error) {
	if opt.Sandbox != nil {
		return opt.Sandbox, nil
	}
	switch name := a.Cfg.Sandbox; name {
	case "auto":
		d := a.Cfg.Docker
		if err := docker.Probe(ctx, d.Host, d.Image); err != nil {
			a.Log.Info("sandbox auto: chose process", "why", err.Error())
			return a.openProcess()
		}
		sb, err := a.openDocker(ctx)
		if err != nil {
			a.Log.Warn("sandbox auto: chose process: the docker engine and image are there but the sandbox "+
				"could not be set up (use --sandbox docker to make this an error)", "err", err)
			return a.openProcess()
		}
		a.Log.Info("sandbox auto: chose docker", "why", "the engine answered a ping and holds image "+d.Image)
		return sb, nil
	case "docker":
		return a.openDocker(ctx)
	case "process":
		return a.openProcess()
	default:
		return nil, fmt.Errorf("unknown sandbox %q (known: %s)", name, strings.Join(config.Sandboxes, ", "))
	}
}

func (a *App) openProcess() (sandbox.ExecutionSandbox, error) {
	sb, err := process.New(process.Config{
		InstanceID: a.sandboxInstance(),
		StateDir:   filepath.Join(a.Cfg.DataDir(), "sandboxes"),
		UIDBase:    a.Cfg.Process.UIDBase,
		MaxProcs:   a.Cfg.Execution.MaxProcs,
	}, a.Log)
	if err != nil {
		return nil, fmt.Errorf("process sandbox: %w", err)
	}
	a.Log.Info("sandbox ready", "backend", sb.Name(), "enforces", sb.Capabilities().Description)
	return sb, nil
}

func (a *App) openDocker(ctx context.Context) (sandbox.ExecutionSandbox, error) {
	d := a.Cfg.Docker
	sb, err := docker.New(ctx, docker.Config{
		InstanceID: a.sandboxInstance(),
		Host:       d.Host,
		Image:      d.Image,
		Network:    d.Network,
		TmpfsBytes: d.TmpfsMB << 20,
		UIDBase:    d.UIDBase,
		MaxProcs:   a.Cfg.Execution.MaxProcs,
		NoFirewall: !d.Firewall,
	}, a.Log)
	if err != nil {
		return nil, err
	}
	a.Log.Info("sandbox ready", "backend", sb.Name(), "enforces", sb.Capabilities().Description)
	return sb, nil
}

// listenForAgents opens the API's listener on the sandbox network (unless
// the main one, on a wildcard address, covers it), lets the backend's
// firewall open that port to executions, and returns the URL agents use.
func (a *App) listenForAgents(ctx context.Context, an sandbox.AgentNetwork) (string, error) {
	host, portStr, _ := net.SplitHostPort(a.Cfg.Addr)
	addrPort, _ := strconv.Atoi(portStr)
	var port int
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if addrPort == 0 {
			return "", fmt.Errorf("addr %s: a wildcard address needs a fixed port for sandboxed agents to reach", a.Cfg.Addr)
		}
		port = addrPort
	} else {
		tries := []int{a.Cfg.Docker.APIPort}
		if a.Cfg.Docker.APIPort == 0 {
			tries = []int{addrPort, 0} // addr's port when free there, else any
		}
		var err error
		for _, p := range tries {
			if a.AgentListener, err = net.Listen("tcp", net.JoinHostPort(an.APIHost(), strconv.Itoa(p))); err == nil {
				break
			}
		}
		if err != nil {
			return "", fmt.Errorf("listen for agents on %s: %w", an.APIHost(), err)
		}
		ln := a.AgentListener
		a.closers = append(a.closers, closer{"agent listener", func() error {
			if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				return err
			}
			return nil
		}})
		port = ln.Addr().(*net.TCPAddr).Port
	}
	if err := an.AllowAPI(ctx, port); err != nil {
		return "", err
	}
	u := "http://" + net.JoinHostPort(an.APIHost(), strconv.Itoa(port))
	switch {
	case !a.serves(roleAPI):
		a.Log.Info("agents' API calls on the sandbox network are forwarded to service_url", "service_url", a.Cfg.ServiceURL())
	case a.Cfg.PublicURL != "":
		a.Log.Warn("public_url is not given to sandboxed agents: they can reach the API only on the sandbox network",
			"public_url", a.Cfg.PublicURL, "agent_url", u)
	}
	a.Log.Info("agents reach the API on the sandbox network", "agent_url", u)
	return u, nil
}

// Serve runs the process's role until ctx ends: the API on ln (api, all;
// ln is unused otherwise and may be nil), the scheduler, the runner. Then it
// shuts down in order: running executions are drained first (stopped and
// recorded), then the HTTP server, then everything else in reverse order of
// opening.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	httpErr := make(chan error, 2)
	var srv *http.Server
	if a.API != nil {
		if ln == nil {
			return errors.New("serve: the api role needs a listener")
		}
		srv = &http.Server{Handler: a.API, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
		srv.RegisterOnShutdown(a.API.CloseStreams) // Shutdown waits for streams; end them
		go func() { httpErr <- srv.Serve(ln) }()
	}
	var agentSrv *http.Server
	if a.AgentListener != nil {
		agentSrv = &http.Server{Handler: a.agentHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
		go func() { httpErr <- agentSrv.Serve(a.AgentListener) }()
	}
	runCtx, stopRuntime := context.WithCancel(ctx)
	defer stopRuntime()
	runDone := make(chan error, 1)
	go func() { runDone <- a.runRole(runCtx) }()
	addr := ""
	if srv != nil {
		addr = ln.Addr().String()
	}
	a.Log.Info("serving", "role", a.Role, "addr", addr, "service_url", a.Cfg.ServiceURL(), "agent_url", a.AgentURL,
		"home", a.Cfg.Home)

	var err error
	select {
	case <-ctx.Done():
	case err = <-httpErr:
		a.Log.Error("http server stopped", "err", err)
	case err = <-runDone:
		runDone <- err // read again below
		err = nil
		a.Log.Error("the role's loop stopped")
	}
	a.Log.Info("shutting down")
	stopRuntime()
	if rerr := <-runDone; rerr != nil {
		err = errors.Join(err, rerr)
	}
	shCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if srv != nil {
		if serr := srv.Shutdown(shCtx); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	if agentSrv != nil {
		if serr := agentSrv.Shutdown(shCtx); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	return errors.Join(err, a.Close())
}

// Close closes what Open opened, in reverse order.
func (a *App) Close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i].fn(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", a.closers[i].name, err))
		}
	}
	a.closers = nil
	return errors.Join(errs...)
}

// Settings converts configuration into the economy's rules.
func Settings(cfg config.Config) (economy.Settings, error) {
	mech, err := market.ParseMechanism(cfg.Market.Mechanism)
	if err != nil {
		return economy.Settings{}, err
	}
	res := cfg.Market.Resources
	capacity := market.Capacity{
		CPUMillis: int64(math.Round(res["cpu"].Capacity * 1000)),
		MemoryMB:  int64(res["memory_mb"].Capacity),
		Tokens:    int64(res["tokens"].Capacity),
		Attention: int64(res["attention"].Capacity),
	}
	prices := func(pick func(config.Resource) money.Micro) market.Prices {
		return market.Prices{CPU: pick(res["cpu"]), Memory: pick(res["memory_mb"]), Tokens: pick(res["tokens"]),
			Attention: pick(res["attention"])}
	}
	rules := market.PriceRules{TargetLow: cfg.Market.TargetLow, TargetHigh: cfg.Market.TargetHigh,
		StepUp: cfg.Market.StepUp, StepDown: cfg.Market.StepDown,
		Floor:   prices(func(r config.Resource) money.Micro { return r.Floor }),
		Ceiling: prices(func(r config.Resource) money.Micro { return r.Ceiling })}
	if err := rules.Validate(); err != nil {
		return economy.Settings{}, fmt.Errorf("config: market: %w", err)
	}
	g := cfg.Genesis
	return economy.Settings{
		GenesisCredits: cfg.Economy.GenesisCredits,
		GenesisBid:     g.Bid,
		GenesisBundle: market.Bundle{CPUMillis: int64(math.Round(g.CPU * 1000)), MemoryMB: g.MemoryMB,
			DurationSeconds: g.DurationSeconds},
		SpawnFee:           cfg.Economy.SpawnFee,
		MessageFee:         cfg.Economy.MessageFee,
		MaxMessageBytes:    cfg.Economy.MaxMessageBytes,
		RewardWeight:       cfg.Economy.RewardWeight,
		PromptTTL:          cfg.Economy.PromptTTL,
		MaxPromptBytes:     cfg.Economy.MaxPromptBytes,
		SpawnLimits:        agents.Limits{MaxFiles: cfg.Economy.MaxSpawnFiles, MaxBytes: cfg.Economy.MaxSpawnBytes},
		Capacity:           capacity,
		InitialPrices:      prices(func(r config.Resource) money.Micro { return r.Price }),
		PriceRules:         rules,
		Mechanism:          mech,
		BidTTLCycles:       cfg.Market.BidTTLCycles,
		MaxPendingBids:     cfg.Market.MaxPendingBids,
		MaxDurationSeconds: cfg.Market.MaxDurationSeconds,
	}, nil
}

func instanceID(ctx context.Context, st store.Store) (string, error) {
	var id string
	err := st.Write(ctx, func(tx store.Tx) error {
		v, err := tx.GetMeta(ctx, "instance_id")
		if err == nil {
			id = v
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		id = strings.TrimPrefix(ids.New("i"), "i_")[:12]
		return tx.SetMeta(ctx, "instance_id", id)
	})
	return id, err
}
