package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

var errAbandon = errors.New("abandon the transaction")

// changeEverything makes one change of every kind, so a test can check that
// none of them survives a rollback.
func changeEverything(ctx context.Context, tx store.Tx) error {
	steps := []func() error{
		func() error { return tx.SetMeta(ctx, "cycle", "99") },
		func() error { return tx.CreateAccount(ctx, account("x", store.AccountAgent, "x")) },
		func() error { _, err := tx.AddToBalance(ctx, "a", 1_000_000); return err },
		func() error { _, err := tx.AddToBalance(ctx, "system:mint", -1_000_000); return err },
		func() error {
			tr := store.Transfer{Kind: "mint", From: "system:mint", To: "a", Amount: 1_000_000, Created: T0}
			return tx.InsertTransfer(ctx, &tr)
		},
		func() error { return tx.AppendEvent(ctx, &store.Event{Time: T0, Type: "test.event"}) },
		func() error {
			return tx.InsertAgent(ctx, &store.Agent{ID: "x", Status: store.AgentAlive, Workspace: "/x", Created: T0})
		},
		func() error { b := bid("bx", "a", "a", 5, 1); return tx.InsertBid(ctx, &b) },
		func() error { e := execution("exx", "a", 1); return tx.InsertExecution(ctx, &e) },
		func() error { return tx.SaveOutput(ctx, "exx", []byte("out")) },
		func() error {
			return tx.InsertMessage(ctx, &store.Message{ID: "mx", From: "a", To: "b", Content: "hi", Created: T0})
		},
		func() error { return tx.InsertClearing(ctx, clearing(1)) },
		func() error {
			return tx.PutIdempotency(ctx, store.IdempotencyRecord{Principal: "a", Key: "k", RequestHash: "h",
				Status: 200, Body: []byte("{}"), Created: T0})
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
	}
	return nil
}

// expectUnchanged fails if any change of changeEverything is visible.
func expectUnchanged(t *testing.T, st store.Store) {
	t.Helper()
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.GetMeta(ctx, "cycle"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("meta kept: %v", err)
		}
		if _, err := tx.GetAccount(ctx, "x"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("account kept: %v", err)
		}
		if a, err := tx.GetAccount(ctx, "a"); err != nil || a.Balance != 0 {
			t.Errorf("balance kept: %d, %v", a.Balance, err)
		}
		if l, err := tx.ListTransfers(ctx, store.TransferFilter{}); err != nil || len(l) != 0 {
			t.Errorf("transfers kept: %v, %v", l, err)
		}
		if seq, err := tx.LastEventSeq(ctx); err != nil || seq != 0 {
			t.Errorf("events kept: %d, %v", seq, err)
		}
		if _, err := tx.GetAgent(ctx, "x"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("agent kept: %v", err)
		}
		if _, err := tx.GetBid(ctx, "bx"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("bid kept: %v", err)
		}
		if _, err := tx.GetExecution(ctx, "exx"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("execution kept: %v", err)
		}
		if _, err := tx.GetOutput(ctx, "exx"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("output kept: %v", err)
		}
		if m, err := tx.Inbox(ctx, "b", 0); err != nil || len(m) != 0 {
			t.Errorf("message kept: %v, %v", m, err)
		}
		if c, err := tx.ListClearings(ctx, 0, 0); err != nil || len(c) != 0 {
			t.Errorf("clearing kept: %v, %v", c, err)
		}
		if _, err := tx.GetIdempotency(ctx, "a", "k"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("idempotency record kept: %v", err)
		}
		return nil
	})
}

func testRollbackOnError(t *testing.T, st store.Store) {
	createAccounts(t, st)
	ctx := t.Context()
	err := st.Write(ctx, func(tx store.Tx) error {
		if err := changeEverything(ctx, tx); err != nil {
			t.Fatalf("changes inside the transaction failed: %v", err)
		}
		return fmt.Errorf("wrapped: %w", errAbandon)
	})
	wantErr(t, "Write returning an error", err, errAbandon)
	expectUnchanged(t, st)

	// A store error inside fn, returned as is, keeps its identity and takes
	// the earlier changes with it.
	err = st.Write(ctx, func(tx store.Tx) error {
		if _, err := tx.AddToBalance(ctx, "a", 5); err != nil {
			return err
		}
		return tx.CreateAccount(ctx, account("b", store.AccountAgent, "b"))
	})
	wantErr(t, "Write failing with a conflict", err, store.ErrConflict)
	expectUnchanged(t, st)

	// The same changes commit when fn succeeds.
	write(t, st, changeEverything)
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		if a, err := tx.GetAccount(ctx, "a"); err != nil || a.Balance != 1_000_000 {
			t.Fatalf("committed balance = %d, %v", a.Balance, err)
		}
		if _, err := tx.GetExecution(ctx, "exx"); err != nil {
			t.Fatalf("committed execution: %v", err)
		}
		return nil
	})
}

func testRollbackOnPanic(t *testing.T, st store.Store) {
	createAccounts(t, st)
	ctx := t.Context()
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v, want the panic to reach the caller", p)
			}
		}()
		_ = st.Write(ctx, func(tx store.Tx) error {
			if err := changeEverything(ctx, tx); err != nil {
				t.Fatalf("changes inside the transaction failed: %v", err)
			}
			panic("boom")
		})
	}()
	expectUnchanged(t, st)
	// The store is still usable for writes afterwards.
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.SetMeta(ctx, "after", "panic") })
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		if v, err := tx.GetMeta(ctx, "after"); err != nil || v != "panic" {
			t.Fatalf("write after a panic: %q, %v", v, err)
		}
		return nil
	})
}

func testCancelledContext(t *testing.T, st store.Store) {
	createAccounts(t, st)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := st.Write(ctx, func(tx store.Tx) error { return changeEverything(ctx, tx) })
	if err == nil {
		t.Fatal("Write with a cancelled context succeeded")
	}
	expectUnchanged(t, st)
}

func testReadKeepsNothing(t *testing.T, st store.Store) {
	createAccounts(t, st)
	ctx := t.Context()
	// A read transaction is a snapshot: a backend may refuse writes in it, but
	// must never keep them.
	_ = st.Read(ctx, func(tx store.Tx) error {
		_ = changeEverything(ctx, tx)
		return nil
	})
	expectUnchanged(t, st)
}

func testConcurrentWriters(t *testing.T, st store.Store) {
	createAccounts(t, st)
	const (
		workers = 16
		each    = 25
	)
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, workers*2)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				// Read-modify-write inside one transaction: it only adds up if
				// writers are serialized.
				err := st.Write(ctx, func(tx store.Tx) error {
					a, err := tx.GetAccount(ctx, "a")
					if err != nil {
						return err
					}
					if _, err := tx.AddToBalance(ctx, "a", 1); err != nil {
						return err
					}
					if _, err := tx.AddToBalance(ctx, "system:mint", -1); err != nil {
						return err
					}
					tr := store.Transfer{Kind: "mint", From: "system:mint", To: "a", Amount: 1,
						Ref: fmt.Sprintf("w%d-%d", w, i), Created: T0}
					if err := tx.InsertTransfer(ctx, &tr); err != nil {
						return err
					}
					return tx.SetMeta(ctx, "seen", fmt.Sprint(int64(a.Balance)+1))
				})
				if err != nil {
					errs <- fmt.Errorf("writer %d op %d: %w", w, i, err)
					return
				}
			}
		})
		// Readers run alongside and must always see a consistent snapshot.
		wg.Go(func() {
			for range each {
				err := st.Read(ctx, func(tx store.Tx) error {
					a, err := tx.GetAccount(ctx, "a")
					if err != nil {
						return err
					}
					m, err := tx.GetAccount(ctx, "system:mint")
					if err != nil {
						return err
					}
					if a.Balance+m.Balance != 0 {
						return fmt.Errorf("torn read: a %s, mint %s", a.Balance, m.Balance)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	want := money.Micro(workers * each)
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		a, err := tx.GetAccount(ctx, "a")
		if err != nil {
			return err
		}
		if a.Balance != want {
			t.Fatalf("balance after %d concurrent increments = %d", want, a.Balance)
		}
		if seen, err := tx.GetMeta(ctx, "seen"); err != nil || seen != fmt.Sprint(int64(want)) {
			t.Fatalf("last read-modify-write saw %q, %v; want %d", seen, err, want)
		}
		sums, err := tx.EntrySums(ctx)
		if err != nil {
			return err
		}
		if sums["a"] != want || sums["system:mint"] != -want {
			t.Fatalf("entry sums a=%s mint=%s, want %s", sums["a"], sums["system:mint"], want)
		}
		l, err := tx.ListTransfers(ctx, store.TransferFilter{})
		if err != nil {
			return err
		}
		if len(l) != int(want) {
			t.Fatalf("%d transfers, want %d", len(l), want)
		}
		return nil
	})
}
