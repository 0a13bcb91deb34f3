package store

import (
	"context"
	"errors"
	"time"
)

// Runner statuses.
const (
	RunnerActive  = "active"  // registered and sending heartbeats
	RunnerStopped = "stopped" // shut down in order
	RunnerLost    = "lost"    // stopped sending heartbeats; its executions were closed for it
)

// Runner is one process that runs executions (the runner role), as it
// registered itself. ID is stable across its restarts, so a restarted runner
// finds what its previous process left behind.
type Runner struct {
	ID      string
	Host    string
	PID     int64
	Sandbox string // the backend it runs executions in
	// Slots is how many executions it runs at once; 0 means no limit of its
	// own (the market's capacity still bounds it).
	Slots     int64
	Status    string
	Started   time.Time
	Heartbeat time.Time
	Ended     time.Time
}

// Runners is the registry of runner processes and their claims on queued
// executions.
type Runners interface {
	// PutRunner inserts r, or replaces every field of the runner with r.ID.
	PutRunner(ctx context.Context, r Runner) error
	GetRunner(ctx context.Context, id string) (Runner, error)
	// ListRunners lists runners by id; status "" lists all.
	ListRunners(ctx context.Context, status string) ([]Runner, error)
	// TouchRunner records a heartbeat of the active runner id. It returns
	// ErrNotFound when no runner with that id is active (it was declared
	// lost, or never registered).
	TouchRunner(ctx context.Context, id string, at time.Time) error
	// ClaimExecutions gives runnerID up to limit queued executions that no
	// runner claimed yet, oldest first, recording the claim (RunnerID,
	// Claimed) and returning them. A database that locks rows (postgres)
	// skips rows another transaction holds (FOR UPDATE SKIP LOCKED), so that
	// runners claiming at the same moment neither wait for each other nor get
	// the same execution.
	ClaimExecutions(ctx context.Context, runnerID string, limit int, at time.Time) ([]Execution, error)
}

// ErrLocked means a named lock is held by another session.
var ErrLocked = errors.New("locked by another session")

// Locker is implemented by stores that several processes share (postgres):
// named locks held by one database session and released when it ends, even
// by a crash of the process holding it. The scheduler's leader election uses
// it; a store only one process uses (sqlite) does not implement it.
type Locker interface {
	// TryLock takes the named lock on a session of its own, without waiting.
	// It returns ErrLocked when another session holds it.
	TryLock(ctx context.Context, name string) (SessionLock, error)
}

// SessionLock is a lock held by a database session.
type SessionLock interface {
	// Check asks the session whether it still holds the lock; an error means
	// it may not (the connection broke, so the server released it).
	Check(ctx context.Context) error
	// Unlock releases the lock and ends the session.
	Unlock(ctx context.Context) error
}
