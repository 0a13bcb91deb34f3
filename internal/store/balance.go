package store

import (
	"context"

	"github.com/bpagents/bpagents/internal/money"
)

// AgentBalance is what a balance read needs to know about an agent: whether
// it lives, and the balances of its spending and hold accounts.
type AgentBalance struct {
	Status    string
	Available money.Micro
	Held      money.Micro
}

// Balances reads an agent's money in one query (the API's hottest read).
type Balances interface {
	// AgentBalance returns the status of agent agentID with the balances of
	// its spending account (id agentID) and its hold account (id holdID),
	// read together; ErrNotFound if the agent or an account is missing.
	AgentBalance(ctx context.Context, agentID, holdID string) (AgentBalance, error)
}
