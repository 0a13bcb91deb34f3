package economy_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/sandbox"
)

// TestTokenCacheForgets: a token Authenticate has accepted (and so cached)
// stops working the moment its execution ends, its agent dies, or its
// deadline passes, exactly as an uncached one.
func TestTokenCacheForgets(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	start := func(agent string) economy.Started {
		t.Helper()
		w.agent(agent, money.Credits(100))
		st, err := w.eco.StartExecution(ctx, w.queued(agent, money.Credits(5)), "fake", "http://x")
		if err != nil {
			t.Fatal(err)
		}
		for range 3 { // the first call reads the database, the others the cache
			if p, err := w.eco.Authenticate(ctx, st.Token); err != nil || p.AgentID != agent {
				t.Fatalf("Authenticate %s = %+v, %v", agent, p, err)
			}
		}
		return st
	}

	finished := start("a")
	w.bid("a", money.Credits(1)) // stays alive: only the execution ends
	if _, err := w.eco.FinishExecution(ctx, finished.Execution.ID, sandbox.Result{Reason: sandbox.ReasonExited}); err != nil {
		t.Fatal(err)
	}
	_, err := w.eco.Authenticate(ctx, finished.Token)
	wantCode(t, "cached token after its execution ended", err, economy.CodeUnauthorized)

	killed := start("b")
	if err := w.eco.Kill(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	_, err = w.eco.Authenticate(ctx, killed.Token)
	wantCode(t, "cached token of a killed agent", err, economy.CodeUnauthorized)

	late := start("c")
	w.clock.Advance(late.Execution.Deadline.Sub(w.clock.Now()) + time.Microsecond)
	_, err = w.eco.Authenticate(ctx, late.Token)
	wantCode(t, "cached token past its deadline", err, economy.CodeUnauthorized)
}

// TestTokenCacheRace: while many goroutines authenticate with a token, its
// execution ends; no Authenticate that starts after FinishExecution returned
// may succeed.
func TestTokenCacheRace(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	w.agent("a", money.Credits(100))
	st, err := w.eco.StartExecution(ctx, w.queued("a", money.Credits(5)), "fake", "http://x")
	if err != nil {
		t.Fatal(err)
	}
	w.bid("a", money.Credits(1))
	var ended atomic.Bool
	var wg sync.WaitGroup
	var late atomic.Int64
	for range 8 {
		wg.Go(func() {
			for n := 0; n < 100; { // until 100 calls after the end
				after := ended.Load()
				_, err := w.eco.Authenticate(ctx, st.Token)
				if after {
					n++
					if err == nil {
						late.Add(1)
					}
				}
			}
		})
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := w.eco.FinishExecution(ctx, st.Execution.ID, sandbox.Result{Reason: sandbox.ReasonExited}); err != nil {
		t.Fatal(err)
	}
	ended.Store(true)
	wg.Wait()
	if n := late.Load(); n > 0 {
		t.Fatalf("%d calls authenticated with the token after its execution had ended", n)
	}
	_, err = w.eco.Authenticate(ctx, st.Token)
	wantCode(t, "token after the race", err, economy.CodeUnauthorized)
}
