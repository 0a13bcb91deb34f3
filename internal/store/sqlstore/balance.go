package sqlstore

import (
	"context"
	"fmt"

	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// AgentBalance implements store.Balances.
func (t *Tx) AgentBalance(ctx context.Context, agentID, holdID string) (store.AgentBalance, error) {
	var b store.AgentBalance
	var available, held int64
	err := t.scalar(ctx, `SELECT a.status, s.balance, h.balance FROM agents a, accounts s, accounts h
		WHERE a.id = ? AND s.id = ? AND h.id = ?`, []any{agentID, agentID, holdID}, &b.Status, &available, &held)
	if err != nil {
		return store.AgentBalance{}, fmt.Errorf("balance of agent %q: %w", agentID, err)
	}
	b.Available, b.Held = money.Micro(available), money.Micro(held)
	return b, nil
}
