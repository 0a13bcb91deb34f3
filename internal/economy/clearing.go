package economy

import (
	"context"
	"strconv"
	"time"

	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// ClearResult summarises one cycle's clearing.
type ClearResult struct {
	Cycle   int64
	Pending int
	Expired int
	Winners int
	Revenue money.Micro
	// ExpiredPrompts counts prompts whose time for a rating ran out.
	ExpiredPrompts int
	// Queued are the executions created for this cycle's winners.
	Queued []store.Execution
	Took   time.Duration
}

// Clear runs one market cycle in one transaction: advance the cycle, expire
// bids past their TTL (releasing holds) and prompts past theirs, clear the
// pending bids against the free capacity, settle each winner's hold (payment
// burned, any difference released), queue an execution per winner, move
// posted prices, and record the clearing. Everything commits together or not
// at all.
func (e *Economy) Clear(ctx context.Context) (ClearResult, error) {
	return e.clear(ctx, nil)
}

// clear runs one cycle; check, when set, runs first in the transaction and
// stops the clearing by failing (the leader's fence).
func (e *Economy) clear(ctx context.Context, check func(tx store.Tx) error) (ClearResult, error) {
	var res ClearResult
	started := time.Now()
	err := e.write(ctx, func(tx store.Tx) error {
		res = ClearResult{}
		if check != nil {
			if err := check(tx); err != nil {
				return err
			}
		}
		prev, err := currentCycle(ctx, tx)
		if err != nil {
			return err
		}
		s := stamp{now: e.now(), cycle: prev + 1}
		if err := tx.SetMeta(ctx, metaCycle, strconv.FormatInt(s.cycle, 10)); err != nil {
			return err
		}
		res.Cycle = s.cycle
		bids, err := e.expireBids(ctx, tx, s, &res)
		if err != nil {
			return err
		}
		res.Pending = len(bids)
		if res.ExpiredPrompts, err = e.expirePrompts(ctx, tx, s); err != nil {
			return err
		}
		in, states, err := e.clearingInput(ctx, tx, bids)
		if err != nil {
			return err
		}
		plan := market.Clear(in)
		for _, w := range plan.Winners {
			ex, err := e.settleWinner(ctx, tx, s, w)
			if err != nil {
				return err
			}
			res.Queued = append(res.Queued, ex)
			res.Revenue += w.Pay
		}
		res.Winners = len(plan.Winners)
		if err := e.realTokenUse(ctx, tx, plan.Utilization); err != nil {
			return err
		}
		prices := market.Adjust(in.Prices, plan.Utilization, e.set.PriceRules)
		for _, st := range states {
			st.Price = prices.Of(st.Resource)
			st.Utilization = plan.Utilization[st.Resource]
			if err := tx.SaveResourceState(ctx, st); err != nil {
				return err
			}
		}
		return e.recordClearing(ctx, tx, s, res, plan, prices, time.Since(started))
	})
	res.Took = time.Since(started)
	return res, err
}

// expireBids closes bids past their TTL and returns the ones still pending.
func (e *Economy) expireBids(ctx context.Context, tx store.Tx, s stamp, res *ClearResult) ([]store.Bid, error) {
	pending, err := tx.PendingBids(ctx)
	if err != nil {
		return nil, err
	}
	live := pending[:0]
	var orphaned []string
	for _, b := range pending {
		if b.ExpiresCycle >= s.cycle {
			live = append(live, b)
			continue
		}
		if err := e.closeBid(ctx, tx, s, b, store.BidExpired, "not won within its TTL"); err != nil {
			return nil, err
		}
		res.Expired++
		orphaned = append(orphaned, b.AgentID)
	}
	if len(orphaned) == 0 {
		return live, nil
	}
	for _, id := range orphaned {
		if err := e.checkStranded(ctx, tx, s, id); err != nil {
			return nil, err
		}
	}
	// A death voids every bid its agent paid or would wake from: read what
	// is still pending.
	return tx.PendingBids(ctx)
}

// clearingInput gathers the market's view: free capacity, busy agents, prices.
func (e *Economy) clearingInput(ctx context.Context, tx store.Tx, bids []store.Bid) (market.ClearingInput, []store.ResourceState, error) {
	active, err := tx.ListExecutions(ctx, store.ExecutionFilter{Statuses: []string{store.ExecQueued, store.ExecRunning}})
	if err != nil {
		return market.ClearingInput{}, nil, err
	}
	busy := make(map[string]bool, len(active))
	var used market.Capacity
	for _, ex := range active {
		busy[ex.AgentID] = true
		d := ex.Bundle.Demand()
		used.CPUMillis += d.CPUMillis
		used.MemoryMB += d.MemoryMB
		used.Tokens += d.Tokens
		used.Attention += d.Attention
	}
	states, err := tx.ListResourceStates(ctx)
	if err != nil {
		return market.ClearingInput{}, nil, err
	}
	in := market.ClearingInput{
		Bids:      make([]market.Bid, len(bids)),
		Free:      e.set.Capacity.Sub(used),
		Capacity:  e.set.Capacity,
		Prices:    pricesOf(states),
		Busy:      busy,
		Mechanism: e.set.Mechanism,
	}
	for i, b := range bids {
		in.Bids[i] = market.Bid{ID: b.ID, Seq: b.Seq, AgentID: b.AgentID, Amount: b.Amount, Bundle: b.Bundle}
	}
	return in, states, nil
}

// settleWinner burns the winner's payment from its hold, releases any
// refund, closes the bid as won and queues its execution.
func (e *Economy) settleWinner(ctx context.Context, tx store.Tx, s stamp, w market.Winner) (store.Execution, error) {
	b, err := tx.GetBid(ctx, w.Bid.ID)
	if err != nil {
		return store.Execution{}, err
	}
	ex := store.Execution{ID: newID("ex"), AgentID: b.AgentID, BidID: b.ID, Status: store.ExecQueued,
		Cycle: s.cycle, Bundle: b.Bundle, Paid: w.Pay, Created: s.now}
	hold := ledger.HoldAccount(b.PayerID)
	if w.Pay > 0 {
		if _, err := post(ctx, tx, s, ledger.Posting{Kind: ledger.KindSettle, From: hold, To: ledger.BurnAccount,
			Amount: w.Pay, Ref: b.ID, Memo: "execution " + ex.ID, AgentID: b.PayerID}); err != nil {
			return store.Execution{}, err
		}
	}
	if w.Refund > 0 {
		if _, err := post(ctx, tx, s, ledger.Posting{Kind: ledger.KindRelease, From: hold, To: b.PayerID,
			Amount: w.Refund, Ref: b.ID, Memo: "refund above the clearing payment", AgentID: b.PayerID}); err != nil {
			return store.Execution{}, err
		}
	}
	b.Status, b.Closed, b.ClosedCycle, b.Paid, b.ExecutionID = store.BidWon, s.now, s.cycle, w.Pay, ex.ID
	if err := tx.CloseBid(ctx, b); err != nil {
		return store.Execution{}, err
	}
	if err := tx.InsertExecution(ctx, &ex); err != nil {
		return store.Execution{}, err
	}
	if err := emit(ctx, tx, s, "bid.won", b.PayerID, b.ID, map[string]any{"bid_id": b.ID, "agent_id": b.AgentID,
		"payer_id": b.PayerID, "amount": b.Amount, "paid": w.Pay, "refund": w.Refund, "execution_id": ex.ID}); err != nil {
		return store.Execution{}, err
	}
	err = emit(ctx, tx, s, "execution.queued", b.AgentID, ex.ID, map[string]any{"execution_id": ex.ID,
		"bid_id": b.ID, "bundle": b.Bundle, "paid": w.Pay})
	return ex, err
}

func (e *Economy) recordClearing(ctx context.Context, tx store.Tx, s stamp, res ClearResult, plan market.ClearingPlan,
	prices market.Prices, took time.Duration) error {
	c := store.Clearing{Cycle: s.cycle, Time: s.now, Mechanism: string(plan.Mechanism), Pending: int64(res.Pending),
		Winners: int64(res.Winners), Expired: int64(res.Expired), Revenue: res.Revenue,
		Allocated: map[market.Resource]int64{}, Utilization: plan.Utilization, Prices: map[market.Resource]money.Micro{},
		DurationUS: took.Microseconds()}
	for _, r := range market.Resources {
		c.Allocated[r] = plan.Allocated.Of(r)
		c.Prices[r] = prices.Of(r)
	}
	if err := tx.InsertClearing(ctx, c); err != nil {
		return err
	}
	winners := make([]string, 0, len(plan.Winners))
	for _, w := range plan.Winners {
		winners = append(winners, w.Bid.ID)
	}
	return emit(ctx, tx, s, "market.cleared", "", "cycle:"+strconv.FormatInt(s.cycle, 10), map[string]any{
		"cycle": s.cycle, "mechanism": plan.Mechanism, "pending": res.Pending, "winners": winners,
		"expired": res.Expired, "revenue": res.Revenue, "utilization": plan.Utilization, "prices": c.Prices})
}

// realTokenUse replaces the tokens market's utilization by the tokens agents
// actually consumed through the intelligence proxy since the last clearing
// (a share of capacity), and starts the count again: reserving tokens in a
// bundle is not using them, and the price should follow use.
func (e *Economy) realTokenUse(ctx context.Context, tx store.Tx, util map[market.Resource]float64) error {
	used, err := tokensSinceClearing(ctx, tx)
	if err != nil {
		return err
	}
	if used > 0 {
		if err := tx.SetMeta(ctx, metaTokensUsed, "0"); err != nil {
			return err
		}
	}
	if c := e.set.Capacity.Tokens; c > 0 {
		util[market.Tokens] = float64(used) / float64(c)
	}
	return nil
}
