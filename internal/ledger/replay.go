package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// ReplayReport is the result of rebuilding every balance from the event log.
type ReplayReport struct {
	OK         bool     `json:"ok"`
	Events     int      `json:"events"`
	Accounts   int      `json:"accounts"`
	Violations []string `json:"violations"`
}

// replayPage is how many events a replay reads per query.
const replayPage = 5000

// Replay rebuilds every account balance from the ledger.transfer events
// alone, in sequence order, and compares the result with the balances the
// store holds. Because each posting writes its event in the same transaction,
// the two must agree exactly; any difference is a violation. It also checks
// that the events and the transfers table describe the same movements.
func Replay(ctx context.Context, st store.Store) (ReplayReport, error) {
	r := ReplayReport{Violations: []string{}}
	err := st.Read(ctx, func(tx store.Tx) error {
		rebuilt := map[string]money.Micro{}
		var after int64
		for {
			evs, err := tx.ListEvents(ctx, store.EventFilter{AfterSeq: after, Type: EventTransfer, Limit: replayPage})
			if err != nil {
				return err
			}
			for _, ev := range evs {
				var te TransferEvent
				if err := json.Unmarshal(ev.Data, &te); err != nil {
					r.violate("event %d: %v", ev.Seq, err)
					continue
				}
				if te.Amount <= 0 {
					r.violate("event %d moves a non-positive amount %s", ev.Seq, te.Amount)
				}
				rebuilt[te.From] -= te.Amount
				rebuilt[te.To] += te.Amount
				r.Events++
				after = ev.Seq
			}
			if len(evs) < replayPage {
				break
			}
		}
		count, err := tx.CountTransfers(ctx)
		if err != nil {
			return err
		}
		if count != int64(r.Events) {
			r.violate("the log has %d ledger.transfer events but the ledger has %d transfers", r.Events, count)
		}
		accounts, err := tx.ListAccounts(ctx)
		if err != nil {
			return err
		}
		r.Accounts = len(accounts)
		known := map[string]bool{}
		for _, a := range accounts {
			known[a.ID] = true
			if got := rebuilt[a.ID]; got != a.Balance {
				r.violate("account %s: balance %s but the event log rebuilds %s", a.ID, a.Balance, got)
			}
		}
		for id, b := range rebuilt {
			if !known[id] {
				r.violate("the event log moves money through %s, which is not an account (%s)", id, b)
			}
		}
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("replay: %w", err)
	}
	sort.Strings(r.Violations)
	r.OK = len(r.Violations) == 0
	return r, nil
}

func (r *ReplayReport) violate(format string, args ...any) {
	r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
}
