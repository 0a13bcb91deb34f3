package runtime

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/store"
)

// leaderLock names the scheduler's leader lock.
const leaderLock = "scheduler"

// SchedulerConfig tunes a scheduler.
type SchedulerConfig struct {
	// ID names this scheduler process (unique per process); Host and PID
	// describe it in events and logs.
	ID   string
	Host string
	PID  int
	// Cycle is the clearing period.
	Cycle time.Duration
	// CheckEvery is how often a standby tries to become leader and the
	// leader checks its lock and sweeps dead runners (default 1s).
	CheckEvery time.Duration
	// RunnerTimeout is how long a runner's heartbeat may stay unchanged
	// before the leader declares it lost (default 10s).
	RunnerTimeout time.Duration
}

// Scheduler clears the market every cycle while it is the leader. Any
// number of schedulers may run on one database: the one holding the leader
// lock (a database session lock) leads, the others retry every CheckEvery
// and take over when the leader's session ends. The leader also declares
// runners lost when their heartbeats stop and closes what they held.
type Scheduler struct {
	eco    *economy.Economy
	locker store.Locker
	cfg    SchedulerConfig
	log    *slog.Logger
	// cycleDone, when set, is called after each clearing.
	cycleDone func(economy.ClearResult)

	// mu serialises cycles, sweeps and changes of leadership.
	mu      sync.Mutex
	lock    store.SessionLock // held while leader
	standby string            // the leader last reported while standing by
	// beats is the leader's view of each active runner's heartbeat: the
	// value last read and when (by this process's monotonic clock) it was
	// first seen, so that clocks of other hosts never matter.
	beats map[string]beat
}

type beat struct {
	at   time.Time // the heartbeat as stored
	seen time.Time // when this scheduler first read that value
}

// NewScheduler returns a scheduler electing its leader with locker.
func NewScheduler(eco *economy.Economy, locker store.Locker, cfg SchedulerConfig, log *slog.Logger) *Scheduler {
	if cfg.CheckEvery <= 0 {
		cfg.CheckEvery = time.Second
	}
	if cfg.RunnerTimeout <= 0 {
		cfg.RunnerTimeout = 10 * time.Second
	}
	return &Scheduler{eco: eco, locker: locker, cfg: cfg, log: log.With("scheduler_id", cfg.ID)}
}

// OnCycle registers a function called after every clearing (the local
// runner's wake-up, metrics). Register it before Run; it must not block.
func (s *Scheduler) OnCycle(fn func(economy.ClearResult)) { s.cycleDone = fn }

// IsLeader reports whether this scheduler holds the leader lock.
func (s *Scheduler) IsLeader() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lock != nil
}

// Run campaigns for leadership and, while leader, clears every cycle, until
// ctx ends; then it gives the lock up so that a standby takes over at once.
func (s *Scheduler) Run(ctx context.Context) error {
	check := time.NewTicker(s.cfg.CheckEvery)
	defer check.Stop()
	cycle := time.NewTicker(s.cfg.Cycle)
	defer cycle.Stop()
	s.mu.Lock()
	s.campaign(ctx)
	s.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			s.resign()
			return nil
		case <-check.C:
			s.mu.Lock()
			if s.lock == nil {
				s.campaign(ctx)
			} else {
				s.watch(ctx)
			}
			s.mu.Unlock()
		case <-cycle.C:
			s.Tick(ctx)
		}
	}
}

// Tick runs one cycle if this scheduler leads (taking the lead first when it
// is free): clear the market, then call the OnCycle hook. It reports the
// clearing and whether one happened.
func (s *Scheduler) Tick(ctx context.Context) (economy.ClearResult, bool) {
	s.mu.Lock()
	if s.lock == nil {
		s.campaign(ctx)
	}
	if s.lock == nil {
		s.mu.Unlock()
		return economy.ClearResult{}, false
	}
	res, err := s.eco.ClearAsLeader(ctx, s.cfg.ID)
	if errors.Is(err, economy.ErrNotLeader) {
		s.stepDown(ctx, "another scheduler is the recorded leader", err)
	}
	s.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, economy.ErrNotLeader) {
			s.log.Error("clearing failed", "err", err)
		}
		return res, false
	}
	if res.Winners > 0 || res.Expired > 0 {
		s.log.Info("market cleared", "cycle", res.Cycle, "pending", res.Pending, "winners", res.Winners,
			"expired", res.Expired, "took_ms", float64(res.Took.Microseconds())/1000)
	}
	if s.cycleDone != nil {
		s.cycleDone(res)
	}
	return res, true
}

// campaign tries once to take the leader lock; with it, it records this
// scheduler as the leader and closes what no live runner holds. Call with
// s.mu held.
func (s *Scheduler) campaign(ctx context.Context) {
	lock, err := s.locker.TryLock(ctx, leaderLock)
	if errors.Is(err, store.ErrLocked) {
		if l, lerr := s.eco.Leader(ctx); lerr == nil && l.ID != s.standby {
			s.standby = l.ID
			s.log.Info("scheduler standing by", "leader", l.ID, "leader_host", l.Host, "leader_pid", l.PID)
		}
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("cannot try the leader lock", "err", err)
		}
		return
	}
	prev, err := s.eco.TakeLeadership(ctx, economy.LeaderInfo{ID: s.cfg.ID, Host: s.cfg.Host, PID: int64(s.cfg.PID),
		CycleSeconds: s.cfg.Cycle.Seconds()})
	if err != nil {
		_ = lock.Unlock(context.WithoutCancel(ctx))
		if ctx.Err() == nil {
			s.log.Error("took the leader lock but cannot record the leadership", "err", err)
		}
		return
	}
	s.lock, s.standby, s.beats = lock, "", map[string]beat{}
	s.log.Info("scheduler became leader", "host", s.cfg.Host, "pid", s.cfg.PID, "previous", prev.ID,
		"previous_host", prev.Host, "previous_pid", prev.PID)
	s.closeOrphans(ctx)
}

// watch checks that the leader still holds its lock and sweeps runners.
// Call with s.mu held.
func (s *Scheduler) watch(ctx context.Context) {
	if err := s.lock.Check(ctx); err != nil {
		s.stepDown(ctx, "lost the leader lock", err)
		return
	}
	s.sweepRunners(ctx)
	s.closeOrphans(ctx)
}

// stepDown gives leadership up. Call with s.mu held.
func (s *Scheduler) stepDown(ctx context.Context, why string, err error) {
	if s.lock == nil {
		return
	}
	if ctx.Err() == nil {
		s.log.Warn("scheduler stepped down", "why", why, "err", err)
	}
	_ = s.lock.Unlock(context.WithoutCancel(ctx))
	s.lock, s.beats = nil, nil
}

// resign releases the lock at shutdown.
func (s *Scheduler) resign() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.lock.Unlock(ctx); err != nil {
		s.log.Warn("cannot release the leader lock (it goes with the session)", "err", err)
	}
	s.lock = nil
	s.log.Info("scheduler resigned leadership")
}

// sweepRunners declares lost every active runner whose heartbeat has not
// changed for RunnerTimeout, as this scheduler measured it. Call with s.mu
// held.
func (s *Scheduler) sweepRunners(ctx context.Context) {
	runners, err := s.eco.ActiveRunners(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("cannot read runners", "err", err)
		}
		return
	}
	now := time.Now()
	next := make(map[string]beat, len(runners))
	for _, r := range runners {
		b, ok := s.beats[r.ID]
		if !ok || !b.at.Equal(r.Heartbeat) {
			b = beat{at: r.Heartbeat, seen: now}
		}
		next[r.ID] = b
		silent := now.Sub(b.seen)
		if silent < s.cfg.RunnerTimeout {
			continue
		}
		cleanup, lost, err := s.eco.DeclareRunnerLost(ctx, r.ID, r.Heartbeat, silent)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("cannot declare a runner lost", "runner_id", r.ID, "err", err)
			}
			continue
		}
		if lost {
			delete(next, r.ID)
			s.log.Warn("runner lost: closed its executions", "runner_id", r.ID, "host", r.Host, "pid", r.PID,
				"silent_for", silent.Round(time.Millisecond).String(), "interrupted", cleanup.Interrupted,
				"released", cleanup.Released)
		}
	}
	s.beats = next
}

// closeOrphans closes executions no active runner holds. Call with s.mu held.
func (s *Scheduler) closeOrphans(ctx context.Context) {
	cleanup, err := s.eco.CloseOrphanedExecutions(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("cannot close orphaned executions", "err", err)
		}
		return
	}
	if len(cleanup.Interrupted)+len(cleanup.Released) > 0 {
		s.log.Warn("closed executions no live runner holds", "interrupted", cleanup.Interrupted,
			"released", cleanup.Released)
	}
}
