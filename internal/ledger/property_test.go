package ledger_test

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// model is the test's own account of what every balance must be.
type model struct {
	bal      map[string]money.Micro
	accounts map[string]bool
	pending  map[string]pendingBid // by bid id
	minted   money.Micro
	posts    int // successful postings
}

type pendingBid struct {
	payer  string
	amount money.Micro
}

// TestPropertyRandomPostings applies a seeded random mix of valid and
// invalid postings, each in its own transaction (some with a bid placed or
// closed alongside, as the economy does), and checks after every one that
// the ledger did exactly what a simple model predicts, and periodically and
// at the end that the audit passes and the books sum to zero.
func TestPropertyRandomPostings(t *testing.T) {
	t.Parallel()
	ops := 3000
	if raceEnabled {
		// The race detector slows the pure-Go SQLite about twentyfold; the
		// sequence stays in the thousands, over both seeds.
		ops = 1000
	}
	for _, seed := range []uint64{1, 20261125} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			runPostings(t, seed, ops)
		})
	}
}

func runPostings(t *testing.T, seed uint64, ops int) {
	agents := []string{"a0", "a1", "a2", "a3", "a4"}
	b := newBook(t, agents...)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	m := &model{bal: map[string]money.Micro{}, pending: map[string]pendingBid{},
		accounts: map[string]bool{ledger.MintAccount: true, ledger.BurnAccount: true}}
	for _, a := range agents {
		m.accounts[a], m.accounts[ledger.HoldAccount(a)] = true, true
	}
	ctx := t.Context()
	agent := func() string { return agents[rng.IntN(len(agents))] }
	// amount is mostly affordable for from, sometimes just over, sometimes wild.
	amount := func(from string) money.Micro {
		have := m.bal[from]
		switch r := rng.IntN(20); {
		case r == 0:
			return have + 1
		case r == 1 || have <= 0:
			return money.Micro(rng.Int64N(int64(money.Credits(50)))) + 1
		default:
			return money.Micro(rng.Int64N(int64(have))) + 1
		}
	}
	counts := map[string]int{}
	bidSeq := 0

	for i := range ops {
		var (
			op     string
			p      ledger.Posting
			extra  func(tx store.Tx) error // store changes made in the same transaction
			after  func()                  // model changes beyond the posting, on success
			forced error                   // an error returned after a successful Post
		)
		p.Time, p.Cycle = t0, int64(i)
		switch r := rng.IntN(100); {
		case r < 12:
			op, p.Kind, p.From, p.To = "mint", ledger.KindMint, ledger.MintAccount, agent()
			p.Amount = money.Micro(rng.Int64N(int64(money.Credits(100)))) + 1
		case r < 35:
			op, p.Kind, p.From, p.To = "transfer", ledger.KindTransfer, agent(), agent()
			p.Amount = amount(p.From)
		case r < 42:
			op, p.Kind, p.From, p.To = "burn", ledger.KindMessageFee, agent(), ledger.BurnAccount
			p.Amount = amount(p.From)
		case r < 60:
			op, p.Kind = "hold", ledger.KindHold
			p.From = agent()
			p.To, p.Amount = ledger.HoldAccount(p.From), amount(p.From)
			bidSeq++
			id := fmt.Sprintf("bid%d", bidSeq)
			p.Ref = id
			extra = func(tx store.Tx) error {
				bd := store.Bid{ID: id, AgentID: p.From, PayerID: p.From, Amount: p.Amount, Bundle: bundle,
					Status: store.BidPending, Created: t0, CreatedCycle: int64(i), ExpiresCycle: int64(i) + 30}
				return tx.InsertBid(ctx, &bd)
			}
			after = func() { m.pending[id] = pendingBid{payer: p.From, amount: p.Amount} }
		case r < 75 && len(m.pending) > 0:
			// Close a pending bid: release it to its payer, or settle it,
			// partly refunded, to burn.
			ids := slices.Sorted(maps.Keys(m.pending))
			id := ids[rng.IntN(len(ids))]
			pb := m.pending[id]
			settle := rng.IntN(2) == 0
			op, p.From, p.Ref, p.Amount = "release", ledger.HoldAccount(pb.payer), id, pb.amount
			p.Kind, p.To = ledger.KindRelease, pb.payer
			var refund money.Micro
			if settle {
				op, p.Kind, p.To = "settle", ledger.KindSettle, ledger.BurnAccount
				p.Amount = money.Micro(rng.Int64N(int64(pb.amount))) + 1
				refund = pb.amount - p.Amount
			}
			extra = func(tx store.Tx) error {
				bd, err := tx.GetBid(ctx, id)
				if err != nil {
					return err
				}
				bd.Status, bd.Closed, bd.Paid = store.BidCancelled, t0, 0
				if settle {
					bd.Status, bd.Paid = store.BidWon, p.Amount
				}
				if err := tx.CloseBid(ctx, bd); err != nil {
					return err
				}
				if refund > 0 {
					_, err = ledger.Post(ctx, tx, ledger.Posting{Kind: ledger.KindRelease, From: p.From, To: pb.payer,
						Amount: refund, Ref: id, Time: t0})
				}
				return err
			}
			after = func() {
				delete(m.pending, id)
				if refund > 0 {
					m.bal[p.From] -= refund
					m.bal[pb.payer] += refund
					m.posts++
				}
			}
		case r < 80:
			op, p.Kind, p.From, p.To = "zero or negative", ledger.KindTransfer, agent(), agent()
			p.Amount = -money.Micro(rng.Int64N(int64(money.Credits(10))))
		case r < 83:
			op, p.Kind, p.From, p.To = "over max", ledger.KindMint, ledger.MintAccount, agent()
			p.Amount = money.Max + 1 + money.Micro(rng.Int64N(1000))
		case r < 86:
			op, p.Kind, p.From = "self", ledger.KindTransfer, agent()
			p.To, p.Amount = p.From, 1
		case r < 89:
			op, p.Kind, p.From, p.To = "unknown account", ledger.KindTransfer, agent(), "ghost"
			if rng.IntN(2) == 0 {
				p.From, p.To = "hold:ghost", p.From
			}
			p.Amount = 1
		case r < 93:
			// Take more from a hold than its bids hold, without closing one.
			op, p.Kind, p.From = "hold overdraft", ledger.KindRelease, agent()
			p.To, p.From = p.From, ledger.HoldAccount(p.From)
			p.Amount = m.bal[p.From] + 1
		default:
			// A valid posting in a transaction that fails afterwards.
			op, p.Kind, p.From, p.To = "rolled back", ledger.KindMint, ledger.MintAccount, agent()
			p.Amount = money.Credits(1)
			forced = errors.New("later step failed")
		}
		p.AgentID = p.From

		want := expect(m, p)
		if forced != nil && want == nil {
			want = forced
		}
		err := b.st.Write(ctx, func(tx store.Tx) error {
			if _, err := ledger.Post(ctx, tx, p); err != nil {
				return err
			}
			if extra != nil {
				if err := extra(tx); err != nil {
					return fmt.Errorf("extra: %w", err)
				}
			}
			return forced
		})
		checkOutcome(t, i, op, p, err, want)
		if err == nil {
			m.bal[p.From] -= p.Amount
			m.bal[p.To] += p.Amount
			m.posts++
			if p.From == ledger.MintAccount {
				m.minted += p.Amount
			}
			if after != nil {
				after()
			}
			counts[op]++
		} else {
			counts[op+" (refused)"]++
		}
		if i%500 == 499 || i == ops-1 {
			checkBooks(t, b, m, i)
		}
	}
	for _, op := range []string{"mint", "transfer", "burn", "hold", "release", "settle"} {
		if counts[op] == 0 {
			t.Errorf("no successful %s in %d operations: the mix is too narrow (%v)", op, ops, counts)
		}
	}
	for _, op := range []string{"transfer (refused)", "hold (refused)", "zero or negative (refused)",
		"hold overdraft (refused)", "rolled back (refused)"} {
		if counts[op] == 0 {
			t.Errorf("no %s in %d operations (%v)", op, ops, counts)
		}
	}
}

// errInsufficient marks an expected *InsufficientFundsError.
type errInsufficient struct{ need, have money.Micro }

func (e errInsufficient) Error() string {
	return fmt.Sprintf("insufficient: need %s have %s", e.need, e.have)
}

// expect predicts Post's outcome from the model: nil, a sentinel, or errInsufficient.
func expect(m *model, p ledger.Posting) error {
	known := func(id string) bool { return m.accounts[id] }
	switch {
	case p.Amount <= 0 || p.Amount > money.Max:
		return ledger.ErrInvalidAmount
	case p.From == p.To:
		return errors.New("self")
	case !known(p.From) || !known(p.To):
		return store.ErrNotFound
	case p.From != ledger.MintAccount && m.bal[p.From] < p.Amount:
		return errInsufficient{need: p.Amount, have: m.bal[p.From]}
	}
	return nil
}

func checkOutcome(t *testing.T, i int, op string, p ledger.Posting, err, want error) {
	t.Helper()
	fail := func() {
		t.Fatalf("op %d (%s %s→%s %s): err = %v, want %v", i, op, p.From, p.To, p.Amount, err, want)
	}
	var ins errInsufficient
	switch {
	case want == nil:
		if err != nil {
			fail()
		}
	case errors.As(want, &ins):
		var ife *ledger.InsufficientFundsError
		if !errors.As(err, &ife) || ife.Need != ins.need || ife.Have != ins.have || ife.Account != p.From {
			fail()
		}
	case want.Error() == "self":
		if err == nil {
			fail()
		}
	default:
		if !errors.Is(err, want) {
			fail()
		}
	}
}

// checkBooks compares the store with the model and runs the audit.
func checkBooks(t *testing.T, b book, m *model, i int) {
	t.Helper()
	bal := b.balances(t)
	var sum money.Micro
	for id, v := range bal {
		sum += v
		if v != m.bal[id] {
			t.Fatalf("after op %d: %s holds %s, model says %s", i, id, v, m.bal[id])
		}
		if v < 0 && id != ledger.MintAccount {
			t.Fatalf("after op %d: %s is negative (%s)", i, id, v)
		}
	}
	if sum != 0 {
		t.Fatalf("after op %d: balances sum to %s", i, sum)
	}
	r := b.audit(t)
	if !r.OK {
		t.Fatalf("after op %d: audit failed: %v", i, r.Violations)
	}
	if r.Minted != m.minted || r.Minted != r.Circulating+r.Held+r.Burned || r.PendingBids != len(m.pending) {
		t.Fatalf("after op %d: report %+v, model minted %s with %d pending bids", i, r, m.minted, len(m.pending))
	}
	transfers, events := b.counts(t)
	if transfers != m.posts || events != m.posts {
		t.Fatalf("after op %d: %d transfers and %d events for %d postings", i, transfers, events, m.posts)
	}
}
