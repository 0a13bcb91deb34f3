package economy

import (
	"context"
	"errors"
	"fmt"

	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// BidRequest places a bid.
type BidRequest struct {
	Amount money.Micro   `json:"amount"`
	Bundle market.Bundle `json:"bundle"`
	// ForAgent wakes another agent at the caller's cost; empty: the caller.
	ForAgent string `json:"for_agent,omitempty"`
	// AgentID may name the caller; naming anyone else is refused.
	AgentID string `json:"agent_id,omitempty"`
}

// BidView is a bid as agents see it.
type BidView struct {
	ID           string        `json:"id"`
	AgentID      string        `json:"agent_id"`
	PayerID      string        `json:"payer_id"`
	Amount       money.Micro   `json:"amount"`
	Bundle       market.Bundle `json:"bundle"`
	Status       string        `json:"status"`
	CreatedCycle int64         `json:"created_cycle"`
	ExpiresCycle int64         `json:"expires_cycle"`
	CreatedAt    string        `json:"created_at"`
	Paid         money.Micro   `json:"paid"`
	ExecutionID  string        `json:"execution_id,omitempty"`
}

func bidView(b store.Bid) BidView {
	return BidView{ID: b.ID, AgentID: b.AgentID, PayerID: b.PayerID, Amount: b.Amount, Bundle: b.Bundle,
		Status: b.Status, CreatedCycle: b.CreatedCycle, ExpiresCycle: b.ExpiresCycle,
		CreatedAt: rfc3339(b.Created), Paid: b.Paid, ExecutionID: b.ExecutionID}
}

// PlaceBid holds the amount from the caller and queues the bid for clearing.
func (e *Economy) PlaceBid(ctx context.Context, actor string, req BidRequest, idem *Idem) (BidView, error) {
	if req.AgentID != "" && req.AgentID != actor {
		return BidView{}, fail(CodeForbidden, "agent_id %q is not the calling agent %q: to wake another agent use for_agent", req.AgentID, actor)
	}
	if err := e.checkBidSpec(BidSpec{Amount: req.Amount, Bundle: req.Bundle}); err != nil {
		return BidView{}, err
	}
	target := actor
	if req.ForAgent != "" {
		target = req.ForAgent
	}
	var view BidView
	err := e.write(ctx, func(tx store.Tx) error {
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		view, err = idempotent(ctx, tx, idem, s.now, func() (BidView, error) {
			if _, err := e.liveAgent(ctx, tx, actor); err != nil {
				return BidView{}, err
			}
			b, err := e.placeBid(ctx, tx, s, actor, target, BidSpec{Amount: req.Amount, Bundle: req.Bundle})
			return bidView(b), err
		})
		return err
	})
	return view, err
}

// checkBidSpec validates what can be checked without the database.
func (e *Economy) checkBidSpec(b BidSpec) error {
	if err := checkAmount("amount", b.Amount); err != nil {
		return err
	}
	lim := market.Limits{Capacity: e.set.Capacity, MaxDurationSeconds: e.set.MaxDurationSeconds}
	if err := b.Bundle.Validate(lim); err != nil {
		var fe *market.FieldError
		if errors.As(err, &fe) {
			return invalid("bundle."+fe.Field, "%s", fe.Problem)
		}
		return invalid("bundle", "%v", err)
	}
	return nil
}

// placeBid checks the reserve and the pending limit, moves the amount into
// the payer's hold account and records the bid.
func (e *Economy) placeBid(ctx context.Context, tx store.Tx, s stamp, payer, target string, spec BidSpec) (store.Bid, error) {
	if _, err := e.liveAgent(ctx, tx, target); err != nil {
		return store.Bid{}, err
	}
	prices, err := postedPrices(ctx, tx)
	if err != nil {
		return store.Bid{}, err
	}
	if reserve := market.Reserve(spec.Bundle, prices); spec.Amount < reserve {
		return store.Bid{}, &Error{Code: CodeBelowReserve,
			Detail: fmt.Sprintf("amount %s is below the bundle's reserve price %s at posted prices", spec.Amount, reserve),
			Extra:  map[string]any{"reserve": reserve, "amount": spec.Amount}}
	}
	n, err := tx.CountPendingBids(ctx, payer)
	if err != nil {
		return store.Bid{}, err
	}
	if n >= e.set.MaxPendingBids {
		return store.Bid{}, &Error{Code: CodeLimit,
			Detail: fmt.Sprintf("%s already has %d pending bids, the limit is %d: cancel one or wait", payer, n, e.set.MaxPendingBids),
			Extra:  map[string]any{"pending": n, "limit": e.set.MaxPendingBids}}
	}
	b := store.Bid{ID: newID("bid"), AgentID: target, PayerID: payer, Amount: spec.Amount, Bundle: spec.Bundle,
		Status: store.BidPending, Created: s.now, CreatedCycle: s.cycle, ExpiresCycle: s.cycle + e.set.BidTTLCycles}
	if _, err := post(ctx, tx, s, ledger.Posting{Kind: ledger.KindHold, From: payer, To: ledger.HoldAccount(payer),
		Amount: spec.Amount, Ref: b.ID, AgentID: payer}); err != nil {
		return store.Bid{}, fundsError(err)
	}
	if err := tx.InsertBid(ctx, &b); err != nil {
		return store.Bid{}, err
	}
	err = emit(ctx, tx, s, "bid.placed", payer, b.ID, map[string]any{"bid_id": b.ID, "agent_id": target,
		"payer_id": payer, "amount": b.Amount, "bundle": b.Bundle, "expires_cycle": b.ExpiresCycle})
	return b, err
}

// CancelBid withdraws one of the caller's pending bids and releases its hold.
func (e *Economy) CancelBid(ctx context.Context, actor, bidID string, idem *Idem) (BidView, error) {
	var view BidView
	err := e.write(ctx, func(tx store.Tx) error {
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		view, err = idempotent(ctx, tx, idem, s.now, func() (BidView, error) {
			b, err := tx.GetBid(ctx, bidID)
			if errors.Is(err, store.ErrNotFound) {
				return BidView{}, &Error{Code: CodeNotFound, Detail: fmt.Sprintf("bid %q does not exist", bidID), Err: err}
			}
			if err != nil {
				return BidView{}, err
			}
			if b.PayerID != actor {
				return BidView{}, fail(CodeForbidden, "bid %q was placed by another agent; you can only cancel your own bids", bidID)
			}
			if b.Status != store.BidPending {
				return BidView{}, fail(CodeConflict, "bid %q is %s, only pending bids can be cancelled", bidID, b.Status)
			}
			if err := e.closeBid(ctx, tx, s, b, store.BidCancelled, "cancelled by "+actor); err != nil {
				return BidView{}, err
			}
			if b.AgentID != actor {
				if err := e.checkStranded(ctx, tx, s, b.AgentID); err != nil {
					return BidView{}, err
				}
			}
			b, err = tx.GetBid(ctx, bidID)
			return bidView(b), err
		})
		return err
	})
	return view, err
}

// closeBid ends a pending bid without it winning: the hold goes back to the payer.
func (e *Economy) closeBid(ctx context.Context, tx store.Tx, s stamp, b store.Bid, status, why string) error {
	b.Status, b.Closed, b.ClosedCycle = status, s.now, s.cycle
	if err := tx.CloseBid(ctx, b); err != nil {
		return err
	}
	if _, err := post(ctx, tx, s, ledger.Posting{Kind: ledger.KindRelease, From: ledger.HoldAccount(b.PayerID),
		To: b.PayerID, Amount: b.Amount, Ref: b.ID, Memo: why, AgentID: b.PayerID}); err != nil {
		return err
	}
	return emit(ctx, tx, s, "bid."+status, b.PayerID, b.ID, map[string]any{"bid_id": b.ID, "agent_id": b.AgentID,
		"payer_id": b.PayerID, "amount": b.Amount, "reason": why})
}

// postedPrices reads the current posted prices.
func postedPrices(ctx context.Context, tx store.Tx) (market.Prices, error) {
	states, err := tx.ListResourceStates(ctx)
	if err != nil {
		return market.Prices{}, err
	}
	return pricesOf(states), nil
}

func pricesOf(states []store.ResourceState) market.Prices {
	var p market.Prices
	for _, s := range states {
		switch s.Resource {
		case market.CPU:
			p.CPU = s.Price
		case market.Memory:
			p.Memory = s.Price
		case market.Tokens:
			p.Tokens = s.Price
		case market.Attention:
			p.Attention = s.Price
		}
	}
	return p
}
