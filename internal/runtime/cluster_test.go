package runtime_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/agents"
	"github.com/bpagents/bpagents/internal/app"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/runtime"
	"github.com/bpagents/bpagents/internal/sandbox/fake"
	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/postgres"
	"github.com/bpagents/bpagents/internal/store/postgres/pgtest"
	"github.com/bpagents/bpagents/internal/store/sqlite"
)

// cluster is one economy's database and workspaces, shared by the "processes"
// a test builds on it (each with its own economy and, on PostgreSQL, its own
// connection pool).
type cluster struct {
	t      *testing.T
	ws     agents.Workspaces
	open   func() store.Store // a new pool (postgres) or the one store (sqlite)
	locker func(st store.Store) store.Locker
	first  *economy.Economy
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func sqliteCluster(t *testing.T) *cluster {
	t.Helper()
	dir := t.TempDir()
	db, err := sqlite.Open(t.Context(), filepath.Join(dir, "db.sqlite"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	local := &runtime.LocalLocker{}
	c := &cluster{t: t, ws: agents.Workspaces{Root: filepath.Join(dir, "workspaces")},
		open: func() store.Store { return db }, locker: func(store.Store) store.Locker { return local }}
	c.bootstrap()
	return c
}

func postgresCluster(t *testing.T) *cluster {
	t.Helper()
	url := pgtest.Schema(t)
	c := &cluster{t: t, ws: agents.Workspaces{Root: filepath.Join(t.TempDir(), "workspaces")},
		open:   func() store.Store { return pgtest.OpenAt(t, url, postgres.Options{}) },
		locker: func(st store.Store) store.Locker { return st.(store.Locker) }}
	c.bootstrap()
	return c
}

func (c *cluster) economy() *economy.Economy {
	set, err := app.Settings(config.Default())
	if err != nil {
		c.t.Fatal(err)
	}
	set.Capacity.CPUMillis = 2000
	return economy.New(c.open(), set, c.ws, genesisProject(), quiet, economy.Options{})
}

func (c *cluster) bootstrap() {
	c.first = c.economy()
	if _, err := c.first.Bootstrap(c.t.Context()); err != nil {
		c.t.Fatal(err)
	}
}

// scheduler is a scheduler process on its own pool; its locker records the
// lock it holds so a test can end that session.
func (c *cluster) scheduler(cycle, check, runnerTimeout time.Duration) (*runtime.Scheduler, *recordingLocker) {
	eco := c.economy()
	lk := &recordingLocker{inner: c.locker(eco.Store())}
	s := runtime.NewScheduler(eco, lk, runtime.SchedulerConfig{ID: runtime.SchedulerID(), Host: "test", PID: os.Getpid(),
		Cycle: cycle, CheckEvery: check, RunnerTimeout: runnerTimeout}, quiet)
	return s, lk
}

// runner is a runner process on its own pool running agent in a fake sandbox.
func (c *cluster) runner(id string, pid, slots int, heartbeat time.Duration, agent fake.Agent) (*runtime.Runner, *fake.Sandbox) {
	sb := fake.New(agent)
	r := runtime.NewRunner(c.economy(), sb, runtime.RunnerConfig{ID: id, Host: "test", PID: pid, Slots: slots,
		Heartbeat: heartbeat, Poll: 20 * time.Millisecond, LostAfter: 10 * time.Second, ServiceURL: "http://api.invalid",
		OutputLimit: 4096, MaxProcs: 32, StopGrace: 200 * time.Millisecond}, quiet)
	return r, sb
}

// events reads every event of a type.
func (c *cluster) events(typ string) []store.Event {
	c.t.Helper()
	var out []store.Event
	ctx := context.Background()
	if err := c.first.Store().Read(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListEvents(ctx, store.EventFilter{Type: typ})
		return err
	}); err != nil {
		c.t.Fatal(err)
	}
	return out
}

// clusterBackends are the stores a cluster test runs on, each opened fresh.
var clusterBackends = []struct {
	name string
	open func(*testing.T) *cluster
}{{"sqlite", sqliteCluster}, {"postgres", postgresCluster}}

func (c *cluster) executions(f store.ExecutionFilter) []store.Execution {
	c.t.Helper()
	var out []store.Execution
	ctx := context.Background()
	if err := c.first.Store().Read(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListExecutions(ctx, f)
		return err
	}); err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *cluster) runnerRow(id string) store.Runner {
	c.t.Helper()
	r, err := c.first.Runner(context.Background(), id)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// recordingLocker remembers the lock it handed out last; once cut it
// reaches the database no more.
type recordingLocker struct {
	inner store.Locker
	mu    sync.Mutex
	held  store.SessionLock
	dead  bool
}

func (l *recordingLocker) cut() {
	l.mu.Lock()
	l.dead = true
	l.mu.Unlock()
}

func (l *recordingLocker) TryLock(ctx context.Context, name string) (store.SessionLock, error) {
	l.mu.Lock()
	dead := l.dead
	l.mu.Unlock()
	if dead {
		return nil, errors.New("connection refused")
	}
	lk, err := l.inner.TryLock(ctx, name)
	if err == nil && name == "scheduler" {
		l.mu.Lock()
		l.held = lk
		l.mu.Unlock()
	}
	return lk, err
}

func (l *recordingLocker) lock() store.SessionLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func cycleOf(t *testing.T, eco *economy.Economy) int64 {
	t.Helper()
	m, err := eco.Market(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return m.Cycle
}

// TestLeaderElection runs two schedulers on one database: exactly one leads
// and clears; when the leader's session dies (PostgreSQL) or it stops, the
// other takes over within seconds and clearing goes on.
func TestLeaderElection(t *testing.T) {
	t.Parallel()
	for _, tc := range clusterBackends {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := tc.open(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type proc struct {
				s      *runtime.Scheduler
				lk     *recordingLocker
				cancel context.CancelFunc
				done   chan struct{}
			}
			procs := make([]*proc, 2)
			for i := range procs {
				s, lk := c.scheduler(20*time.Millisecond, 50*time.Millisecond, time.Minute)
				pctx, pcancel := context.WithCancel(ctx)
				p := &proc{s: s, lk: lk, cancel: pcancel, done: make(chan struct{})}
				go func() { defer close(p.done); s.Run(pctx) }()
				procs[i] = p
			}
			leaders := func() []*proc {
				var out []*proc
				for _, p := range procs {
					if p.s.IsLeader() {
						out = append(out, p)
					}
				}
				return out
			}
			eventually(t, 5*time.Second, "a leader", func() bool { return len(leaders()) == 1 })
			// Never two at once, and the leader clears.
			before := cycleOf(t, c.first)
			for range 20 {
				if n := len(leaders()); n != 1 {
					t.Fatalf("%d leaders", n)
				}
				time.Sleep(10 * time.Millisecond)
			}
			eventually(t, 5*time.Second, "clearing", func() bool { return cycleOf(t, c.first) > before+3 })

			old := leaders()[0]
			if tc.name == "postgres" {
				// The leader's database session ends (its connection closed),
				// and it cannot get a new one.
				old.lk.cut()
				pid := old.lk.lock().(*postgres.SessionLock).BackendPID()
				terminateBackend(t, pid)
			} else {
				old.cancel()
				<-old.done
			}
			var next *proc
			took := eventually(t, 5*time.Second, "the standby to take over", func() bool {
				for _, p := range leaders() {
					if p != old {
						next = p
					}
				}
				return next != nil
			})
			t.Logf("failover took %s", took.Round(time.Millisecond))
			eventually(t, 5*time.Second, "the old leader to step down", func() bool { return !old.s.IsLeader() })
			before = cycleOf(t, c.first)
			eventually(t, 5*time.Second, "clearing after the failover", func() bool { return cycleOf(t, c.first) > before+3 })
			// Each leadership is on record.
			evs := c.events("scheduler.leader")
			if len(evs) != 2 {
				t.Fatalf("%d scheduler.leader events, want 2", len(evs))
			}
			var second struct{ Previous string }
			json.Unmarshal(evs[1].Data, &second)
			if second.Previous == "" {
				t.Errorf("the second scheduler.leader event names no previous leader: %s", evs[1].Data)
			}
			cancel()
			for _, p := range procs {
				<-p.done
			}
		})
	}
}

// terminateBackend ends a PostgreSQL session, as the crash of its client would.
func terminateBackend(t *testing.T, pid int) {
	t.Helper()
	db, err := sql.Open("pgx", pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ok bool
	if err := db.QueryRow(`SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
	}
}

// A fenced-off former leader cannot clear: the leadership record decides.
func TestClearAsLeaderIsFenced(t *testing.T) {
	t.Parallel()
	c := sqliteCluster(t)
	ctx := t.Context()
	eco := c.first
	if _, err := eco.TakeLeadership(ctx, economy.LeaderInfo{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := eco.ClearAsLeader(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := eco.TakeLeadership(ctx, economy.LeaderInfo{ID: "b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := eco.ClearAsLeader(ctx, "a"); !errors.Is(err, economy.ErrNotLeader) {
		t.Fatalf("old leader cleared: %v", err)
	}
	if cycleOf(t, eco) != 1 {
		t.Fatalf("cycle %d after one clearing", cycleOf(t, eco))
	}
}
