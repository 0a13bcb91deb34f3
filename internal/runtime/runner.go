package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/store"
)

// RunnerConfig tunes a runner.
type RunnerConfig struct {
	// ID is the runner's stable identity: a restarted runner with the same
	// ID finds and closes what its previous process left (its sandboxes
	// are labelled with it too). Host and PID describe this process.
	ID   string
	Host string
	PID  int
	// Slots bounds how many executions it runs at once; 0 means no limit of
	// its own (the market's capacity still bounds them).
	Slots int
	// Heartbeat is how often it tells the database it lives (default 2s);
	// Poll how often it looks for queued executions without being woken
	// (default 200ms).
	Heartbeat time.Duration
	Poll      time.Duration
	// LostAfter is how long it may go without a successful heartbeat before
	// it stops its executions itself, because the leader may already have
	// declared it lost and closed them (default 10s, the scheduler's
	// RunnerTimeout).
	LostAfter time.Duration

	ServiceURL  string
	OutputLimit int
	MaxProcs    int64
	StopGrace   time.Duration
}

// maxClaim bounds one claim of a runner without a slot limit.
const maxClaim = 256

// Runner runs the executions it claims from the queue in its sandbox. Any
// number of runners may share one database: each registers itself, sends
// heartbeats, and claims queued executions; a claimed execution is started
// by its runner and by no other.
type Runner struct {
	eco *economy.Economy
	sb  sandbox.ExecutionSandbox
	cfg RunnerConfig
	log *slog.Logger

	// claimMu serialises claims, so slots are never oversubscribed.
	claimMu sync.Mutex

	mu         sync.Mutex
	registered bool
	running    map[string]sandbox.Handle
	// systemStop marks executions this runner stopped for its own reasons
	// (shutdown, lost registration): they are recorded as interrupted.
	systemStop map[string]bool
	inflight   int // claimed and not yet recorded
	stopping   bool
	lastBeat   time.Time // last successful heartbeat (monotonic)
	fenced     bool      // executions stopped for want of heartbeats

	wg    sync.WaitGroup
	wake  chan struct{}
	freed chan struct{}

	started  func(backend string, took time.Duration)
	finished func(reason string)
}

// NewRunner returns a runner over eco and sb.
func NewRunner(eco *economy.Economy, sb sandbox.ExecutionSandbox, cfg RunnerConfig, log *slog.Logger) *Runner {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 2 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.LostAfter <= 0 {
		cfg.LostAfter = 10 * time.Second
	}
	return &Runner{eco: eco, sb: sb, cfg: cfg, log: log.With("runner_id", cfg.ID),
		running: map[string]sandbox.Handle{}, systemStop: map[string]bool{},
		wake: make(chan struct{}, 1), freed: make(chan struct{}, 1)}
}

// ID is the runner's identity.
func (r *Runner) ID() string { return r.cfg.ID }

// OnSandboxStart registers a function called with how long the sandbox took
// to start each execution. Register hooks before Run; they must not block.
func (r *Runner) OnSandboxStart(fn func(backend string, took time.Duration)) { r.started = fn }

// OnFinished registers a function called with the termination reason of
// every execution once its result is recorded.
func (r *Runner) OnFinished(fn func(reason string)) { r.finished = fn }

// Register enters the runner in the registry. It refuses when another live
// process is registered under the same ID; otherwise it removes the
// orphaned sandboxes of this runner's previous process and closes what that
// process left (running executions as killed, their bids reinstated; queued
// claims released). Call it once before Run.
func (r *Runner) Register(ctx context.Context) error {
	prev, err := r.eco.Runner(ctx, r.cfg.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("runner %s: %w", r.cfg.ID, err)
	case prev.Status == store.RunnerActive:
		if err := r.replaceable(prev); err != nil {
			return err
		}
	}
	orphans, err := r.sb.ReapOrphans(ctx)
	if err != nil {
		return fmt.Errorf("reap orphaned sandboxes: %w", err)
	}
	if len(orphans) > 0 {
		r.log.Warn("removed orphaned sandboxes", "count", len(orphans), "executions", orphans)
	}
	return r.register(ctx)
}

func (r *Runner) register(ctx context.Context) error {
	info := economy.RunnerInfo{ID: r.cfg.ID, Host: r.cfg.Host, PID: int64(r.cfg.PID), Sandbox: r.sb.Name(),
		Slots: int64(r.cfg.Slots)}
	cleanup, err := r.eco.RegisterRunner(ctx, info, r.replaceable)
	if err != nil {
		return fmt.Errorf("register runner %s: %w", r.cfg.ID, err)
	}
	if len(cleanup.Interrupted)+len(cleanup.Released) > 0 {
		r.log.Warn("closed executions left by this runner's previous process", "interrupted", cleanup.Interrupted,
			"released", cleanup.Released)
	}
	r.mu.Lock()
	r.registered, r.lastBeat, r.fenced = true, time.Now(), false
	r.mu.Unlock()
	r.log.Info("runner registered", "host", r.cfg.Host, "pid", r.cfg.PID, "sandbox", r.sb.Name(), "slots", r.cfg.Slots)
	return nil
}

// replaceable refuses to take over an active registration that another live
// process holds: one on another host whose heartbeat is recent, or one on
// this host whose process still runs.
func (r *Runner) replaceable(prev store.Runner) error {
	if prev.Host == r.cfg.Host && prev.PID == int64(r.cfg.PID) {
		return nil // this very process, registering again
	}
	fresh := time.Since(prev.Heartbeat) < r.cfg.LostAfter
	if fresh && (prev.Host != r.cfg.Host || processAlive(int(prev.PID))) {
		return &economy.Error{Code: economy.CodeConflict, Detail: fmt.Sprintf(
			"runner %s is already active (host %s, pid %d, last heartbeat %s ago): give this runner another id "+
				"(--runner-id) or stop the other", prev.ID, prev.Host, prev.PID,
			time.Since(prev.Heartbeat).Round(time.Millisecond))}
	}
	return nil
}

// processAlive reports whether a process with this pid runs on this host.
// A zombie does not count: a process killed a moment ago stays one until its
// parent (or an init that may be slow to) reaps it.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// pid (comm) state ...: comm may hold spaces and parentheses.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
			state := stat[i+2]
			return state != 'Z' && state != 'X'
		}
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Wake makes the runner look for queued executions now (the scheduler in
// the same process just cleared). It never blocks.
func (r *Runner) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run claims and runs executions and sends heartbeats until ctx ends; then
// it stops its running executions (they are recorded as interrupted: the
// agents are not charged and keep their turn), gives back claims it did not
// start, and records that it stopped. Executions left queued by an earlier
// run are claimed first.
func (r *Runner) Run(ctx context.Context) error {
	hb := time.NewTicker(r.cfg.Heartbeat)
	defer hb.Stop()
	poll := time.NewTicker(r.cfg.Poll)
	defer poll.Stop()
	r.Claim(ctx)
	for {
		select {
		case <-ctx.Done():
			return r.shutdown()
		case <-hb.C:
			r.heartbeat(ctx)
		case <-poll.C:
			r.Claim(ctx)
		case <-r.wake:
			r.Claim(ctx)
		case <-r.freed:
			r.Claim(ctx)
		}
	}
}

// Claim claims as many queued executions as the runner has free slots and
// launches each; it returns how many it launched. Wait waits for them.
func (r *Runner) Claim(ctx context.Context) int {
	r.claimMu.Lock()
	defer r.claimMu.Unlock()
	r.mu.Lock()
	limit := maxClaim
	if r.cfg.Slots > 0 {
		limit = r.cfg.Slots - r.inflight
	}
	ok := r.registered && !r.stopping && !r.fenced
	r.mu.Unlock()
	if !ok || limit <= 0 {
		return 0
	}
	list, err := r.eco.ClaimExecutions(ctx, r.cfg.ID, limit)
	switch {
	case errors.Is(err, economy.ErrRunnerLost):
		// Declared lost: the next heartbeat stops what runs here and registers again.
		r.log.Debug("cannot claim: this runner is not active", "err", err)
		return 0
	case err != nil:
		if ctx.Err() == nil {
			r.log.Warn("cannot claim executions", "err", err)
		}
		return 0
	}
	for _, ex := range list {
		r.launch(ex)
	}
	return len(list)
}

// heartbeat tells the registry this runner lives and acts on the operator's
// kill requests. When the registry says the runner was declared lost (its
// executions were closed for it), it stops what it still runs and registers
// again; when heartbeats fail for LostAfter, it stops its executions itself.
func (r *Runner) heartbeat(ctx context.Context) {
	kill, err := r.eco.RunnerHeartbeat(ctx, r.cfg.ID)
	switch {
	case err == nil:
		r.mu.Lock()
		r.lastBeat, r.fenced = time.Now(), false
		r.mu.Unlock()
		for _, id := range kill {
			if err := r.Kill(ctx, id); err == nil {
				r.log.Info("stopped an execution at the operator's request", "execution_id", id)
			}
		}
	case errors.Is(err, economy.ErrRunnerLost):
		r.log.Warn("this runner was declared lost: stopping its executions and registering again")
		r.fence(ctx)
		if err := r.register(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("cannot register again", "err", err)
		}
	default:
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		silent := time.Since(r.lastBeat)
		fence := silent >= r.cfg.LostAfter && !r.fenced
		r.mu.Unlock()
		r.log.Warn("heartbeat failed", "err", err, "silent_for", silent.Round(time.Millisecond).String())
		if fence {
			r.log.Warn("no heartbeat for the runner timeout: stopping executions the leader may have closed")
			r.fence(ctx)
		}
	}
}

// fence kills every execution this runner runs, as interrupted by the
// system, and claims nothing until a heartbeat succeeds again.
func (r *Runner) fence(ctx context.Context) {
	r.mu.Lock()
	r.fenced = true
	handles := make(map[string]sandbox.Handle, len(r.running))
	for id, h := range r.running {
		handles[id] = h
		r.systemStop[id] = true
	}
	r.mu.Unlock()
	for id, h := range handles {
		if err := h.Kill(ctx); err != nil {
			r.log.Warn("cannot kill an execution", "execution_id", id, "err", err)
		}
	}
}

// Running returns how many executions are in a sandbox of this runner now.
func (r *Runner) Running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.running)
}

// Kill ends an execution running here at once.
func (r *Runner) Kill(ctx context.Context, executionID string) error {
	r.mu.Lock()
	h, ok := r.running[executionID]
	r.mu.Unlock()
	if !ok {
		return &economy.Error{Code: economy.CodeConflict, Detail: fmt.Sprintf("execution %s is not running here", executionID)}
	}
	return h.Kill(ctx)
}

// Wait blocks until every launched execution has been recorded.
func (r *Runner) Wait() { r.wg.Wait() }

// shutdown stops every running execution (SIGTERM, then SIGKILL after the
// grace period), waits until all are recorded, and deregisters.
func (r *Runner) shutdown() error {
	r.mu.Lock()
	r.stopping = true
	handles := make([]sandbox.Handle, 0, len(r.running))
	for id, h := range r.running {
		handles = append(handles, h)
		r.systemStop[id] = true
	}
	registered := r.registered
	r.mu.Unlock()
	if len(handles) > 0 {
		r.log.Info("stopping running executions", "count", len(handles))
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StopGrace+10*time.Second)
	defer cancel()
	for _, h := range handles {
		go h.Stop(ctx, r.cfg.StopGrace)
	}
	// Claim waits for claims in flight; none starts after stopping is set.
	r.claimMu.Lock()
	r.claimMu.Unlock()
	r.wg.Wait()
	if !registered {
		return nil
	}
	cleanup, err := r.eco.StopRunner(ctx, r.cfg.ID)
	if err != nil {
		return fmt.Errorf("runner %s: record the stop: %w", r.cfg.ID, err)
	}
	if len(cleanup.Interrupted)+len(cleanup.Released) > 0 {
		r.log.Warn("closed executions at shutdown", "interrupted", cleanup.Interrupted, "released", cleanup.Released)
	}
	r.log.Info("runner stopped")
	return nil
}

func (r *Runner) launch(ex store.Execution) {
	r.mu.Lock()
	r.inflight++
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.execute(ex)
		r.mu.Lock()
		r.inflight--
		r.mu.Unlock()
		select {
		case r.freed <- struct{}{}:
		default:
		}
	}()
}
