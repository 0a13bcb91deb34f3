package economy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// MarketView is one resource's market as agents see it. Price is in credits
// per unit (see Unit).
type MarketView struct {
	Price       money.Micro `json:"price"`
	Utilization float64     `json:"utilization"`
	Capacity    float64     `json:"capacity"`
	Unit        string      `json:"unit"`
}

// MarketState is the whole market.
type MarketState struct {
	Cycle       int64                 `json:"cycle"`
	Mechanism   string                `json:"mechanism"`
	PendingBids int                   `json:"pending_bids"`
	Resources   map[string]MarketView `json:"resources"`
}

// BalanceView is an agent's money (seed compatible).
type BalanceView struct {
	AgentID string      `json:"agent_id"`
	Balance money.Micro `json:"balance"`
	Held    money.Micro `json:"held"`
	Status  string      `json:"status"`
}

// AgentView is a directory entry.
type AgentView struct {
	ID             string      `json:"id"`
	Status         string      `json:"status"`
	ParentID       string      `json:"parent_id,omitempty"`
	Lineage        []string    `json:"lineage"`
	Created        string      `json:"created"`
	CreatedCycle   int64       `json:"created_cycle"`
	ExecutionCount int64       `json:"execution_count"`
	Balance        money.Micro `json:"balance"`
	Held           money.Micro `json:"held"`
	DiedAt         string      `json:"died_at,omitempty"`
	DeathReason    string      `json:"death_reason,omitempty"`
}

// HistoryEntry is one ledger movement seen from an agent's side. Amount is
// positive when credits arrived in Account, negative when they left it.
type HistoryEntry struct {
	ID           int64       `json:"id"`
	Kind         string      `json:"kind"`
	Amount       money.Micro `json:"amount"`
	Account      string      `json:"account"`
	Counterparty string      `json:"counterparty"`
	Ref          string      `json:"ref,omitempty"`
	Memo         string      `json:"memo,omitempty"`
	Cycle        int64       `json:"cycle"`
	Time         string      `json:"time"`
}

func (e *Economy) marketViews(ctx context.Context, tx store.Tx) (map[string]MarketView, error) {
	states, err := tx.ListResourceStates(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]MarketView, len(states))
	for _, s := range states {
		capacity := float64(s.Capacity)
		if s.Resource == market.CPU {
			capacity /= 1000
		}
		out[string(s.Resource)] = MarketView{Price: s.Price, Utilization: s.Utilization, Capacity: capacity, Unit: unitOf(s.Resource)}
	}
	return out, nil
}

// Market returns the market state.
func (e *Economy) Market(ctx context.Context) (MarketState, error) {
	var out MarketState
	err := e.st.Read(ctx, func(tx store.Tx) error {
		c, err := currentCycle(ctx, tx)
		if err != nil {
			return err
		}
		mv, err := e.marketViews(ctx, tx)
		if err != nil {
			return err
		}
		pending, err := tx.PendingBids(ctx)
		if err != nil {
			return err
		}
		out = MarketState{Cycle: c, Mechanism: string(e.set.Mechanism), PendingBids: len(pending), Resources: mv}
		return nil
	})
	return out, err
}

func agentView(ctx context.Context, tx store.Tx, a store.Agent) (AgentView, error) {
	bal, err := ledger.AgentBalances(ctx, tx, a.ID)
	if err != nil {
		return AgentView{}, err
	}
	lineage := a.Lineage
	if lineage == nil {
		lineage = []string{}
	}
	return AgentView{ID: a.ID, Status: a.Status, ParentID: a.ParentID, Lineage: lineage, Created: rfc3339(a.Created),
		CreatedCycle: a.CreatedCycle, ExecutionCount: a.ExecutionCount, Balance: bal.Available, Held: bal.Held,
		DiedAt: rfc3339(a.Died), DeathReason: a.DeathReason}, nil
}

// Agent returns one agent's directory entry.
func (e *Economy) Agent(ctx context.Context, id string) (AgentView, error) {
	var v AgentView
	err := e.st.Read(ctx, func(tx store.Tx) error {
		a, err := tx.GetAgent(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return &Error{Code: CodeNotFound, Detail: fmt.Sprintf("agent %q does not exist", id), Err: err}
		}
		if err != nil {
			return err
		}
		v, err = agentView(ctx, tx, a)
		return err
	})
	return v, err
}

// Agents lists the directory, oldest first.
func (e *Economy) Agents(ctx context.Context, status string, limit int) ([]AgentView, error) {
	var out []AgentView
	err := e.st.Read(ctx, func(tx store.Tx) error {
		list, err := tx.ListAgents(ctx, store.AgentFilter{Status: status, Limit: limit})
		if err != nil {
			return err
		}
		out = make([]AgentView, 0, len(list))
		for _, a := range list {
			v, err := agentView(ctx, tx, a)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// Balance returns an agent's balance (one query: the API's hottest read).
func (e *Economy) Balance(ctx context.Context, id string) (BalanceView, error) {
	var b store.AgentBalance
	err := e.st.Read(ctx, func(tx store.Tx) error {
		var err error
		b, err = tx.AgentBalance(ctx, id, ledger.HoldAccount(id))
		if errors.Is(err, store.ErrNotFound) {
			return &Error{Code: CodeNotFound, Detail: fmt.Sprintf("agent %q does not exist", id), Err: err}
		}
		return err
	})
	if err != nil {
		return BalanceView{}, err
	}
	return BalanceView{AgentID: id, Balance: b.Available, Held: b.Held, Status: b.Status}, nil
}

// History lists the ledger entries touching an agent's accounts, newest
// first, before transfer id `before` (0: from the newest).
func (e *Economy) History(ctx context.Context, agentID string, before int64, limit int) ([]HistoryEntry, error) {
	if limit <= 0 || limit > 500 {
		limit = 100
	}
	var out []HistoryEntry
	err := e.st.Read(ctx, func(tx store.Tx) error {
		seen := map[int64]bool{}
		var all []store.Transfer
		for _, acct := range []string{agentID, ledger.HoldAccount(agentID)} {
			list, err := tx.ListTransfers(ctx, store.TransferFilter{Account: acct, BeforeID: before, Limit: limit})
			if err != nil {
				return err
			}
			for _, t := range list {
				if !seen[t.ID] {
					seen[t.ID] = true
					all = append(all, t)
				}
			}
		}
		sortTransfersDesc(all)
		if len(all) > limit {
			all = all[:limit]
		}
		out = make([]HistoryEntry, 0, len(all))
		for _, t := range all {
			out = append(out, historyEntry(agentID, t))
		}
		return nil
	})
	return out, err
}

func historyEntry(agentID string, t store.Transfer) HistoryEntry {
	h := HistoryEntry{ID: t.ID, Kind: t.Kind, Ref: t.Ref, Memo: t.Memo, Cycle: t.Cycle, Time: rfc3339(t.Created)}
	hold := ledger.HoldAccount(agentID)
	switch {
	case t.From == agentID && t.To == hold:
		h.Amount, h.Account, h.Counterparty = -t.Amount, "available", hold
	case t.From == hold && t.To == agentID:
		h.Amount, h.Account, h.Counterparty = t.Amount, "available", hold
	case t.To == agentID || t.To == hold:
		h.Amount, h.Account, h.Counterparty = t.Amount, accountName(agentID, t.To), t.From
	default:
		h.Amount, h.Account, h.Counterparty = -t.Amount, accountName(agentID, t.From), t.To
	}
	return h
}

func accountName(agentID, acct string) string {
	if acct == agentID {
		return "available"
	}
	return "held"
}

func sortTransfersDesc(ts []store.Transfer) {
	slices.SortFunc(ts, func(a, b store.Transfer) int { return cmp.Compare(b.ID, a.ID) })
}

// Bids lists bids an agent pays or would wake from, newest first.
func (e *Economy) Bids(ctx context.Context, agentID, status string, limit int) ([]BidView, error) {
	if limit <= 0 || limit > 500 {
		limit = 100
	}
	var out []BidView
	err := e.st.Read(ctx, func(tx store.Tx) error {
		list, err := tx.ListBids(ctx, store.BidFilter{Party: agentID, Status: status, Limit: limit})
		out = make([]BidView, 0, len(list))
		for _, b := range list {
			out = append(out, bidView(b))
		}
		return err
	})
	return out, err
}

// MoneyTotals are the economy's money figures.
type MoneyTotals struct {
	Minted      money.Micro `json:"minted"`
	Burned      money.Micro `json:"burned"`
	Circulating money.Micro `json:"circulating"`
	Held        money.Micro `json:"held"`
}

// Totals counts the population and sums the money by kind of account.
type Totals struct {
	Alive int
	Dead  int
	Money MoneyTotals
}

// Totals reads population and money figures in one snapshot.
func (e *Economy) Totals(ctx context.Context) (Totals, error) {
	var t Totals
	err := e.st.Read(ctx, func(tx store.Tx) error {
		alive, dead, err := tx.CountAgents(ctx)
		if err != nil {
			return err
		}
		t.Alive, t.Dead = int(alive), int(dead)
		accounts, err := tx.ListAccounts(ctx)
		if err != nil {
			return err
		}
		for _, a := range accounts {
			switch {
			case a.ID == ledger.MintAccount:
				t.Money.Minted = -a.Balance
			case a.ID == ledger.BurnAccount:
				t.Money.Burned = a.Balance
			case a.Kind == store.AccountAgent:
				t.Money.Circulating += a.Balance
			case a.Kind == store.AccountHold:
				t.Money.Held += a.Balance
			}
		}
		return nil
	})
	return t, err
}
