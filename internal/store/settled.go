package store

import (
	"context"
	"math"
)

// Settled bounds what a reader paging the event log or the ledger by
// sequence number (events after seq N, transfers after id N) may pass over:
// every event with seq ≤ EventSeq and every transfer with id ≤ TransferID
// that will ever commit has committed, so a read that starts after Settled
// returned sees all of them, and none will appear below them later.
type Settled struct {
	EventSeq   int64
	TransferID int64
}

// Unbounded is the horizon of a store whose rows become visible in sequence
// order: nothing is ever missing below what a reader has seen.
var Unbounded = Settled{EventSeq: math.MaxInt64, TransferID: math.MaxInt64}

// Horizon is implemented by stores whose concurrent writers can make
// sequence numbers visible out of order. PostgreSQL takes a number when a
// row is inserted and shows the row when its transaction commits, so event
// 41 may appear after event 42; a reader that had moved past 42 would never
// see 41. SQLite's single writer commits in sequence order and needs no
// horizon.
type Horizon interface {
	// Settled returns the current horizon. It may lag behind the newest
	// committed rows while the transactions that took lower numbers run.
	Settled(ctx context.Context) (Settled, error)
}

// SettledOf returns st's horizon, or Unbounded when st's rows appear in
// sequence order.
func SettledOf(ctx context.Context, st Store) (Settled, error) {
	if h, ok := st.(Horizon); ok {
		return h.Settled(ctx)
	}
	return Unbounded, nil
}
