package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/store"
)

func getRunner(t *testing.T, st store.Store, id string) store.Runner {
	t.Helper()
	var r store.Runner
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		var err error
		r, err = tx.GetRunner(ctx, id)
		return err
	})
	return r
}

// sameRunner compares runners, times by instant.
func sameRunner(t *testing.T, got, want store.Runner) {
	t.Helper()
	sameTime(t, "runner "+want.ID+" Started", got.Started, want.Started)
	sameTime(t, "runner "+want.ID+" Heartbeat", got.Heartbeat, want.Heartbeat)
	if got.Ended.IsZero() != want.Ended.IsZero() || !got.Ended.Equal(want.Ended) {
		t.Fatalf("runner %s Ended = %v, want %v", want.ID, got.Ended, want.Ended)
	}
	got.Started, got.Heartbeat, got.Ended = want.Started, want.Heartbeat, want.Ended
	if got != want {
		t.Fatalf("runner = %+v\nwant     %+v", got, want)
	}
}

func testRunners(t *testing.T, st store.Store) {
	r1 := store.Runner{ID: "host-a", Host: "a", PID: 41, Sandbox: "process", Slots: 4, Status: store.RunnerActive,
		Started: at(1), Heartbeat: at(1)}
	r2 := store.Runner{ID: "host-b", Host: "b", PID: 42, Sandbox: "docker", Status: store.RunnerActive,
		Started: at(2), Heartbeat: at(2)}
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		if err := tx.PutRunner(ctx, r2); err != nil {
			return err
		}
		return tx.PutRunner(ctx, r1)
	})
	sameRunner(t, getRunner(t, st, "host-a"), r1)
	ctx := t.Context()
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.GetRunner(ctx, "nope")
		wantErr(t, "GetRunner of a missing id", err, store.ErrNotFound)
		return nil
	})

	// A heartbeat moves only an active runner's time.
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.TouchRunner(ctx, "host-a", at(5)) })
	r1.Heartbeat = at(5)
	sameRunner(t, getRunner(t, st, "host-a"), r1)
	err := st.Write(ctx, func(tx store.Tx) error { return tx.TouchRunner(ctx, "nope", at(5)) })
	wantErr(t, "TouchRunner of a missing runner", err, store.ErrNotFound)

	// PutRunner replaces every field of an existing runner.
	lost := r2
	lost.Status, lost.Ended = store.RunnerLost, at(20)
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.PutRunner(ctx, lost) })
	sameRunner(t, getRunner(t, st, "host-b"), lost)
	err = st.Write(ctx, func(tx store.Tx) error { return tx.TouchRunner(ctx, "host-b", at(21)) })
	wantErr(t, "TouchRunner of a lost runner", err, store.ErrNotFound)

	list := func(status string) []string {
		var out []string
		read(t, st, func(ctx context.Context, tx store.Tx) error {
			l, err := tx.ListRunners(ctx, status)
			for _, r := range l {
				out = append(out, r.ID)
			}
			return err
		})
		return out
	}
	for _, tc := range []struct {
		status string
		want   []string
	}{{"", []string{"host-a", "host-b"}}, {store.RunnerActive, []string{"host-a"}},
		{store.RunnerLost, []string{"host-b"}}, {store.RunnerStopped, nil}} {
		if got := list(tc.status); !slices.Equal(got, tc.want) {
			t.Errorf("ListRunners(%q) = %v, want %v", tc.status, got, tc.want)
		}
	}
}

func claim(t *testing.T, st store.Store, runner string, limit, when int) []string {
	t.Helper()
	var out []string
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		out = nil // the store may run fn again
		l, err := tx.ClaimExecutions(ctx, runner, limit, at(when))
		for _, e := range l {
			if e.RunnerID != runner || !e.Claimed.Equal(at(when)) || e.Status != store.ExecQueued {
				return fmt.Errorf("claimed execution %s has runner %q, claimed %v, status %s", e.ID, e.RunnerID, e.Claimed, e.Status)
			}
			out = append(out, e.ID)
		}
		return err
	})
	return out
}

func testClaimExecutions(t *testing.T, st store.Store) {
	exs := insertExecutions(t, st, execution("ex1", "a", 1), execution("ex2", "b", 1), execution("ex3", "c", 2),
		execution("ex4", "d", 2))
	// ex2 runs already: only queued executions are claimed.
	running := exs[1]
	running.Status, running.Started = store.ExecRunning, at(3)
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.UpdateExecution(ctx, running) })

	if got := claim(t, st, "r1", 2, 4); !slices.Equal(got, []string{"ex1", "ex3"}) {
		t.Fatalf("first claim = %v, want the two oldest queued [ex1 ex3]", got)
	}
	if got := claim(t, st, "r2", 5, 5); !slices.Equal(got, []string{"ex4"}) {
		t.Fatalf("second claim = %v, want what is left [ex4]", got)
	}
	if got := claim(t, st, "r2", 5, 6); len(got) != 0 {
		t.Fatalf("claim with nothing left = %v", got)
	}
	got := getExecution(t, st, "ex3")
	if got.RunnerID != "r1" || !got.Claimed.Equal(at(4)) {
		t.Fatalf("ex3 after its claim: runner %q claimed %v", got.RunnerID, got.Claimed)
	}

	list := func(f store.ExecutionFilter) []string {
		var out []string
		read(t, st, func(ctx context.Context, tx store.Tx) error {
			l, err := tx.ListExecutions(ctx, f)
			for _, e := range l {
				out = append(out, e.ID)
			}
			return err
		})
		return out
	}
	if l := list(store.ExecutionFilter{RunnerID: "r1"}); !slices.Equal(l, []string{"ex3", "ex1"}) {
		t.Errorf("ListExecutions of runner r1 = %v", l)
	}
	if l := list(store.ExecutionFilter{Unclaimed: true}); !slices.Equal(l, []string{"ex2"}) {
		t.Errorf("ListExecutions unclaimed = %v", l)
	}

	// UpdateExecution writes the claim and the kill request: a released claim
	// makes the execution claimable again.
	got.RunnerID, got.Claimed, got.KillRequested = "", time.Time{}, at(9)
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.UpdateExecution(ctx, got) })
	sameExecution(t, getExecution(t, st, "ex3"), got)
	if c := claim(t, st, "r2", 5, 10); !slices.Equal(c, []string{"ex3"}) {
		t.Fatalf("claim after a release = %v, want [ex3]", c)
	}

	ctx := t.Context()
	err := st.Write(ctx, func(tx store.Tx) error { _, err := tx.ClaimExecutions(ctx, "", 1, at(1)); return err })
	if err == nil {
		t.Fatal("ClaimExecutions without a runner id succeeded")
	}
}

// testConcurrentClaims has many runners claim at once from one queue: every
// execution is claimed exactly once.
func testConcurrentClaims(t *testing.T, st store.Store) {
	const n = 60
	list := make([]store.Execution, n)
	for i := range list {
		list[i] = execution(fmt.Sprintf("ex%03d", i), fmt.Sprintf("agent%d", i), 1)
	}
	insertExecutions(t, st, list...)
	const runners = 6
	ctx := t.Context()
	var mu sync.Mutex
	owner := map[string]string{}
	var wg sync.WaitGroup
	errs := make(chan error, runners)
	for r := range runners {
		id := fmt.Sprintf("runner-%d", r)
		wg.Go(func() {
			for {
				var got []store.Execution
				err := st.Write(ctx, func(tx store.Tx) error {
					var err error
					got, err = tx.ClaimExecutions(ctx, id, 3, T0)
					return err
				})
				if err != nil {
					errs <- fmt.Errorf("%s: %w", id, err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, e := range got {
					if prev, ok := owner[e.ID]; ok {
						errs <- fmt.Errorf("execution %s claimed by %s and %s", e.ID, prev, id)
					}
					owner[e.ID] = id
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(owner) != n {
		t.Fatalf("%d of %d executions claimed", len(owner), n)
	}
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		l, err := tx.ListExecutions(ctx, store.ExecutionFilter{})
		for _, e := range l {
			if e.RunnerID == "" || e.RunnerID != owner[e.ID] {
				t.Errorf("execution %s stored as claimed by %q, the claim returned it to %q", e.ID, e.RunnerID, owner[e.ID])
			}
		}
		return err
	})
}
