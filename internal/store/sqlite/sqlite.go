// Package sqlite is the embedded store backend: SQLite through a pure-Go
// driver (no C toolchain), in WAL mode, with versioned migrations applied at
// open.
//
// It owns the SQL for SQLite and nothing else: it never decides whether a
// transfer is allowed or who wins a bid. All writes go through one connection
// in BEGIN IMMEDIATE transactions, so writers queue instead of failing with
// SQLITE_BUSY; reads use a separate pool and see consistent WAL snapshots.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/bpagents/bpagents/internal/store"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Options tune the database.
type Options struct {
	// Synchronous is SQLite's synchronous pragma: "FULL" (default; every
	// commit survives power loss) or "NORMAL" (survives a crash of the
	// process, may lose the last commits on power loss).
	Synchronous string
}

// DB is a SQLite-backed store.Store.
type DB struct {
	path   string
	writer *sql.DB
	reader *sql.DB
}

var _ store.Store = (*DB)(nil)

// Open opens (creating if needed) the database at path and migrates it.
func Open(ctx context.Context, path string, opt Options) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	sync := strings.ToUpper(opt.Synchronous)
	if sync == "" {
		sync = "FULL"
	}
	if sync != "FULL" && sync != "NORMAL" {
		return nil, fmt.Errorf("sqlite: synchronous must be FULL or NORMAL, not %q", opt.Synchronous)
	}
	pragmas := []string{
		"journal_mode(WAL)",
		"busy_timeout(10000)",
		"foreign_keys(ON)",
		"synchronous(" + sync + ")",
		"cache_size(-16000)",
	}
	dsn := func(extra string) string {
		q := url.Values{}
		for _, p := range pragmas {
			q.Add("_pragma", p)
		}
		if extra != "" {
			q.Set("_txlock", extra)
		}
		return "file:" + abs + "?" + q.Encode()
	}
	writer, err := sql.Open("sqlite", dsn("immediate"))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	if err := writer.PingContext(ctx); err != nil {
		writer.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	if err := migrate(ctx, writer); err != nil {
		writer.Close()
		return nil, err
	}
	reader, err := sql.Open("sqlite", dsn("deferred"))
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	n := max(4, runtime.NumCPU()*2)
	reader.SetMaxOpenConns(n)
	reader.SetMaxIdleConns(n)
	return &DB{path: abs, writer: writer, reader: reader}, nil
}

// Backend implements store.Store.
func (db *DB) Backend() string { return "sqlite" }

// Path is the database file.
func (db *DB) Path() string { return db.path }

// Close closes both pools.
func (db *DB) Close() error {
	return errors.Join(db.reader.Close(), db.writer.Close())
}

// Write implements store.Store.
func (db *DB) Write(ctx context.Context, fn func(tx store.Tx) error) error {
	return runTx(ctx, db.writer, false, fn)
}

// Read implements store.Store.
func (db *DB) Read(ctx context.Context, fn func(tx store.Tx) error) error {
	return runTx(ctx, db.reader, true, fn)
}

func runTx(ctx context.Context, pool *sql.DB, readOnly bool, fn func(tx store.Tx) error) (err error) {
	sqlTx, err := pool.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = sqlTx.Rollback()
			panic(p)
		}
	}()
	t := &tx{tx: sqlTx}
	if err := fn(t); err != nil {
		_ = sqlTx.Rollback()
		return err
	}
	if readOnly {
		// Nothing to keep; ending with rollback releases the snapshot cheaply.
		_ = sqlTx.Rollback()
		return nil
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

// tx implements store.Tx on a database/sql transaction.
type tx struct {
	tx *sql.Tx
}

func (t *tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	res, err := t.tx.ExecContext(ctx, q, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	return res, nil
}

// mapErr turns driver errors into store errors where callers care.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	msg := err.Error()
	if strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "PRIMARY KEY constraint failed") {
		return fmt.Errorf("%w: %s", store.ErrConflict, msg)
	}
	return err
}

// queryAll runs q and scans every row with scan.
func queryAll[T any](ctx context.Context, t *tx, scan func(scanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := t.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// expectOne turns "no row changed" into ErrNotFound.
func expectOne(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}
