// Package storetest is the conformance suite of the store contract: every
// backend (sqlite, postgres) runs the same tests through Run, so
// that the domain packages can rely on one behaviour whatever the database.
//
// The suite speaks only store's interfaces. It never assumes a SQL dialect,
// a file layout or an ordering the contract does not promise, and it asks the
// backend for a fresh, empty store for every test.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// Run runs the whole suite. open must return a fresh, empty, migrated store
// and arrange for it to be closed when t ends; it may be called concurrently
// from parallel tests.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, st store.Store)
	}{
		{"Meta", testMeta},
		{"Accounts", testAccounts},
		{"AgentBalance", testAgentBalance},
		{"Transfers", testTransfers},
		{"TransferFilters", testTransferFilters},
		{"EntrySums", testEntrySums},
		{"Events", testEvents},
		{"EventFilters", testEventFilters},
		{"Agents", testAgents},
		{"AgentDeath", testAgentDeath},
		{"Bids", testBids},
		{"CloseBid", testCloseBid},
		{"Executions", testExecutions},
		{"ExecutionByToken", testExecutionByToken},
		{"Output", testOutput},
		{"TokensUsed", testTokensUsed},
		{"Messages", testMessages},
		{"ResourceStates", testResourceStates},
		{"Clearings", testClearings},
		{"Idempotency", testIdempotency},
		{"Prompts", testPrompts},
		{"ListMessages", testListMessages},
		{"Runners", testRunners},
		{"ClaimExecutions", testClaimExecutions},
		{"ConcurrentClaims", testConcurrentClaims},
		{"RollbackOnError", testRollbackOnError},
		{"RollbackOnPanic", testRollbackOnPanic},
		{"CancelledContext", testCancelledContext},
		{"ReadKeepsNothing", testReadKeepsNothing},
		{"ConcurrentWriters", testConcurrentWriters},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// T0 is a time every backend must keep exactly: UTC, whole microseconds.
var T0 = time.Date(2026, 11, 25, 19, 0, 0, 123456000, time.UTC)

// at returns T0 plus n seconds.
func at(n int) time.Time { return T0.Add(time.Duration(n) * time.Second) }

// write runs fn in a write transaction and fails the test on error.
func write(t *testing.T, st store.Store, fn func(ctx context.Context, tx store.Tx) error) {
	t.Helper()
	ctx := t.Context()
	if err := st.Write(ctx, func(tx store.Tx) error { return fn(ctx, tx) }); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// read runs fn in a read transaction and fails the test on error.
func read(t *testing.T, st store.Store, fn func(ctx context.Context, tx store.Tx) error) {
	t.Helper()
	ctx := t.Context()
	if err := st.Read(ctx, func(tx store.Tx) error { return fn(ctx, tx) }); err != nil {
		t.Fatalf("read: %v", err)
	}
}

// wantErr fails unless err matches target with errors.Is.
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want errors.Is(err, %v)", what, err, target)
	}
}

// sameTime fails unless got and want are the same instant.
func sameTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// sameJSON fails unless got and want encode the same JSON value (backends may
// reformat stored JSON).
func sameJSON(t *testing.T, what string, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: stored data %q is not JSON: %v", what, got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s = %s, want %s", what, got, want)
	}
}

func testMeta(t *testing.T, st store.Store) {
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.GetMeta(ctx, "cycle")
		wantErr(t, "GetMeta of an unset key", err, store.ErrNotFound)
		return nil
	})
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		if err := tx.SetMeta(ctx, "cycle", "1"); err != nil {
			return err
		}
		if err := tx.SetMeta(ctx, "instance_id", "abc"); err != nil {
			return err
		}
		return tx.SetMeta(ctx, "cycle", "2") // overwrite
	})
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		for key, want := range map[string]string{"cycle": "2", "instance_id": "abc"} {
			got, err := tx.GetMeta(ctx, key)
			if err != nil || got != want {
				t.Fatalf("GetMeta(%s) = %q, %v; want %q", key, got, err, want)
			}
		}
		return nil
	})
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.SetMeta(ctx, "empty", "") })
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		if v, err := tx.GetMeta(ctx, "empty"); err != nil || v != "" {
			t.Fatalf("GetMeta(empty) = %q, %v", v, err)
		}
		return nil
	})
}

// account is a shorthand for a fresh account row.
func account(id, kind, agent string) store.Account {
	return store.Account{ID: id, Kind: kind, AgentID: agent, Created: T0}
}

// createAccounts opens agent accounts a, b, c (with holds) and the two system
// accounts.
func createAccounts(t *testing.T, st store.Store) {
	t.Helper()
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		accts := []store.Account{
			account("system:mint", store.AccountSystem, ""),
			account("system:burn", store.AccountSystem, ""),
		}
		for _, id := range []string{"a", "b", "c"} {
			accts = append(accts, account(id, store.AccountAgent, id), account("hold:"+id, store.AccountHold, id))
		}
		for _, a := range accts {
			if err := tx.CreateAccount(ctx, a); err != nil {
				return err
			}
		}
		return nil
	})
}

func testAccounts(t *testing.T, st store.Store) {
	createAccounts(t, st)
	ctx := t.Context()
	err := st.Write(ctx, func(tx store.Tx) error {
		return tx.CreateAccount(ctx, account("a", store.AccountAgent, "a"))
	})
	wantErr(t, "CreateAccount of an existing id", err, store.ErrConflict)

	read(t, st, func(ctx context.Context, tx store.Tx) error {
		a, err := tx.GetAccount(ctx, "hold:b")
		if err != nil {
			return err
		}
		want := store.Account{ID: "hold:b", Kind: store.AccountHold, AgentID: "b", Balance: 0}
		sameTime(t, "Created", a.Created, T0)
		a.Created = time.Time{}
		if a != want {
			t.Fatalf("GetAccount = %+v, want %+v", a, want)
		}
		_, err = tx.GetAccount(ctx, "nobody")
		wantErr(t, "GetAccount of a missing id", err, store.ErrNotFound)
		return nil
	})

	write(t, st, func(ctx context.Context, tx store.Tx) error {
		steps := []struct {
			id    string
			delta int64
			want  int64
		}{
			{"a", 5_000_000, 5_000_000},
			{"a", -1_500_000, 3_500_000},
			{"system:mint", -5_000_000, -5_000_000}, // the store does not judge signs
			{"a", 1, 3_500_001},
		}
		for _, s := range steps {
			got, err := tx.AddToBalance(ctx, s.id, money.Micro(s.delta))
			if err != nil {
				return err
			}
			if got != money.Micro(s.want) {
				t.Fatalf("AddToBalance(%s, %d) = %d, want %d", s.id, s.delta, got, s.want)
			}
		}
		_, err := tx.AddToBalance(ctx, "nobody", 1)
		wantErr(t, "AddToBalance of a missing account", err, store.ErrNotFound)
		return nil
	})

	read(t, st, func(ctx context.Context, tx store.Tx) error {
		list, err := tx.ListAccounts(ctx)
		if err != nil {
			return err
		}
		if len(list) != 8 {
			t.Fatalf("ListAccounts returned %d accounts, want 8", len(list))
		}
		got := map[string]store.Account{}
		for _, a := range list {
			got[a.ID] = a
		}
		if got["a"].Balance != 3_500_001 || got["system:mint"].Balance != -5_000_000 || got["b"].Balance != 0 {
			t.Fatalf("balances a=%d mint=%d b=%d", got["a"].Balance, got["system:mint"].Balance, got["b"].Balance)
		}
		if got["hold:c"].Kind != store.AccountHold || got["hold:c"].AgentID != "c" || got["system:burn"].Kind != store.AccountSystem {
			t.Fatalf("kinds not kept: %+v %+v", got["hold:c"], got["system:burn"])
		}
		return nil
	})
}
