package postgres

// The settled horizon (store.Horizon). PostgreSQL takes an event's seq (and
// a transfer's id) from a sequence when the row is inserted, and shows the
// row when its transaction commits; with concurrent writers, seq 41 can
// appear after seq 42. A reader following "events after N" would pass 41 for
// good. The horizon tells it how far it may go.
//
// A transaction that takes a number holds a RowExclusiveLock on the table
// (taken before the number is drawn, released only after the commit has
// become visible). So: read each sequence's last value L, then the set W of
// transactions holding that lock on the events or transfers table of this
// schema. Every number ≤ L was drawn by a transaction that has committed (or
// aborted) or is in W. Once none of W holds the lock any more, L is settled.
// Each call takes such a probe, waits up to settleWait for its writers to
// end, and settles it and the earlier ones whose transactions have all ended;
// a probe taken while nobody writes settles at once. It never guesses: a
// transaction that stays open keeps the horizon where it is until it ends.

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"github.com/bpagents/bpagents/internal/store"
)

var _ store.Horizon = (*DB)(nil)

// horizon is the state behind Settled.
type horizon struct {
	mu      sync.Mutex
	settled store.Settled
	probes  []probe
	last    time.Time // when the last probe was taken
}

// probe is the last values of both sequences and the transactions that may
// still commit numbers at or below them.
type probe struct {
	at      store.Settled
	writers map[string]bool // virtual transaction ids
}

const (
	// horizonReuse: calls within this interval share one probe (many event
	// streams polling at once cost one pair of queries).
	horizonReuse = 5 * time.Millisecond
	// maxProbes bounds the probes waiting to settle; the oldest go first (a
	// later probe, once settled, settles everything an earlier one would).
	maxProbes = 64
	// settleWait bounds how long a call waits for the transactions that may
	// still commit numbers below its probe, looking every settlePoll; a
	// transaction open for longer leaves the probe to a later call.
	settleWait = 250 * time.Millisecond
	settlePoll = 2 * time.Millisecond
)

const (
	lastValues = `SELECT
		COALESCE(pg_sequence_last_value(pg_get_serial_sequence('events', 'seq')::regclass), 0),
		COALESCE(pg_sequence_last_value(pg_get_serial_sequence('transfers', 'id')::regclass), 0)`
	writersNow = `SELECT virtualtransaction FROM pg_locks
		WHERE locktype = 'relation' AND granted AND mode = 'RowExclusiveLock'
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND relation IN ('events'::regclass, 'transfers'::regclass)`
)

// Settled implements store.Horizon.
func (db *DB) Settled(ctx context.Context) (store.Settled, error) {
	h := &db.horizon
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.last) < horizonReuse {
		return h.settled, nil
	}
	// The order matters: the last values first, then who writes.
	var p probe
	if err := db.sql.QueryRowContext(ctx, lastValues).Scan(&p.at.EventSeq, &p.at.TransferID); err != nil {
		return h.settled, fmt.Errorf("postgres: settled horizon: %w", err)
	}
	writers, err := db.writers(ctx)
	if err != nil {
		return h.settled, err
	}
	h.last = time.Now()
	keep := h.probes[:0]
	for _, old := range h.probes {
		if disjoint(old.writers, writers) {
			h.advance(old.at)
		} else {
			keep = append(keep, old)
		}
	}
	h.probes = keep
	// Writers' transactions last milliseconds: wait a little for this
	// probe's to end, so that the caller gets a horizon of now and not of
	// its last call (the first call of a process would otherwise see 0
	// while the economy writes).
	for wait := time.Now().Add(settleWait); len(writers) > 0 && time.Now().Before(wait); {
		select {
		case <-ctx.Done():
			return h.settled, ctx.Err()
		case <-time.After(settlePoll):
		}
		now, err := db.writers(ctx)
		if err != nil {
			return h.settled, err
		}
		if disjoint(writers, now) {
			writers = nil
		}
	}
	if len(writers) == 0 {
		h.advance(p.at)
	} else {
		p.writers = writers
		if len(h.probes) == maxProbes {
			h.probes = append(h.probes[:0], h.probes[1:]...)
		}
		h.probes = append(h.probes, p)
	}
	return h.settled, nil
}

// writers returns the transactions holding a RowExclusiveLock on the events
// or transfers table of this schema now.
func (db *DB) writers(ctx context.Context) (map[string]bool, error) {
	rows, err := db.sql.QueryContext(ctx, writersNow)
	if err != nil {
		return nil, fmt.Errorf("postgres: settled horizon: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var vx sql.NullString
		if err := rows.Scan(&vx); err != nil {
			return nil, fmt.Errorf("postgres: settled horizon: %w", err)
		}
		if vx.Valid {
			out[vx.String] = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: settled horizon: %w", err)
	}
	return out, nil
}

func (h *horizon) advance(to store.Settled) {
	h.settled.EventSeq = max(h.settled.EventSeq, to.EventSeq)
	h.settled.TransferID = max(h.settled.TransferID, to.TransferID)
}

func disjoint(a, b map[string]bool) bool {
	for k := range a {
		if b[k] {
			return false
		}
	}
	return true
}
