package sqlite

// Group commit: SQLite has one writer, and with synchronous=FULL each commit
// waits for the disk. So every Write goes to one writer goroutine, which
// takes all the writes waiting at that moment (up to maxBatch) and runs them
// in one transaction, each inside a savepoint of its own (sqlstore.Batch),
// then commits once: one fsync for the whole group. A write that fails or
// panics is rolled back to its savepoint alone. Every caller returns only
// after the shared commit, so a Write that returned nil is durable, exactly
// as before; writes still run one at a time, in the order they queued.
//
// If the group as a whole fails (the database rolled the transaction back
// under it, or the commit failed), nothing of it was kept, and each write is
// run again in a transaction of its own, which the store contract allows (a
// write function may run more than once).

import (
	"context"
	"errors"

	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/sqlstore"
)

// maxBatch bounds how many writes share one transaction, and so how long
// the first of them waits for the last.
const maxBatch = 256

// errClosed answers writes made after Close.
var errClosed = errors.New("sqlite: the store is closed")

// write is one Write waiting for the writer goroutine.
type write struct {
	call sqlstore.Call
	done chan struct{}
}

// startWriter starts the writer goroutine; Close stops it.
func (db *DB) startWriter() {
	db.queue = make(chan *write)
	db.closing = make(chan struct{})
	db.stopped = make(chan struct{})
	go db.writeLoop()
}

// Write implements store.Store: fn runs in the writer goroutine, in a
// transaction it may share with other writes (each in its own savepoint),
// and Write returns once that transaction committed.
func (db *DB) Write(ctx context.Context, fn func(tx store.Tx) error) error {
	w := &write{call: sqlstore.Call{Ctx: ctx, Fn: fn}, done: make(chan struct{})}
	select {
	case db.queue <- w:
	case <-ctx.Done():
		return ctx.Err()
	case <-db.closing:
		return errClosed
	}
	// Once queued, the write is answered: even a cancelled caller waits to
	// learn whether its changes committed.
	<-w.done
	if w.call.Panic != nil {
		panic(w.call.Panic)
	}
	return w.call.Err
}

// writeLoop runs writes until Close, in groups.
func (db *DB) writeLoop() {
	defer close(db.stopped)
	batch := make([]*write, 0, maxBatch)
	for {
		select {
		case w := <-db.queue:
			batch = append(batch[:0], w)
		case <-db.closing:
			return
		}
	more:
		for len(batch) < maxBatch {
			select {
			case w := <-db.queue:
				batch = append(batch, w)
			default:
				break more
			}
		}
		db.commitGroup(batch)
		for _, w := range batch {
			close(w.done)
		}
		clear(batch)
	}
}

// commitGroup runs a group of writes in one transaction, or, if that
// transaction fails as a whole, each in its own.
func (db *DB) commitGroup(batch []*write) {
	calls := make([]*sqlstore.Call, len(batch))
	for i, w := range batch {
		calls[i] = &w.call
	}
	if len(calls) > 1 {
		err := sqlstore.Batch(db.writer, &dialect, db.writes, calls)
		if err == nil {
			return
		}
		db.log.Warn("a group of writes failed as a whole; running each alone", "writes", len(calls), "err", err)
	}
	for _, c := range calls {
		c.Err, c.Panic = db.writeAlone(c.Ctx, c.Fn)
	}
}

// writeAlone runs fn in a transaction of its own.
func (db *DB) writeAlone(ctx context.Context, fn func(tx store.Tx) error) (err error, panicked any) {
	defer func() {
		if p := recover(); p != nil {
			panicked = p
		}
	}()
	if err := ctx.Err(); err != nil {
		return err, nil
	}
	_, err = sqlstore.Attempt(ctx, db.writer, &dialect, sqlstore.Mode{Commit: true, Statements: db.writes}, fn)
	return err, nil
}

// stopWriter ends the writer goroutine after the group it is running.
// Writes queued behind that group, and later ones, get errClosed.
func (db *DB) stopWriter() {
	db.stopOnce.Do(func() { close(db.closing) })
	<-db.stopped
}
