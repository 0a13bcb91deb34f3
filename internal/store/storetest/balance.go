package storetest

import (
	"context"
	"testing"

	"github.com/bpagents/bpagents/internal/store"
)

func testAgentBalance(t *testing.T, st store.Store) {
	insertAgent(t, st, store.Agent{ID: "rich", Status: store.AgentAlive, Workspace: "/ws/rich", Created: T0})
	insertAgent(t, st, store.Agent{ID: "gone", Status: store.AgentDead, Workspace: "/ws/gone", Created: T0})
	insertAgent(t, st, store.Agent{ID: "bare", Status: store.AgentAlive, Workspace: "/ws/bare", Created: T0})
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		for _, a := range []store.Account{
			account("rich", store.AccountAgent, "rich"), account("hold:rich", store.AccountHold, "rich"),
			account("gone", store.AccountAgent, "gone"), account("hold:gone", store.AccountHold, "gone"),
			account("bare", store.AccountAgent, "bare"), // no hold account
		} {
			if err := tx.CreateAccount(ctx, a); err != nil {
				return err
			}
		}
		if _, err := tx.AddToBalance(ctx, "rich", 7_000_001); err != nil {
			return err
		}
		_, err := tx.AddToBalance(ctx, "hold:rich", 3)
		return err
	})
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		b, err := tx.AgentBalance(ctx, "rich", "hold:rich")
		if err != nil || b != (store.AgentBalance{Status: store.AgentAlive, Available: 7_000_001, Held: 3}) {
			t.Fatalf("AgentBalance(rich) = %+v, %v", b, err)
		}
		if b, err := tx.AgentBalance(ctx, "gone", "hold:gone"); err != nil || b.Status != store.AgentDead {
			t.Fatalf("AgentBalance(gone) = %+v, %v", b, err)
		}
		_, err = tx.AgentBalance(ctx, "nobody", "hold:nobody")
		wantErr(t, "AgentBalance of a missing agent", err, store.ErrNotFound)
		_, err = tx.AgentBalance(ctx, "bare", "hold:bare")
		wantErr(t, "AgentBalance without a hold account", err, store.ErrNotFound)
		return nil
	})
}
