// Package runtime owns the loop that makes the economy live, in two roles
// that may run in one process or in many:
//
//   - the Scheduler clears the market every cycle while it is the leader (a
//     database session lock elects exactly one), and declares runners lost
//     when their heartbeats stop, closing what they held;
//   - a Runner registers itself, sends heartbeats, claims queued executions
//     and, for each, opens it, writes env.json into the agent's workspace,
//     runs the agent in its sandbox and records how it ended. At start-up it
//     removes its own orphaned sandboxes and closes what its previous process
//     left running.
//
// Runtime is both in one process (`bpagents up`): the scheduler wakes the
// runner right after each clearing. The runtime never moves money or decides
// winners itself (the economy does), and never runs agent code outside an
// ExecutionSandbox.
package runtime

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/ids"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/store"
)

// Config tunes a one-process runtime.
type Config struct {
	Cycle       time.Duration
	ServiceURL  string
	OutputLimit int
	MaxProcs    int64
	StopGrace   time.Duration

	// RunnerID is the runner's stable identity (default "local"); Host
	// defaults to the host name.
	RunnerID string
	Host     string
	// Slots, Heartbeat, Poll: see RunnerConfig. RunnerTimeout is the
	// scheduler's (and the runner's LostAfter).
	Slots         int
	Heartbeat     time.Duration
	Poll          time.Duration
	RunnerTimeout time.Duration
	// Locker elects the scheduler; nil means a LocalLocker (a database only
	// this process uses).
	Locker store.Locker
}

// Runtime is a scheduler and a runner in one process.
type Runtime struct {
	sched *Scheduler
	run   *Runner
	// cycleDone, when set, is called after each clearing (tests, metrics).
	cycleDone func(economy.ClearResult)
}

// New returns a runtime over eco and sb.
func New(eco *economy.Economy, sb sandbox.ExecutionSandbox, cfg Config, log *slog.Logger) *Runtime {
	if cfg.RunnerID == "" {
		cfg.RunnerID = "local"
	}
	if cfg.Host == "" {
		cfg.Host, _ = os.Hostname()
	}
	if cfg.Locker == nil {
		cfg.Locker = &LocalLocker{}
	}
	rt := &Runtime{}
	rt.run = NewRunner(eco, sb, RunnerConfig{ID: cfg.RunnerID, Host: cfg.Host, PID: os.Getpid(), Slots: cfg.Slots,
		Heartbeat: cfg.Heartbeat, Poll: cfg.Poll, LostAfter: cfg.RunnerTimeout, ServiceURL: cfg.ServiceURL,
		OutputLimit: cfg.OutputLimit, MaxProcs: cfg.MaxProcs, StopGrace: cfg.StopGrace}, log)
	rt.sched = NewScheduler(eco, cfg.Locker, SchedulerConfig{ID: SchedulerID(), Host: cfg.Host, PID: os.Getpid(),
		Cycle: cfg.Cycle, RunnerTimeout: cfg.RunnerTimeout}, log)
	rt.sched.OnCycle(func(res economy.ClearResult) {
		rt.run.Wake() // no polling delay between a clearing and its executions
		if rt.cycleDone != nil {
			rt.cycleDone(res)
		}
	})
	return rt
}

// SchedulerID returns a fresh identity for a scheduler process.
func SchedulerID() string { return ids.New("sch") }

// Scheduler is the runtime's scheduler.
func (rt *Runtime) Scheduler() *Scheduler { return rt.sched }

// Runner is the runtime's runner.
func (rt *Runtime) Runner() *Runner { return rt.run }

// OnCycle registers a function called after every clearing.
func (rt *Runtime) OnCycle(fn func(economy.ClearResult)) { rt.cycleDone = fn }

// OnSandboxStart registers a function called with how long the sandbox took
// to start each execution (until the agent's process runs). Register hooks
// before Run; they must not block.
func (rt *Runtime) OnSandboxStart(fn func(backend string, took time.Duration)) {
	rt.run.OnSandboxStart(fn)
}

// OnFinished registers a function called with the termination reason of
// every execution once its result is recorded.
func (rt *Runtime) OnFinished(fn func(reason string)) { rt.run.OnFinished(fn) }

// Recover registers the runner: orphaned sandboxes are removed and
// executions a previous process left running are closed as killed. Call it
// once before Run or Tick.
func (rt *Runtime) Recover(ctx context.Context) error { return rt.run.Register(ctx) }

// Run runs the scheduler and the runner until ctx ends. On return every
// execution it started has been stopped and recorded, and the leader lock
// is released.
func (rt *Runtime) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	var schedErr error
	wg.Go(func() { schedErr = rt.sched.Run(ctx) })
	err := rt.run.Run(ctx)
	wg.Wait()
	if err == nil {
		err = schedErr
	}
	return err
}

// Tick runs one cycle: clear (taking the lead if it is free), then launch
// every execution the runner can claim. Wait waits for them.
func (rt *Runtime) Tick(ctx context.Context) {
	rt.sched.Tick(ctx)
	rt.run.Claim(ctx)
}

// Running returns how many executions are in a sandbox now.
func (rt *Runtime) Running() int { return rt.run.Running() }

// Kill ends a running execution at once.
func (rt *Runtime) Kill(ctx context.Context, executionID string) error {
	return rt.run.Kill(ctx, executionID)
}

// Wait blocks until every launched execution has been recorded.
func (rt *Runtime) Wait() { rt.run.Wait() }
