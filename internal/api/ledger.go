package api

// Operator reads for the CLI's export and `agent ID`: the whole ledger paged
// in id order, and one agent's bids. The routes are in routeTable.

import (
	"context"
	"slices"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// LedgerEntry is one double-entry transfer: Amount leaves From, enters To.
type LedgerEntry struct {
	ID     int64       `json:"id"`
	Time   string      `json:"time"`
	Cycle  int64       `json:"cycle"`
	Kind   string      `json:"kind"`
	From   string      `json:"from"`
	To     string      `json:"to"`
	Amount money.Micro `json:"amount"`
	Ref    string      `json:"ref,omitempty"`
	Memo   string      `json:"memo,omitempty"`
}

// LedgerPage is a page of the ledger in ascending id order.
type LedgerPage struct {
	Entries []LedgerEntry `json:"entries"`
	// LastID is the highest transfer id in the ledger (progress of an export).
	LastID int64 `json:"last_id"`
	// NextAfter continues the listing with ?after= (0 when this page reached the end).
	NextAfter int64 `json:"next_after"`
}

func (s *Server) ledgerPage(ctx context.Context, c *Call[NoBody]) (LedgerPage, error) {
	after, err := c.IntQuery("after", 0)
	if err != nil {
		return LedgerPage{}, err
	}
	limit, err := c.IntQuery("limit", 100)
	if err != nil {
		return LedgerPage{}, err
	}
	n := clampLimit(limit)
	out := LedgerPage{Entries: []LedgerEntry{}}
	// Stop at the settled horizon, so the next page misses nothing.
	h, err := store.SettledOf(ctx, s.eco.Store())
	if err != nil {
		return LedgerPage{}, err
	}
	err = s.eco.Store().Read(ctx, func(tx store.Tx) error {
		list, err := tx.ListTransfers(ctx, store.TransferFilter{Account: c.Query("account"), AfterID: after,
			Ascending: true, Limit: n})
		if err != nil {
			return err
		}
		for _, t := range list {
			if t.ID > h.TransferID {
				break
			}
			out.Entries = append(out.Entries, LedgerEntry{ID: t.ID, Time: t.Created.UTC().Format(time.RFC3339Nano),
				Cycle: t.Cycle, Kind: t.Kind, From: t.From, To: t.To, Amount: t.Amount, Ref: t.Ref, Memo: t.Memo})
		}
		newest, err := tx.ListTransfers(ctx, store.TransferFilter{Limit: 1})
		if err != nil {
			return err
		}
		if len(newest) > 0 {
			out.LastID = newest[0].ID
		}
		return nil
	})
	if len(out.Entries) == n {
		out.NextAfter = out.Entries[n-1].ID
	}
	return out, err
}

func (s *Server) agentBids(ctx context.Context, c *Call[NoBody]) (BidList, error) {
	id := c.R.PathValue("id")
	if _, err := s.eco.Agent(ctx, id); err != nil {
		return BidList{}, err
	}
	limit, err := c.IntQuery("limit", 100)
	if err != nil {
		return BidList{}, err
	}
	status := c.Query("status")
	if status != "" && !slices.Contains([]string{store.BidPending, store.BidWon, store.BidCancelled, store.BidExpired, store.BidVoid}, status) {
		return BidList{}, refuse(economy.CodeInvalid, "query parameter status: must be pending, won, cancelled, expired or void, got %q", status)
	}
	bids, err := s.eco.Bids(ctx, id, status, clampLimit(limit))
	return BidList{Bids: bids}, err
}
