package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"

	"github.com/bpagents/bpagents/internal/store"
)

var _ store.Locker = (*DB)(nil)

// lockClass is the first key of every named session lock; the second is a
// hash of the schema and the name, so economies in other schemas of the same
// database never share a lock.
const lockClass = 1651531119

// TryLock implements store.Locker with a session-level advisory lock
// (pg_try_advisory_lock) taken on a connection of its own, which is never
// returned to the pool: the lock lives exactly as long as that session, and
// PostgreSQL releases it when the session ends, whether the holder unlocks,
// crashes or loses its network.
func (db *DB) TryLock(ctx context.Context, name string) (store.SessionLock, error) {
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: lock %s: %w", name, err)
	}
	l := &SessionLock{conn: conn, name: name}
	var ok bool
	var pid int
	err = conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1, hashtext(current_schema() || '/' || $2)),
		pg_backend_pid()`, lockClass, name).Scan(&ok, &pid)
	if err != nil {
		l.discard()
		return nil, fmt.Errorf("postgres: lock %s: %w", name, err)
	}
	if !ok {
		_ = conn.Close() // holds nothing: back to the pool
		return nil, fmt.Errorf("postgres: lock %s: %w", name, store.ErrLocked)
	}
	l.pid = pid
	return l, nil
}

// SessionLock is a named advisory lock held by one PostgreSQL session.
type SessionLock struct {
	conn *sql.Conn
	name string
	pid  int

	once sync.Once
}

// BackendPID is the server process of the session holding the lock (tests
// end it with pg_terminate_backend to play a crash).
func (l *SessionLock) BackendPID() int { return l.pid }

// Check implements store.SessionLock: the session answers, so it still holds
// the lock (a session lock goes only with an unlock or the session).
func (l *SessionLock) Check(ctx context.Context) error {
	if _, err := l.conn.ExecContext(ctx, `SELECT 1`); err != nil {
		l.discard()
		return fmt.Errorf("postgres: lock %s: the session holding it is gone: %w", l.name, err)
	}
	return nil
}

// Unlock implements store.SessionLock. The session is ended either way, so the
// lock cannot outlive a failed unlock.
func (l *SessionLock) Unlock(ctx context.Context) error {
	_, err := l.conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1, hashtext(current_schema() || '/' || $2))`,
		lockClass, l.name)
	l.discard()
	if err != nil && !errors.Is(err, sql.ErrConnDone) {
		return fmt.Errorf("postgres: unlock %s: %w", l.name, err)
	}
	return nil
}

// discard closes the session instead of returning it to the pool.
func (l *SessionLock) discard() {
	l.once.Do(func() {
		_ = l.conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = l.conn.Close()
	})
}
