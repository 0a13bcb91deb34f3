// Package ledger owns money movement: the double-entry rules every credit
// follows, the system accounts, holds, and the audit that proves the books.
//
// Every movement is a Posting applied inside a store transaction together with
// its audit event, so a movement and its record commit or vanish together.
// The ledger never creates money except by debiting system:mint, never lets an
// agent or hold account go below zero, and never uses floats.
package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// System accounts.
const (
	// MintAccount is the source of all credits; its balance is minus the total minted.
	MintAccount = "system:mint"
	// BurnAccount is the sink for resource payments, fees and dead agents' credits.
	BurnAccount = "system:burn"
)

// HoldAccount names the account that holds an agent's pending bid amounts.
func HoldAccount(agentID string) string { return "hold:" + agentID }

// Kind classifies a movement.
type Kind string

// Movement kinds (SPEC §6).
const (
	KindTransfer   Kind = "transfer"
	KindSpawnFee   Kind = "spawn_fee"
	KindEndowment  Kind = "endowment"
	KindHold       Kind = "hold"
	KindRelease    Kind = "release"
	KindSettle     Kind = "settle"
	KindMessageFee Kind = "message_fee"
	KindReward     Kind = "reward"
	KindDeath      Kind = "death"
	KindMint       Kind = "mint"
	// KindRefund returns a payment the system could not honour (an execution
	// it interrupted) from system:burn.
	KindRefund Kind = "refund"
	// KindInference charges an agent per model token consumed through the
	// intelligence proxy, on top of its bundle's price.
	KindInference Kind = "inference"
	// KindPromptBid is what an agent pays, burned, to rank its prompt higher
	// in the operator's queue; it is not refunded when the prompt expires.
	KindPromptBid Kind = "prompt_bid"
)

// EventTransfer is the audit event type of every posting.
const EventTransfer = "ledger.transfer"

// Posting is one movement to apply.
type Posting struct {
	Kind   Kind
	From   string
	To     string
	Amount money.Micro
	Ref    string
	Memo   string
	// AgentID is the agent the event is filed under (usually the payer).
	AgentID string
	Time    time.Time
	Cycle   int64
}

// InsufficientFundsError means an account cannot cover a movement.
type InsufficientFundsError struct {
	Account string
	Need    money.Micro
	Have    money.Micro
}

func (e *InsufficientFundsError) Error() string {
	return fmt.Sprintf("insufficient funds in %s: need %s credits, have %s", e.Account, e.Need, e.Have)
}

// ErrInvalidAmount means an amount is zero, negative or above money.Max.
var ErrInvalidAmount = errors.New("amount must be positive and at most 1000000000000")

// TransferEvent is the data of a ledger.transfer event; replaying these
// events rebuilds every balance.
type TransferEvent struct {
	ID     int64       `json:"id"`
	Kind   Kind        `json:"kind"`
	From   string      `json:"from"`
	To     string      `json:"to"`
	Amount money.Micro `json:"amount"`
	Ref    string      `json:"ref,omitempty"`
	Memo   string      `json:"memo,omitempty"`
}

// Post applies p inside tx: it checks the payer can cover it, moves the
// balance, records the transfer and its event. On error the caller must
// abandon the transaction (the store rolls it back).
func Post(ctx context.Context, tx store.Tx, p Posting) (store.Transfer, error) {
	if p.Amount <= 0 || p.Amount > money.Max {
		return store.Transfer{}, fmt.Errorf("%s of %s: %w", p.Kind, p.Amount, ErrInvalidAmount)
	}
	if p.From == p.To {
		return store.Transfer{}, fmt.Errorf("%s: an account cannot pay itself (%s)", p.Kind, p.From)
	}
	from, err := tx.GetAccount(ctx, p.From)
	if err != nil {
		return store.Transfer{}, err
	}
	if _, err := tx.GetAccount(ctx, p.To); err != nil {
		return store.Transfer{}, err
	}
	if from.ID != MintAccount && from.Balance < p.Amount {
		return store.Transfer{}, &InsufficientFundsError{Account: from.ID, Need: p.Amount, Have: from.Balance}
	}
	// Change the two balances in account order: concurrent postings between
	// the same accounts, in either direction, then lock them in the same
	// order and cannot deadlock (a database that runs writers at once would
	// stall until it noticed, then abort one).
	moves := [2]struct {
		id    string
		delta money.Micro
	}{{p.From, -p.Amount}, {p.To, p.Amount}}
	if p.To < p.From {
		moves[0], moves[1] = moves[1], moves[0]
	}
	for _, m := range moves {
		if _, err := tx.AddToBalance(ctx, m.id, m.delta); err != nil {
			return store.Transfer{}, err
		}
	}
	t := store.Transfer{Kind: string(p.Kind), From: p.From, To: p.To, Amount: p.Amount, Ref: p.Ref, Memo: p.Memo,
		Cycle: p.Cycle, Created: p.Time}
	if err := tx.InsertTransfer(ctx, &t); err != nil {
		return store.Transfer{}, err
	}
	data, err := json.Marshal(TransferEvent{ID: t.ID, Kind: p.Kind, From: p.From, To: p.To, Amount: p.Amount, Ref: p.Ref, Memo: p.Memo})
	if err != nil {
		return store.Transfer{}, err
	}
	ev := store.Event{Time: p.Time, Cycle: p.Cycle, Type: EventTransfer, AgentID: p.AgentID, Ref: p.Ref, Data: data}
	if err := tx.AppendEvent(ctx, &ev); err != nil {
		return store.Transfer{}, err
	}
	return t, nil
}

// EnsureSystemAccounts creates system:mint and system:burn if missing.
func EnsureSystemAccounts(ctx context.Context, tx store.Tx, now time.Time) error {
	for _, id := range []string{MintAccount, BurnAccount} {
		if _, err := tx.GetAccount(ctx, id); err == nil {
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := tx.CreateAccount(ctx, store.Account{ID: id, Kind: store.AccountSystem, Created: now}); err != nil {
			return err
		}
	}
	return nil
}

// OpenAgentAccounts creates an agent's spending and hold accounts.
func OpenAgentAccounts(ctx context.Context, tx store.Tx, agentID string, now time.Time) error {
	if err := tx.CreateAccount(ctx, store.Account{ID: agentID, Kind: store.AccountAgent, AgentID: agentID, Created: now}); err != nil {
		return fmt.Errorf("open account %s: %w", agentID, err)
	}
	if err := tx.CreateAccount(ctx, store.Account{ID: HoldAccount(agentID), Kind: store.AccountHold, AgentID: agentID, Created: now}); err != nil {
		return fmt.Errorf("open hold account %s: %w", agentID, err)
	}
	return nil
}

// Balances is an agent's money: what it can spend and what its bids hold.
type Balances struct {
	Available money.Micro
	Held      money.Micro
}

// AgentBalances reads an agent's two accounts.
func AgentBalances(ctx context.Context, tx store.Tx, agentID string) (Balances, error) {
	a, err := tx.GetAccount(ctx, agentID)
	if err != nil {
		return Balances{}, err
	}
	h, err := tx.GetAccount(ctx, HoldAccount(agentID))
	if err != nil {
		return Balances{}, err
	}
	return Balances{Available: a.Balance, Held: h.Balance}, nil
}

// IsSystem reports whether an account id names a system account.
func IsSystem(id string) bool { return strings.HasPrefix(id, "system:") }
