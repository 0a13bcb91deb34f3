package postgres_test

import (
	"errors"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/postgres"
	"github.com/bpagents/bpagents/internal/store/postgres/pgtest"
)

// TestSessionLock: one session holds a named lock; others are refused until
// it unlocks or its session dies, and other names and schemas are separate.
func TestSessionLock(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	a := pgtest.OpenAt(t, url, postgres.Options{})
	b := pgtest.OpenAt(t, url, postgres.Options{})
	other := pgtest.Open(t, postgres.Options{})
	ctx := t.Context()

	held, err := a.TryLock(ctx, "scheduler")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.TryLock(ctx, "scheduler"); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second TryLock: %v, want ErrLocked", err)
	}
	// The same process cannot take it twice either: each lock is its own session.
	if _, err := a.TryLock(ctx, "scheduler"); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("TryLock again from the holder's pool: %v, want ErrLocked", err)
	}
	for name, db := range map[string]*postgres.DB{"another name": b, "another schema": other} {
		lockName := "scheduler"
		if name == "another name" {
			lockName = "bootstrap"
		}
		l, err := db.TryLock(ctx, lockName)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := held.Check(ctx); err != nil {
		t.Fatalf("Check of a held lock: %v", err)
	}
	// Unlock hands it over at once.
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	held, err = b.TryLock(ctx, "scheduler")
	if err != nil {
		t.Fatalf("TryLock after Unlock: %v", err)
	}

	// The holder's session dies (a crash): Check says so and the lock is free.
	pid := held.(*postgres.SessionLock).BackendPID()
	terminate(t, url, pid)
	if err := held.Check(ctx); err == nil {
		t.Fatal("Check after the session was terminated reported the lock held")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := a.TryLock(ctx, "scheduler")
		if err == nil {
			l.Unlock(ctx)
			break
		}
		if !errors.Is(err, store.ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("TryLock after the holder died: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := held.Unlock(ctx); err != nil {
		t.Fatalf("Unlock of a lost lock: %v", err)
	}
}

// terminate ends a server session, as a crash of its client would.
func terminate(t *testing.T, url string, pid int) {
	t.Helper()
	var ok bool
	if err := raw(t, url).QueryRow(`SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
	}
}
