package api_test

import (
	"bytes"
	"net/http"
	"os"
	"sync"
	"testing"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/money"
)

// TestIdempotencyKey: a retried request with the same key gets the first
// answer byte for byte and moves no money twice; the same key with another
// body is refused; keys belong to the agent that used them.
func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *config.Config) { c.Economy.SpawnFee = money.Credits(10) })
	h.newAgent("alice", "100", nil)
	h.newAgent("bob", "100", nil)
	alice, _ := h.login("alice")
	bob, _ := h.login("bob")

	// Each mutating route: the first call, then a retry that must match it
	// and change nothing.
	routes := []struct {
		name   string
		req    req
		other  string // another body for the same route
		status int
	}{
		{"transfer", req{Method: "POST", Path: "/economic/transfer", Body: `{"to_id":"bob","amount":7.654321}`},
			`{"to_id":"bob","amount":7.654322}`, http.StatusCreated},
		{"bid", req{Method: "POST", Path: "/market/bid", Body: `{"amount":2,"bundle":` + testBundleJSON + `}`},
			`{"amount":3,"bundle":` + testBundleJSON + `}`, http.StatusCreated},
		{"message", req{Method: "POST", Path: "/social/message", Body: `{"to_id":"bob","content":"once"}`},
			`{"to_id":"bob","content":"twice"}`, http.StatusCreated},
		{"spawn", req{Method: "POST", Path: "/social/spawn", Body: `{"initial_credits":3,"files":{"main.py":"print(4)\n"}}`},
			`{"initial_credits":4,"files":{"main.py":"print(4)\n"}}`, http.StatusCreated},
	}
	for _, rt := range routes {
		t.Run(rt.name, func(t *testing.T) {
			q := rt.req
			q.Token, q.IdemKey = alice, "key-"+rt.name
			before := h.snapshot(t)
			first := h.do(t, q)
			if first.Status != rt.status {
				t.Fatalf("first call: %d %s", first.Status, first)
			}
			moved := h.snapshot(t)
			if moved.LastEvent == before.LastEvent {
				t.Fatal("the first call changed nothing")
			}
			for i := 0; i < 3; i++ {
				again := h.do(t, q)
				if again.Status != rt.status || !bytes.Equal(again.Body, first.Body) {
					t.Fatalf("retry %d: %d %s\nfirst: %s", i, again.Status, again, first)
				}
			}
			sameSnapshot(t, moved, h.snapshot(t))

			// The same key with a different body is refused and changes nothing.
			other := q
			other.Body = rt.other
			r := h.do(t, other)
			wantProblem(t, r, http.StatusUnprocessableEntity, "Idempotency-Key", `"key-`+rt.name+`"`, "different request")
			// So is the same key on another route.
			other = req{Method: "POST", Path: "/economic/transfer", Token: alice, IdemKey: q.IdemKey, Body: `{"to_id":"bob","amount":1}`}
			if rt.name != "transfer" {
				wantProblem(t, h.do(t, other), http.StatusUnprocessableEntity, "Idempotency-Key")
			}
			sameSnapshot(t, moved, h.snapshot(t))
		})
	}

	t.Run("cancel", func(t *testing.T) {
		bid := ok[economy.BidView](t, h.do(t, req{Method: "POST", Path: "/market/bid", Token: alice,
			Body: `{"amount":1,"bundle":` + testBundleJSON + `}`}), http.StatusCreated)
		q := req{Method: "DELETE", Path: "/market/bid/" + bid.ID, Token: alice, IdemKey: "cancel-1"}
		first := h.do(t, q)
		ok[economy.BidView](t, first, http.StatusOK)
		moved := h.snapshot(t)
		again := h.do(t, q)
		if again.Status != http.StatusOK || !bytes.Equal(again.Body, first.Body) {
			t.Fatalf("retried cancel: %d %s", again.Status, again)
		}
		sameSnapshot(t, moved, h.snapshot(t))
		// Without the key, a second cancel is a conflict.
		q.IdemKey = ""
		wantProblem(t, h.do(t, q), http.StatusConflict, "cancelled")
	})

	t.Run("keys belong to their agent", func(t *testing.T) {
		aliceBefore, bobBefore := h.balance(t, "alice").Balance, h.balance(t, "bob").Balance
		body := `{"to_id":"bob","amount":1.25}`
		a := ok[economy.TransferResult](t, h.do(t, req{Method: "POST", Path: "/economic/transfer", Token: alice,
			IdemKey: "shared", Body: body}), http.StatusCreated)
		b := ok[economy.TransferResult](t, h.do(t, req{Method: "POST", Path: "/economic/transfer", Token: bob,
			IdemKey: "shared", Body: `{"to_id":"alice","amount":0.5}`}), http.StatusCreated)
		if a.TransferID == b.TransferID || a.FromID != "alice" || b.FromID != "bob" {
			t.Fatalf("alice's %+v and bob's %+v", a, b)
		}
		// Bob's key now names bob's first request: another body under it is refused.
		wantProblem(t, h.do(t, req{Method: "POST", Path: "/economic/transfer", Token: bob, IdemKey: "shared",
			Body: `{"to_id":"alice","amount":0.75}`}), http.StatusUnprocessableEntity, "Idempotency-Key")
		if got := h.balance(t, "alice").Balance; got != aliceBefore-micro("1.25")+micro("0.5") {
			t.Fatalf("alice has %s, had %s", got, aliceBefore)
		}
		if got := h.balance(t, "bob").Balance; got != bobBefore+micro("1.25")-micro("0.5") {
			t.Fatalf("bob has %s, had %s", got, bobBefore)
		}
	})

	t.Run("concurrent retries", func(t *testing.T) {
		for _, rt := range []struct{ path, body string }{
			{"/economic/transfer", `{"to_id":"bob","amount":3}`},
			{"/social/spawn", `{"initial_credits":2}`},
		} {
			before := h.snapshot(t)
			const n = 8
			replies := make([]reply, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					var err error
					replies[i], err = h.send(req{Method: "POST", Path: rt.path, Token: alice, IdemKey: "race" + rt.path, Body: rt.body})
					if err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			for i, r := range replies {
				if r.Status != http.StatusCreated || !bytes.Equal(r.Body, replies[0].Body) {
					t.Fatalf("%s reply %d: %d %s, reply 0: %s", rt.path, i, r.Status, r, replies[0])
				}
			}
			after := h.snapshot(t)
			if len(after.Transfers) == len(before.Transfers) {
				t.Fatalf("%s: nothing moved", rt.path)
			}
			wantTransfers := 1
			if rt.path == "/social/spawn" {
				wantTransfers = 2 // the fee and the endowment
				if len(after.Agents) != len(before.Agents)+1 || len(after.Workspaces) != len(before.Workspaces)+1 {
					t.Fatalf("spawn retried concurrently made %d agents and %d workspaces",
						len(after.Agents)-len(before.Agents), len(after.Workspaces)-len(before.Workspaces))
				}
			}
			if got := len(after.Transfers) - len(before.Transfers); got != wantTransfers {
				t.Fatalf("%s retried concurrently made %d transfers, want %d", rt.path, got, wantTransfers)
			}
		}
	})

	// Spawn with a key copies one workspace only.
	entries, err := os.ReadDir(h.ws.Root)
	if err != nil {
		t.Fatal(err)
	}
	if list := ok[api.AgentList](t, h.get(t, "/agents", ""), http.StatusOK); len(entries) != len(list.Agents) {
		t.Fatalf("%d workspaces for %d agents", len(entries), len(list.Agents))
	}
	h.audit(t)
}
