// Package sqlstore is the SQL both database backends share: one
// implementation of store.Tx over database/sql, the versioned schema, the
// migration loop and the transaction runner. A backend (sqlite, postgres)
// supplies a small Dialect — placeholders, column types, how to recognise a
// unique violation or a transaction the database aborted to keep writers
// serializable — and decides how to open, pool and retry.
//
// sqlstore owns SQL text and row mapping only. It never decides anything the
// domain decides (balances, winners, deaths), never opens a database itself,
// and never retries: retrying a transaction is the backend's choice.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bpagents/bpagents/internal/store"
)

// Class sorts a driver error for the store.
type Class int

// Error classes.
const (
	// Other errors are returned as they are.
	Other Class = iota
	// Unique is a unique or primary key violation: store.ErrConflict.
	Unique
	// Retry means the database aborted the transaction (a serialization
	// failure or a deadlock) and running it again may succeed.
	Retry
)

// Dialect is what differs between the SQL databases.
type Dialect struct {
	// Name prefixes errors ("sqlite", "postgres").
	Name string
	// Numbered selects $1, $2, … placeholders instead of ?.
	Numbered bool
	// Classify sorts a driver error.
	Classify func(error) Class
	// Types rewrites the schema's column types (written in SQLite's words);
	// nil keeps them.
	Types *strings.Replacer
	// MigrationLock, when set, is run first in every migration transaction to
	// keep other processes from migrating at the same time.
	MigrationLock string
	// SkipLocked is appended to the SELECT that picks executions to claim
	// (" FOR UPDATE SKIP LOCKED" where rows can be locked); SQLite, whose
	// writers run one at a time, needs nothing.
	SkipLocked string

	bound sync.Map // query text → text with numbered placeholders
}

// bind returns q with the dialect's placeholders.
func (d *Dialect) bind(q string) string {
	if !d.Numbered || !strings.Contains(q, "?") {
		return q
	}
	if v, ok := d.bound.Load(q); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	d.bound.Store(q, b.String())
	return b.String()
}

// Mode says how Attempt runs a transaction.
type Mode struct {
	// Options are passed to BeginTx (isolation, read only); nil: defaults.
	Options *sql.TxOptions
	// Commit keeps what fn did; otherwise the transaction is rolled back (a
	// read-only transaction has nothing to keep).
	Commit bool
	// First, when set, is run in the transaction before fn (a lock).
	First string
	// Statements, when set, caches the prepared statements of the pool the
	// transaction is begun on (see Statements).
	Statements *Statements
}

// Beginner starts transactions: a *sql.DB, or a *sql.Conn when the
// transaction must run on a connection that holds something (a session lock).
type Beginner interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// Attempt runs fn once in a transaction begun on db as mode says. If fn
// returns an error or panics, the transaction is rolled back. retry reports
// that the database aborted the transaction for a reason that running it
// again may cure (see Retry); the error says why.
func Attempt(ctx context.Context, db Beginner, d *Dialect, mode Mode, fn func(tx store.Tx) error) (retry bool, err error) {
	// Queries first seen in this transaction are prepared after it, when it
	// holds no connection (deferred first: it runs last).
	defer mode.Statements.prepareWanted(ctx)
	sqlTx, err := db.BeginTx(ctx, mode.Options)
	if err != nil {
		return d.Classify(err) == Retry, fmt.Errorf("%s: begin: %w", d.Name, err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = sqlTx.Rollback()
			panic(p)
		}
	}()
	t := &Tx{tx: sqlTx, d: d, stmts: mode.Statements}
	if mode.First != "" {
		if _, err := t.exec(ctx, mode.First); err != nil {
			_ = sqlTx.Rollback()
			return t.aborted != nil, err
		}
	}
	if err := fn(t); err != nil {
		_ = sqlTx.Rollback()
		return t.aborted != nil, err
	}
	if t.aborted != nil {
		// fn went on after the database aborted the transaction; nothing it
		// did can commit.
		_ = sqlTx.Rollback()
		return true, t.aborted
	}
	if !mode.Commit {
		_ = sqlTx.Rollback()
		return false, nil
	}
	if err := sqlTx.Commit(); err != nil {
		return d.Classify(err) == Retry, fmt.Errorf("%s: commit: %w", d.Name, err)
	}
	return false, nil
}

// Tx implements store.Tx on a database/sql transaction.
type Tx struct {
	tx    *sql.Tx
	d     *Dialect
	stmts *Statements // nil: queries run unprepared
	// aborted is the first error with which the database aborted the
	// transaction (class Retry).
	aborted error
}

var _ store.Tx = (*Tx)(nil)

// err turns a driver error into a store error where callers care:
// sql.ErrNoRows is store.ErrNotFound, a unique violation store.ErrConflict.
func (t *Tx) err(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	switch t.d.Classify(err) {
	case Unique:
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	case Retry:
		if t.aborted == nil {
			t.aborted = fmt.Errorf("%s: %w", t.d.Name, err)
		}
		return t.aborted
	}
	return err
}

func (t *Tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	res, err := t.execSQL(ctx, q, args)
	return res, t.err(err)
}

// changed runs q and reports whether it changed any row.
func (t *Tx) changed(ctx context.Context, q string, args ...any) (bool, error) {
	res, err := t.exec(ctx, q, args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, t.err(err)
}

// expectOne runs q and turns "no row changed" into ErrNotFound.
func (t *Tx) expectOne(ctx context.Context, q string, args ...any) error {
	ok, err := t.changed(ctx, q, args...)
	if err == nil && !ok {
		err = store.ErrNotFound
	}
	return err
}

// scanner is a row being read.
type scanner interface{ Scan(dest ...any) error }

// scalar runs q and scans its one row into dest.
func (t *Tx) scalar(ctx context.Context, q string, args []any, dest ...any) error {
	return t.err(t.queryRowSQL(ctx, q, args).Scan(dest...))
}

// queryOne runs q and scans its one row with scan; no row is ErrNotFound.
func queryOne[T any](ctx context.Context, t *Tx, scan func(scanner) (T, error), q string, args ...any) (T, error) {
	v, err := scan(t.queryRowSQL(ctx, q, args))
	return v, t.err(err)
}

// getOne reads the row q selects by key; errors name it ("agent \"x\": not found").
func getOne[T any](ctx context.Context, t *Tx, scan func(scanner) (T, error), what, q, key string) (T, error) {
	v, err := queryOne(ctx, t, scan, q, key)
	if err != nil {
		return v, fmt.Errorf("%s %q: %w", what, key, err)
	}
	return v, nil
}

// queryAll runs q and scans every row with scan.
func queryAll[T any](ctx context.Context, t *Tx, scan func(scanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := t.querySQL(ctx, q, args)
	if err != nil {
		return nil, t.err(err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, t.err(err)
		}
		out = append(out, v)
	}
	return out, t.err(rows.Err())
}

// filter collects WHERE conditions and their arguments.
type filter struct {
	where []string
	args  []any
}

func (f *filter) add(cond string, args ...any) {
	f.where = append(f.where, cond)
	f.args = append(f.args, args...)
}

// sql returns q with the conditions, then order, then a LIMIT when limit > 0.
func (f *filter) sql(q, order string, limit int) (string, []any) {
	if len(f.where) > 0 {
		q += " WHERE " + strings.Join(f.where, " AND ")
	}
	q += " ORDER BY " + order
	args := f.args
	if limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	return q, args
}

// ts stores a time as Unix microseconds; the zero time is 0.
func ts(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromTS(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}
