package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/money"
)

// TestConcurrentTransfers: 20 goroutines pay back and forth between two
// agents while others read balances; afterwards the books balance, the two
// agents together hold what they held before, and each holds exactly what
// the successful transfers say.
func TestConcurrentTransfers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.newAgent("alice", "1000", nil)
	h.newAgent("bob", "1000", nil)
	alice, _ := h.login("alice")
	bob, _ := h.login("bob")
	before := map[string]money.Micro{"alice": h.balance(t, "alice").Balance, "bob": h.balance(t, "bob").Balance}

	const (
		payers    = 20
		transfers = 10
		readers   = 6
	)
	amounts := []money.Micro{micro("1.000001"), micro("0.333333")}
	var net atomic.Int64 // micro-credits that moved from alice to bob
	var writers, reads sync.WaitGroup
	stop := make(chan struct{})
	for i := range readers {
		reads.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				q := req{Method: "GET", Path: "/economic/balance/bob"}
				if i%2 == 1 {
					q = req{Method: "GET", Path: "/economic/balance", Token: alice}
				}
				r, err := h.send(q)
				if err != nil {
					t.Error(err)
					return
				}
				var v economy.BalanceView
				if r.Status != http.StatusOK || json.Unmarshal(r.Body, &v) != nil || v.Balance < 0 || v.Status != "alive" {
					t.Errorf("read %d: %d %s", n, r.Status, r)
					return
				}
			}
		})
	}
	for i := range payers {
		writers.Go(func() {
			from, to, sign := alice, "bob", int64(1)
			if i%2 == 1 {
				from, to, sign = bob, "alice", -1
			}
			amount := amounts[i%4/2]
			for n := range transfers {
				q := req{Method: "POST", Path: "/economic/transfer", Token: from,
					Body: fmt.Sprintf(`{"to_id":%q,"amount":%s,"memo":"w%d-%d"}`, to, amount, i, n)}
				if n%3 == 0 {
					q.IdemKey = fmt.Sprintf("w%d-%d", i, n)
				}
				r, err := h.send(q)
				if err != nil {
					t.Error(err)
					return
				}
				if r.Status != http.StatusCreated {
					t.Errorf("writer %d transfer %d: %d %s", i, n, r.Status, r)
					return
				}
				net.Add(sign * int64(amount))
			}
		})
	}
	writers.Wait()
	close(stop)
	reads.Wait()
	if t.Failed() {
		t.FailNow()
	}

	h.audit(t)
	after := map[string]money.Micro{"alice": h.balance(t, "alice").Balance, "bob": h.balance(t, "bob").Balance}
	if after["alice"]+after["bob"] != before["alice"]+before["bob"] {
		t.Fatalf("alice+bob hold %s, held %s", after["alice"]+after["bob"], before["alice"]+before["bob"])
	}
	moved := money.Micro(net.Load())
	if after["alice"] != before["alice"]-moved || after["bob"] != before["bob"]+moved {
		t.Fatalf("alice %s → %s, bob %s → %s, but %s moved from alice to bob",
			before["alice"], after["alice"], before["bob"], after["bob"], moved)
	}
	snap := h.snapshot(t)
	n := 0
	for _, tr := range snap.Transfers {
		if tr.Kind == "transfer" {
			n++
		}
	}
	if n != payers*transfers {
		t.Fatalf("%d transfers in the ledger, want %d", n, payers*transfers)
	}
}
