package sqlstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/bpagents/bpagents/internal/store"
)

// Call is one write function a Batch runs, with what became of it.
type Call struct {
	// Ctx is the caller's context: a call whose context has ended when its
	// turn comes does not run.
	Ctx context.Context
	Fn  func(tx store.Tx) error

	// Err is what Fn returned, or why it did not run. Panic is what Fn
	// panicked with (nil: it did not). Either way its changes were rolled
	// back to its savepoint.
	Err   error
	Panic any
}

// ErrBatch marks a failure of a batch as a whole: nothing of it is kept, and
// each call may be run again on its own.
var ErrBatch = errors.New("batch failed")

// savepoint brackets each call of a batch.
const (
	savepoint        = `SAVEPOINT call`
	releaseSavepoint = `RELEASE SAVEPOINT call`
	rollbackToCall   = `ROLLBACK TO SAVEPOINT call`
)

// Batch runs calls, in order, in one transaction begun on db, each inside a
// savepoint of its own, and commits them together: a call whose function
// fails or panics is rolled back to its savepoint and the others go on, so
// each call keeps all or nothing of its own changes, and later calls see the
// changes of earlier ones exactly as if they had run one after the other.
//
// It returns nil when the transaction committed: every call's own outcome is
// then in its Err and Panic. It returns an error wrapping ErrBatch when the
// batch as a whole failed (begin, a savepoint the database dropped, commit):
// then nothing of it was kept and the calls' outcomes are meaningless. The
// transaction runs under a context of its own, so that one caller giving up
// does not roll the others back. Call it holding no connection of db's pool.
func Batch(db Beginner, d *Dialect, stmts *Statements, calls []*Call) (err error) {
	ctx := context.Background()
	defer stmts.prepareWanted(ctx)
	sqlTx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%w: %s: begin: %w", ErrBatch, d.Name, err)
	}
	t := &Tx{tx: sqlTx, d: d, stmts: stmts}
	for _, c := range calls {
		if err := c.Ctx.Err(); err != nil {
			c.Err = err
			continue
		}
		if _, err := t.execSQL(ctx, savepoint, nil); err != nil {
			_ = sqlTx.Rollback()
			return fmt.Errorf("%w: %s: savepoint: %w", ErrBatch, d.Name, err)
		}
		c.Err, c.Panic = runCall(t, c.Fn)
		if c.Err != nil || c.Panic != nil {
			if _, err := t.execSQL(ctx, rollbackToCall, nil); err != nil {
				// The database rolled the whole transaction back (an
				// interrupted statement, an I/O error): nothing is left.
				_ = sqlTx.Rollback()
				return fmt.Errorf("%w: %s: rollback to savepoint: %w", ErrBatch, d.Name, err)
			}
		}
		if _, err := t.execSQL(ctx, releaseSavepoint, nil); err != nil {
			_ = sqlTx.Rollback()
			return fmt.Errorf("%w: %s: release savepoint: %w", ErrBatch, d.Name, err)
		}
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("%w: %s: commit: %w", ErrBatch, d.Name, err)
	}
	return nil
}

// runCall runs fn, turning a panic into a value.
func runCall(t *Tx, fn func(tx store.Tx) error) (err error, panicked any) {
	defer func() {
		if p := recover(); p != nil {
			panicked = p
		}
	}()
	return fn(t), nil
}
