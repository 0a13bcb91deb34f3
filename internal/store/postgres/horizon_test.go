package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/postgres"
	"github.com/bpagents/bpagents/internal/store/postgres/pgtest"
)

func appendEvent(ctx context.Context, tx store.Tx, typ string) (int64, error) {
	ev := store.Event{Time: time.Now(), Type: typ, Data: []byte(`{}`)}
	err := tx.AppendEvent(ctx, &ev)
	return ev.Seq, err
}

func eventsAfter(t *testing.T, db store.Store, after int64) []store.Event {
	t.Helper()
	var list []store.Event
	ctx := t.Context()
	if err := db.Read(ctx, func(tx store.Tx) error {
		var err error
		list, err = tx.ListEvents(ctx, store.EventFilter{AfterSeq: after, Limit: 500})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return list
}

func settled(t *testing.T, db *postgres.DB) store.Settled {
	t.Helper()
	s, err := db.Settled(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSettledWaitsForEarlierNumbers: a transaction takes event seq n and
// stays open while another takes n+1 and commits. A reader that pages by
// "after the last seq seen" would pass n for good; the horizon stays below n
// until the first transaction ends.
func TestSettledWaitsForEarlierNumbers(t *testing.T) {
	t.Parallel()
	db := pgtest.Open(t, postgres.Options{})
	ctx := t.Context()
	var first, second int64
	took, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- db.Write(ctx, func(tx store.Tx) error {
			var err error
			if first, err = appendEvent(ctx, tx, "slow"); err != nil {
				return err
			}
			select { // only the first attempt waits (a retry must not block)
			case <-took:
			default:
				close(took)
				<-release
			}
			return nil
		})
	}()
	<-took
	if err := db.Write(ctx, func(tx store.Tx) error {
		var err error
		second, err = appendEvent(ctx, tx, "fast")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if second <= first {
		t.Fatalf("seqs %d then %d: the test needs the open transaction to hold the lower one", first, second)
	}
	visible := eventsAfter(t, db, 0)
	if len(visible) != 1 || visible[0].Seq != second {
		t.Fatalf("while the first transaction is open the log shows %v", visible)
	}
	if s := settled(t, db); s.EventSeq >= first {
		t.Fatalf("horizon %d passes seq %d, whose transaction is still open", s.EventSeq, first)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for settled(t, db).EventSeq < second {
		if time.Now().After(deadline) {
			t.Fatalf("horizon stuck at %d after both transactions ended", settled(t, db).EventSeq)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := eventsAfter(t, db, 0); len(got) != 2 {
		t.Fatalf("after both commits the log shows %d events", len(got))
	}
}

// TestSettledFollowerMissesNothing: many writers append events (and
// transfers' sequence numbers move too) and hold their transactions open for
// random moments, so numbers commit out of order; a follower that reads
// "after its cursor, up to the horizon" sees every committed event exactly
// once, in seq order. Without the horizon the same follower skips some.
func TestSettledFollowerMissesNothing(t *testing.T) {
	t.Parallel()
	db := pgtest.Open(t, postgres.Options{MaxConns: 12})
	ctx := t.Context()
	const writers = 8
	run, stop := context.WithTimeout(ctx, 3*time.Second)
	defer stop()
	var wg sync.WaitGroup
	var committed atomic.Int64
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for run.Err() == nil {
				pause := time.Duration(rng.IntN(4000)) * time.Microsecond
				err := db.Write(ctx, func(tx store.Tx) error {
					if _, err := appendEvent(ctx, tx, fmt.Sprintf("w%d", w)); err != nil {
						return err
					}
					time.Sleep(pause)
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				committed.Add(1)
			}
		})
	}
	// Two followers: one honours the horizon, the other trusts what it sees.
	var got, naive []int64
	var cursor, naiveCursor int64
	follow := func() (held bool) {
		for _, e := range eventsAfter(t, db, naiveCursor) {
			naive = append(naive, e.Seq)
			naiveCursor = e.Seq
		}
		h := settled(t, db) // before the read it bounds
		for _, e := range eventsAfter(t, db, cursor) {
			if e.Seq > h.EventSeq {
				return true
			}
			got = append(got, e.Seq)
			cursor = e.Seq
		}
		return false
	}
	for run.Err() == nil {
		follow()
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for follow() || len(eventsAfter(t, db, cursor)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the follower did not catch up: cursor %d", cursor)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var all []int64
	for after := int64(0); ; {
		page := eventsAfter(t, db, after)
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			all = append(all, e.Seq)
		}
		after = page[len(page)-1].Seq
	}
	if int64(len(all)) != committed.Load() {
		t.Fatalf("%d events in the log, %d writes committed", len(all), committed.Load())
	}
	if !slices.Equal(got, all) {
		t.Fatalf("the follower saw %d events, the log holds %d (first difference at %d)", len(got), len(all), firstDiff(got, all))
	}
	for page := eventsAfter(t, db, naiveCursor); len(page) > 0; page = eventsAfter(t, db, naiveCursor) {
		for _, e := range page {
			naive = append(naive, e.Seq)
			naiveCursor = e.Seq
		}
	}
	t.Logf("%d events by %d writers; the follower saw all in order; a naive follower missed %d",
		len(all), writers, len(all)-len(naive))
}

func firstDiff(a, b []int64) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestSettledFirstCallWhileOthersWrite: a process that opens the store while
// others write without pause (some transaction always holds a number) gets,
// from its first call, a horizon at or past every event committed before the
// call, not the zero it starts from; otherwise its first page of events after
// a restart would come back empty.
func TestSettledFirstCallWhileOthersWrite(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	busy := pgtest.OpenAt(t, url, postgres.Options{MaxConns: 6})
	ctx := t.Context()
	var last int64
	if err := busy.Write(ctx, func(tx store.Tx) error {
		var err error
		last, err = appendEvent(ctx, tx, "before")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	run, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for run.Err() == nil {
				err := busy.Write(ctx, func(tx store.Tx) error {
					if _, err := appendEvent(ctx, tx, "busy"); err != nil {
						return err
					}
					time.Sleep(2 * time.Millisecond)
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	defer func() { stop(); wg.Wait() }()
	time.Sleep(50 * time.Millisecond) // the writers overlap by now
	fresh := pgtest.OpenAt(t, url, postgres.Options{})
	if s := settled(t, fresh); s.EventSeq < last {
		t.Fatalf("a new process's first horizon is %d, below event %d committed before it asked", s.EventSeq, last)
	}
}
