package api_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/agents"
	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/app"
	"github.com/bpagents/bpagents/internal/client"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/postgres"
	"github.com/bpagents/bpagents/internal/store/postgres/pgtest"
)

// TestEventStreamPostgresConcurrentWriters: on PostgreSQL, concurrent writers
// take event seqs at insert and commit in another order (each holds its
// transaction open for a random moment). Two live streams (/events/stream,
// one from the start, one that disconnects and resumes with Last-Event-ID)
// and a pager (/events?after=) must each deliver every event exactly once,
// in seq order.
func TestEventStreamPostgresConcurrentWriters(t *testing.T) {
	t.Parallel()
	st := pgtest.Open(t, postgres.Options{MaxConns: 12})
	set, err := app.Settings(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	changes := api.NewChanges()
	eco := economy.New(st, set, agents.Workspaces{Root: t.TempDir()}, nil, log, economy.Options{Changed: changes.Notify})
	const op = "operator-secret"
	srv := api.New(eco, log, api.Options{OperatorToken: op, Changes: changes, StreamPoll: 200 * time.Millisecond})
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	t.Cleanup(srv.CloseStreams)
	ctx := t.Context()

	// Writers: each write appends two events and holds its transaction for
	// up to 3 ms before committing.
	run, stop := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer stop()
	var wg sync.WaitGroup
	var committed atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for run.Err() == nil {
				pause := time.Duration(rng.IntN(3000)) * time.Microsecond
				err := st.Write(ctx, func(tx store.Tx) error {
					for i := range 2 {
						ev := store.Event{Time: time.Now(), Type: "test.write", Ref: fmt.Sprintf("w%d-%d", w, i), Data: []byte(`{}`)}
						if err := tx.AppendEvent(ctx, &ev); err != nil {
							return err
						}
					}
					time.Sleep(pause)
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				committed.Add(2)
				changes.Notify()
			}
		})
	}

	c := client.New(ts.URL, op)
	follow := func(lastID string, until func(n int) bool) []int64 {
		var seqs []int64
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		err := c.Stream(sctx, "/events/stream?after=0", lastID, func(ev client.StreamEvent) error {
			n, err := strconv.ParseInt(ev.ID, 10, 64)
			if err != nil {
				return err
			}
			seqs = append(seqs, n)
			if until(len(seqs)) {
				cancel()
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		return seqs
	}
	done := make(chan struct{})
	finished := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	all := func(n int) bool { return finished() && int64(n) == committed.Load() }
	var whole, first, rest []int64
	var streams sync.WaitGroup
	streams.Go(func() { whole = follow("", all) })
	streams.Go(func() {
		// Leave after 300 events, then resume after the last id seen.
		first = follow("", func(n int) bool { return n == 300 })
		rest = follow(strconv.FormatInt(first[len(first)-1], 10), func(n int) bool {
			return finished() && int64(len(first)+n) == committed.Load()
		})
	})
	wg.Wait()
	close(done)
	changes.Notify()
	waited := make(chan struct{})
	go func() { streams.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(20 * time.Second):
		t.Fatalf("the streams did not deliver all %d events", committed.Load())
	}

	var paged []int64
	for after := int64(0); ; {
		var page api.EventPage
		if err := c.Get(ctx, fmt.Sprintf("/events?after=%d&limit=500", after), &page); err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			paged = append(paged, e.Seq)
			after = e.Seq
		}
		if len(page.Events) < 500 {
			break
		}
	}
	check := func(name string, got []int64) {
		t.Helper()
		if int64(len(got)) != committed.Load() {
			t.Errorf("%s delivered %d events, %d committed", name, len(got), committed.Load())
		}
		if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Errorf("%s delivered events out of order or twice", name)
		}
		if !slices.Equal(got, paged) {
			t.Errorf("%s and the pager disagree", name)
		}
	}
	check("the stream", whole)
	check("the resumed stream", append(first, rest...))
	check("the pager", paged)
	t.Logf("%d events from 8 concurrent writers, delivered in order by both streams and the pager", len(paged))
}
