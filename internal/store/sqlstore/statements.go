package sqlstore

import (
	"context"
	"database/sql"
	"sync"
)

// Statements keeps the prepared statements of one connection pool, so that
// a query's text is parsed once per connection instead of on every call.
// database/sql prepares a cached statement on each connection the first time
// that connection runs it, and a transaction reuses it (Tx.StmtContext).
//
// A backend whose driver already caches statements itself (pgx does) needs
// none; SQLite's driver parses every query text it is given, which costs more
// than running the query.
type Statements struct {
	db *sql.DB

	mu     sync.Mutex
	cached map[string]*sql.Stmt // nil value: does not prepare, runs unprepared
	wanted map[string]bool      // seen, not prepared yet
	closed bool
}

// maxStatements bounds the cache: the store's queries are a fixed set (their
// filters combine in a few ways), so anything beyond it runs unprepared.
const maxStatements = 512

// NewStatements returns an empty cache for db.
func NewStatements(db *sql.DB) *Statements {
	return &Statements{db: db, cached: map[string]*sql.Stmt{}}
}

// Close closes every cached statement; later queries run unprepared.
func (s *Statements) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var first error
	for q, st := range s.cached {
		if st != nil {
			if err := st.Close(); err != nil && first == nil {
				first = err
			}
		}
		delete(s.cached, q)
	}
	return first
}

// lookup returns the cached statement for q, or nil; a query not cached yet
// is noted, to be prepared by prepareWanted once the caller holds no
// connection (preparing on a pool while holding one of its connections could
// wait forever for a free one).
func (s *Statements) lookup(q string) *sql.Stmt {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.cached[q]; ok {
		return st
	}
	if !s.closed && len(s.cached)+len(s.wanted) < maxStatements {
		if s.wanted == nil {
			s.wanted = map[string]bool{}
		}
		s.wanted[q] = true
	}
	return nil
}

// prepareWanted prepares the queries lookup noted. Call it holding no
// connection of the pool. A query that fails to prepare runs unprepared
// (and reports its own error) from then on.
func (s *Statements) prepareWanted(ctx context.Context) {
	if s == nil {
		return
	}
	s.mu.Lock()
	var todo []string
	for q := range s.wanted {
		todo = append(todo, q)
	}
	clear(s.wanted)
	s.mu.Unlock()
	for _, q := range todo {
		if ctx.Err() != nil {
			return
		}
		st, err := s.db.PrepareContext(ctx, q)
		s.mu.Lock()
		switch {
		case err != nil:
			s.cached[q] = nil
		case s.closed || s.cached[q] != nil:
			st.Close()
		default:
			s.cached[q] = st
		}
		s.mu.Unlock()
	}
}

// stmt returns q's cached statement bound to the transaction, or nil.
func (t *Tx) stmt(ctx context.Context, q string) *sql.Stmt {
	st := t.stmts.lookup(q)
	if st == nil {
		return nil
	}
	return t.tx.StmtContext(ctx, st)
}

// execSQL runs q (in the dialect's placeholders) in the transaction.
func (t *Tx) execSQL(ctx context.Context, q string, args []any) (sql.Result, error) {
	q = t.d.bind(q)
	if st := t.stmt(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, q, args...)
}

// queryRowSQL runs q, which selects at most one row.
func (t *Tx) queryRowSQL(ctx context.Context, q string, args []any) *sql.Row {
	q = t.d.bind(q)
	if st := t.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, q, args...)
}

// querySQL runs q and returns its rows.
func (t *Tx) querySQL(ctx context.Context, q string, args []any) (*sql.Rows, error) {
	q = t.d.bind(q)
	if st := t.stmt(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, q, args...)
}
