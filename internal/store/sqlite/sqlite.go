// Package sqlite is the embedded store backend: SQLite through a pure-Go
// driver (no C toolchain), in WAL mode, with versioned migrations applied at
// open.
//
// It owns opening and pooling SQLite and nothing else: the SQL itself is
// shared with the other backends (package sqlstore), and it never decides
// whether a transfer is allowed or who wins a bid. All writes go through one
// connection in BEGIN IMMEDIATE transactions, run by one writer goroutine
// that commits the writes waiting together in one transaction (group commit,
// see commit.go), so writers queue instead of failing with SQLITE_BUSY and
// run one at a time; reads use a separate pool and see consistent WAL
// snapshots.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/sqlstore"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Options tune the database.
type Options struct {
	// Synchronous is SQLite's synchronous pragma: "FULL" (default; every
	// commit survives power loss) or "NORMAL" (survives a crash of the
	// process, may lose the last commits on power loss).
	Synchronous string
	// Log receives the store's rare warnings (nil: discarded).
	Log *slog.Logger
}

// DB is a SQLite-backed store.Store.
type DB struct {
	path   string
	writer *sql.DB
	reader *sql.DB
	// writes and reads cache each pool's prepared statements.
	writes, reads *sqlstore.Statements
	log           *slog.Logger

	// The writer goroutine (commit.go): Write queues on queue; closing ends
	// the goroutine, which closes stopped.
	queue    chan *write
	closing  chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once
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
		"temp_store(MEMORY)", // savepoints' statement journals stay in memory
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
	if err := sqlstore.Migrate(ctx, writer, &dialect); err != nil {
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
	db := &DB{path: abs, writer: writer, reader: reader, log: opt.Log,
		writes: sqlstore.NewStatements(writer), reads: sqlstore.NewStatements(reader)}
	if db.log == nil {
		db.log = slog.New(slog.DiscardHandler)
	}
	db.startWriter()
	return db, nil
}

// Backend implements store.Store.
func (db *DB) Backend() string { return "sqlite" }

// Path is the database file.
func (db *DB) Path() string { return db.path }

// Close stops the writer goroutine (after the writes it is running) and
// closes both pools.
func (db *DB) Close() error {
	db.stopWriter()
	return errors.Join(db.reads.Close(), db.writes.Close(), db.reader.Close(), db.writer.Close())
}

// Read implements store.Store.
func (db *DB) Read(ctx context.Context, fn func(tx store.Tx) error) error {
	_, err := sqlstore.Attempt(ctx, db.reader, &dialect, sqlstore.Mode{Statements: db.reads}, fn)
	return err
}
