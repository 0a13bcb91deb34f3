package ledger

import (
	"context"
	"fmt"
	"sort"

	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// Report is the result of an audit: figures and every violation found.
type Report struct {
	OK          bool        `json:"ok"`
	Accounts    int         `json:"accounts"`
	Transfers   int         `json:"transfers"`
	Sum         money.Micro `json:"sum"`
	Minted      money.Micro `json:"minted"`
	Burned      money.Micro `json:"burned"`
	Circulating money.Micro `json:"circulating"`
	Held        money.Micro `json:"held"`
	PendingBids int         `json:"pending_bids"`
	Violations  []string    `json:"violations"`
}

// Audit checks every ledger invariant in one consistent snapshot:
//   - the sum of all balances is zero;
//   - each balance equals the sum of its entries;
//   - each hold account equals the amounts of the pending bids its agent pays;
//   - no agent or hold balance is negative; burn is never negative, mint never positive.
func Audit(ctx context.Context, st store.Store) (Report, error) {
	var r Report
	err := st.Read(ctx, func(tx store.Tx) error {
		var err error
		r, err = auditTx(ctx, tx)
		return err
	})
	return r, err
}

func auditTx(ctx context.Context, tx store.Tx) (Report, error) {
	r := Report{Violations: []string{}}
	accounts, err := tx.ListAccounts(ctx)
	if err != nil {
		return r, fmt.Errorf("audit: %w", err)
	}
	sums, err := tx.EntrySums(ctx)
	if err != nil {
		return r, fmt.Errorf("audit: %w", err)
	}
	pending, err := tx.PendingBids(ctx)
	if err != nil {
		return r, fmt.Errorf("audit: %w", err)
	}
	count, err := tx.CountTransfers(ctx)
	if err != nil {
		return r, fmt.Errorf("audit: %w", err)
	}
	r.Transfers = int(count)
	r.Accounts = len(accounts)
	r.PendingBids = len(pending)
	holdWant := map[string]money.Micro{}
	for _, b := range pending {
		holdWant[HoldAccount(b.PayerID)] += b.Amount
	}
	known := map[string]bool{}
	for _, a := range accounts {
		known[a.ID] = true
		r.Sum += a.Balance
		if got := sums[a.ID]; got != a.Balance {
			r.violate("account %s: balance %s but its entries sum to %s", a.ID, a.Balance, got)
		}
		switch a.Kind {
		case store.AccountAgent:
			r.Circulating += a.Balance
			if a.Balance < 0 {
				r.violate("agent account %s is negative: %s", a.ID, a.Balance)
			}
		case store.AccountHold:
			r.Held += a.Balance
			if a.Balance < 0 {
				r.violate("hold account %s is negative: %s", a.ID, a.Balance)
			}
			if want := holdWant[a.ID]; want != a.Balance {
				r.violate("hold account %s holds %s but its pending bids total %s", a.ID, a.Balance, want)
			}
		case store.AccountSystem:
			switch a.ID {
			case MintAccount:
				r.Minted = -a.Balance
				if a.Balance > 0 {
					r.violate("system:mint is positive: %s", a.Balance)
				}
			case BurnAccount:
				r.Burned = a.Balance
				if a.Balance < 0 {
					r.violate("system:burn is negative: %s", a.Balance)
				}
			}
		}
	}
	for id, want := range holdWant {
		if !known[id] {
			r.violate("pending bids are held by %s, which does not exist (%s)", id, want)
		}
	}
	for id, s := range sums {
		if !known[id] {
			r.violate("entries name account %s, which does not exist (sum %s)", id, s)
		}
	}
	if r.Sum != 0 {
		r.violate("balances sum to %s, not 0", r.Sum)
	}
	sort.Strings(r.Violations)
	r.OK = len(r.Violations) == 0
	return r, nil
}

func (r *Report) violate(format string, args ...any) {
	r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
}
