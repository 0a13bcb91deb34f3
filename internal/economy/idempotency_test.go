package economy_test

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/money"
)

// idemCase is one mutating call made with an Idempotency-Key.
type idemCase struct {
	name string
	// prepare runs once before the calls; it returns the call to repeat.
	prepare func(w *world) func(idem *economy.Idem) (any, error)
}

var idemCases = []idemCase{
	{"Transfer", func(w *world) func(*economy.Idem) (any, error) {
		return func(idem *economy.Idem) (any, error) {
			return w.eco.Transfer(w.t.Context(), "a", economy.TransferRequest{ToID: "b", Amount: money.Credits(7)}, idem)
		}
	}},
	{"PlaceBid", func(w *world) func(*economy.Idem) (any, error) {
		return func(idem *economy.Idem) (any, error) {
			return w.eco.PlaceBid(w.t.Context(), "a", economy.BidRequest{Amount: money.Credits(3), Bundle: small}, idem)
		}
	}},
	{"CancelBid", func(w *world) func(*economy.Idem) (any, error) {
		v := w.bid("a", money.Credits(4))
		return func(idem *economy.Idem) (any, error) { return w.eco.CancelBid(w.t.Context(), "a", v.ID, idem) }
	}},
	{"SendMessage", func(w *world) func(*economy.Idem) (any, error) {
		return func(idem *economy.Idem) (any, error) {
			return w.eco.SendMessage(w.t.Context(), "a", economy.MessageRequest{ToID: "b", Content: "once"}, idem)
		}
	}},
	{"Spawn", func(w *world) func(*economy.Idem) (any, error) {
		return func(idem *economy.Idem) (any, error) {
			return w.eco.Spawn(w.t.Context(), "a", economy.SpawnRequest{InitialCredits: money.Credits(20)}, idem)
		}
	}},
	{"Spawn with files and bid", func(w *world) func(*economy.Idem) (any, error) {
		return func(idem *economy.Idem) (any, error) {
			return w.eco.Spawn(w.t.Context(), "a", economy.SpawnRequest{InitialCredits: money.Credits(20),
				Files: map[string]string{"main.py": "x"}, Bid: &economy.BidSpec{Amount: money.Credits(2), Bundle: small}}, idem)
		}
	}},
}

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestIdempotentRetry(t *testing.T) {
	t.Parallel()
	for _, tc := range idemCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, nil)
			w.agent("a", money.Credits(500))
			w.agent("b", money.Credits(10))
			call := tc.prepare(w)
			idem := &economy.Idem{Principal: "a", Key: "key-1", Hash: "hash-of-body-1"}

			first, err := call(idem)
			if err != nil {
				t.Fatalf("first call: %v", err)
			}
			once := w.unchanged() // the state after the first call
			for range 3 {
				again, err := call(idem)
				if err != nil {
					t.Fatalf("retry: %v", err)
				}
				if asJSON(t, again) != asJSON(t, first) {
					t.Fatalf("retry answered %s, first answer was %s", asJSON(t, again), asJSON(t, first))
				}
			}
			once("retries with the same key") // nothing moved twice, no second workspace

			// The same key for a different request is refused.
			reuse := *idem
			reuse.Hash = "hash-of-body-2"
			_, err = call(&reuse)
			wantCode(t, "key reused for another body", err, economy.CodeIdempotencyReuse)
			once("a reused key")

			// Keys belong to their principal: b's key-1 is a new request, and
			// without a key every call is new.
			other := *idem
			other.Principal = "b"
			_, err = call(&other)
			if tc.name == "CancelBid" {
				// Not a replay: cancelling the same bid again is a conflict.
				wantCode(t, "same key, other principal", err, economy.CodeConflict)
			} else if err != nil {
				t.Fatalf("same key, other principal: %v", err)
			}
			w.audit()
		})
	}
}

// TestIdempotentFailureIsNotRecorded checks that a refused request can be
// retried under the same key once the cause is fixed.
func TestIdempotentFailureIsNotRecorded(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.agent("a", money.Credits(5))
	w.agent("b", money.Credits(5))
	ctx := t.Context()
	idem := &economy.Idem{Principal: "a", Key: "k", Hash: "h"}
	req := economy.TransferRequest{ToID: "b", Amount: money.Credits(8)}
	_, err := w.eco.Transfer(ctx, "a", req, idem)
	wantCode(t, "first try", err, economy.CodeInsufficientFunds)
	if _, err := w.eco.Mint(ctx, "a", money.Credits(5), "top up", nil); err != nil {
		t.Fatal(err)
	}
	res, err := w.eco.Transfer(ctx, "a", req, idem)
	if err != nil || res.Balance != money.Credits(2) {
		t.Fatalf("retry after topping up: %+v, %v", res, err)
	}
	w.audit()
}

// TestIdempotentConcurrentRetries fires the same keyed request from several
// goroutines at once: exactly one takes effect.
func TestIdempotentConcurrentRetries(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"Transfer", "Spawn"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, nil)
			w.agent("a", money.Credits(500))
			w.agent("b", money.Credits(10))
			var call func(*economy.Idem) (any, error)
			for _, tc := range idemCases {
				if tc.name == name {
					call = tc.prepare(w)
				}
			}
			before := w.balance("a").Balance
			dirs := len(w.workspaces())
			idem := &economy.Idem{Principal: "a", Key: "same", Hash: "h"}
			const n = 8
			answers := make([]string, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					v, err := call(idem)
					if err != nil {
						t.Errorf("call %d: %v", i, err)
						return
					}
					answers[i] = asJSON(t, v)
				})
			}
			wg.Wait()
			for i := 1; i < n; i++ {
				if answers[i] != answers[0] {
					t.Fatalf("answers differ:\n%s\n%s", answers[0], answers[i])
				}
			}
			spent := before - w.balance("a").Balance
			switch name {
			case "Transfer":
				if spent != money.Credits(7) {
					t.Fatalf("spent %s over %d concurrent retries, want 7 once", spent, n)
				}
			case "Spawn":
				if spent != w.set.SpawnFee+money.Credits(20) || len(w.workspaces()) != dirs+1 {
					t.Fatalf("spent %s and made %d workspaces over %d concurrent retries", spent,
						len(w.workspaces())-dirs, n)
				}
			}
			w.audit()
		})
	}
}
