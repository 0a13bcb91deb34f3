package postgres_test

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/postgres"
	"github.com/bpagents/bpagents/internal/store/postgres/pgtest"
	"github.com/bpagents/bpagents/internal/store/sqlstore"
	"github.com/bpagents/bpagents/internal/store/storetest"
)

// TestConformance runs the store suite, the one SQLite passes, on PostgreSQL.
func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return pgtest.Open(t, postgres.Options{}) })
}

// raw opens a plain connection pool on the schema of url.
func raw(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func schemaVersions(t *testing.T, url string) (maxVersion, rows int) {
	t.Helper()
	if err := raw(t, url).QueryRow(`SELECT COALESCE(MAX(version), 0), COUNT(*) FROM schema_migrations`).
		Scan(&maxVersion, &rows); err != nil {
		t.Fatal(err)
	}
	return maxVersion, rows
}

// meta reads a meta value in its own read transaction.
func meta(t *testing.T, db store.Store, key string) string {
	t.Helper()
	var v string
	ctx := t.Context()
	if err := db.Read(ctx, func(tx store.Tx) error {
		var err error
		v, err = tx.GetMeta(ctx, key)
		return err
	}); err != nil {
		t.Fatalf("GetMeta(%s): %v", key, err)
	}
	return v
}

// TestProcessesMigrateOnce opens one empty database from many pools at once,
// as processes starting together do: each migration is applied exactly once
// and every pool works.
func TestProcessesMigrateOnce(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	const n = 6
	dbs := make([]*postgres.DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			dbs[i], errs[i] = postgres.Open(t.Context(), url, postgres.Options{MaxConns: 2})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("process %d: %v", i, err)
		}
		t.Cleanup(func() { dbs[i].Close() })
	}
	if v, rows := schemaVersions(t, url); v != sqlstore.SchemaVersion || rows != sqlstore.SchemaVersion {
		t.Fatalf("version %d in %d rows, want %d", v, rows, sqlstore.SchemaVersion)
	}
	ctx := t.Context()
	for i, db := range dbs {
		if err := db.Write(ctx, func(tx store.Tx) error { return tx.SetMeta(ctx, fmt.Sprint("p", i), "up") }); err != nil {
			t.Fatalf("process %d write: %v", i, err)
		}
	}
	// Reopening applies nothing again.
	pgtest.OpenAt(t, url, postgres.Options{})
	if v, rows := schemaVersions(t, url); v != sqlstore.SchemaVersion || rows != sqlstore.SchemaVersion {
		t.Fatalf("after reopening: version %d in %d rows", v, rows)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	pgtest.OpenAt(t, url, postgres.Options{})
	if _, err := raw(t, url).Exec(`INSERT INTO schema_migrations(version, applied_at) VALUES ($1, 0)`,
		sqlstore.SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	db, err := postgres.Open(t.Context(), url, postgres.Options{})
	if err == nil {
		db.Close()
		t.Fatal("Open accepted a database from a newer binary")
	}
	if !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), fmt.Sprint(sqlstore.SchemaVersion+1)) {
		t.Fatalf("error %q does not explain the version mismatch", err)
	}
}

func TestOpenRefusesBadURLsWithoutShowingPasswords(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, url, want string }{
		{"not postgres", "mysql://u:hunter2@localhost/db", "not a postgres"},
		{"bad pool size", "postgres://u:hunter2@localhost/db?pool_max_conns=lots", "pool_max_conns"},
		{"nobody listening", "postgres://u:hunter2@127.0.0.1:1/db?sslmode=disable&connect_timeout=2", "connect"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db, err := postgres.Open(t.Context(), tc.url, postgres.Options{})
			if err == nil {
				db.Close()
				t.Fatalf("Open(%s) succeeded", tc.url)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error %q: want it to mention %q and never the password", err, tc.want)
			}
		})
	}
	if got := postgres.Redact("postgres://u:hunter2@h:5432/db?sslmode=disable"); strings.Contains(got, "hunter2") ||
		!strings.Contains(got, "u:xxxxx@h:5432/db") {
		t.Fatalf("Redact = %q", got)
	}
}

// TestWriteRetriesSerializationFailures makes two transactions collide on
// purpose: the loser sees a serialization failure, and Write runs its
// function again on a fresh snapshot, so its read-modify-write counts both.
func TestWriteRetriesSerializationFailures(t *testing.T) {
	t.Parallel()
	db := pgtest.Open(t, postgres.Options{})
	ctx := t.Context()
	if err := db.Write(ctx, func(tx store.Tx) error { return tx.SetMeta(ctx, "n", "0") }); err != nil {
		t.Fatal(err)
	}
	incr := func(tx store.Tx) error {
		v, err := tx.GetMeta(ctx, "n")
		if err != nil {
			return err
		}
		var n int
		fmt.Sscan(v, &n)
		return tx.SetMeta(ctx, "n", fmt.Sprint(n+1))
	}
	read, proceed := make(chan struct{}), make(chan struct{})
	var attempts atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- db.Write(ctx, func(tx store.Tx) error {
			if attempts.Add(1) == 1 {
				if _, err := tx.GetMeta(ctx, "n"); err != nil { // takes the snapshot
					return err
				}
				close(read)
				<-proceed // meanwhile another writer commits
			}
			return incr(tx)
		})
	}()
	<-read
	if err := db.Write(ctx, incr); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	if err := <-done; err != nil {
		t.Fatalf("colliding write: %v", err)
	}
	if attempts.Load() != 2 || db.Retries() < 1 {
		t.Fatalf("fn ran %d times, %d retries; want 2 and at least 1", attempts.Load(), db.Retries())
	}
	if got := meta(t, db, "n"); got != "2" {
		t.Fatalf("counter = %q; want 2", got)
	}
}

// TestWriteGivesUp: with one attempt allowed the collision is returned, and
// the error still says what PostgreSQL said.
func TestWriteGivesUp(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	db := pgtest.OpenAt(t, url, postgres.Options{MaxAttempts: 1})
	other := pgtest.OpenAt(t, url, postgres.Options{}) // another process
	ctx := t.Context()
	if err := db.Write(ctx, func(tx store.Tx) error { return tx.SetMeta(ctx, "k", "0") }); err != nil {
		t.Fatal(err)
	}
	read, proceed := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- db.Write(ctx, func(tx store.Tx) error {
			if calls.Add(1) == 1 {
				if _, err := tx.GetMeta(ctx, "k"); err != nil {
					return err
				}
				close(read)
				<-proceed
			}
			return tx.SetMeta(ctx, "k", "mine")
		})
	}()
	<-read
	if err := other.Write(ctx, func(tx store.Tx) error { return tx.SetMeta(ctx, "k", "other") }); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	err := <-done
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "40001" || calls.Load() != 1 {
		t.Fatalf("Write = %v after %d calls; want a serialization failure (40001) after 1", err, calls.Load())
	}
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a serialization failure is not a store error: %v", err)
	}
}

// TestWriteRunsAloneAfterRepeatedConflicts: a transaction that another
// process keeps beating is run alone after three failures, so it cannot
// starve; while it runs, that process's writers wait.
func TestWriteRunsAloneAfterRepeatedConflicts(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	db := pgtest.OpenAt(t, url, postgres.Options{})
	other := pgtest.OpenAt(t, url, postgres.Options{}) // another process
	ctx := t.Context()
	set := func(v string) func(tx store.Tx) error {
		return func(tx store.Tx) error { return tx.SetMeta(ctx, "k", v) }
	}
	if err := db.Write(ctx, set("0")); err != nil {
		t.Fatal(err)
	}
	// otherWrite runs a write in the other process and returns its result.
	otherWrite := func(v string) chan error {
		done := make(chan error, 1)
		go func() { done <- other.Write(ctx, set(v)) }()
		return done
	}
	var attempts int
	var late chan error
	err := db.Write(ctx, func(tx store.Tx) error {
		attempts++
		if _, err := tx.GetMeta(ctx, "k"); err != nil {
			return err
		}
		if attempts <= 3 {
			// The other process commits a conflicting write meanwhile.
			if err := <-otherWrite(fmt.Sprint("other ", attempts)); err != nil {
				t.Errorf("other writer: %v", err)
			}
		} else {
			late = otherWrite("after")
			select {
			case err := <-late:
				t.Errorf("another writer committed (%v) while this one ran alone", err)
			case <-time.After(300 * time.Millisecond):
			}
		}
		return tx.SetMeta(ctx, "k", "mine")
	})
	if err != nil || attempts != 4 {
		t.Fatalf("Write = %v after %d attempts; want success on the 4th", err, attempts)
	}
	if err := <-late; err != nil {
		t.Fatalf("the waiting writer: %v", err)
	}
	if got := meta(t, db, "k"); got != "after" {
		t.Fatalf("k = %q; want the waiting writer's value last", got)
	}
}
