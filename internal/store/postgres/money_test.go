package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/postgres"
	"github.com/bpagents/bpagents/internal/store/postgres/pgtest"
)

// TestConcurrentMoneyAcrossProcesses moves money between a few accounts from
// several separate pools at once, as several bpagents processes sharing one
// database would: transfers in both directions between the same accounts,
// fees to the one burn account, mints from the one mint account, and spends
// that only fit if no concurrent spend was lost. Afterwards the books must
// audit clean, every credit minted must be accounted for, and no agent may
// have gone below zero.
func TestConcurrentMoneyAcrossProcesses(t *testing.T) {
	t.Parallel()
	const (
		processes = 4
		workers   = 4 // per process
		agents    = 6
		initial   = 100 // credits each
	)
	ops := 60
	if testing.Short() {
		ops = 20
	}
	url := pgtest.Schema(t)
	dbs := make([]*postgres.DB, processes)
	for i := range dbs {
		dbs[i] = pgtest.OpenAt(t, url, postgres.Options{MaxConns: workers})
	}
	ctx := t.Context()
	ids := make([]string, agents)
	for i := range ids {
		ids[i] = fmt.Sprintf("a%d", i)
	}
	var minted atomic.Int64
	err := dbs[0].Write(ctx, func(tx store.Tx) error {
		if err := ledger.EnsureSystemAccounts(ctx, tx, time.Now()); err != nil {
			return err
		}
		for _, id := range ids {
			if err := ledger.OpenAgentAccounts(ctx, tx, id, time.Now()); err != nil {
				return err
			}
			if _, err := ledger.Post(ctx, tx, ledger.Posting{Kind: ledger.KindEndowment, From: ledger.MintAccount,
				To: id, Amount: money.Credits(initial), Time: time.Now()}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	minted.Add(int64(money.Credits(initial * agents)))

	var ok, refused, posts atomic.Int64
	var wg sync.WaitGroup
	for p, db := range dbs {
		for w := range workers {
			rng := rand.New(rand.NewPCG(uint64(p), uint64(w)))
			wg.Go(func() {
				for range ops {
					n, err := moveMoney(ctx, db, rng, ids, &minted)
					if err != nil {
						var funds *ledger.InsufficientFundsError
						if !errors.As(err, &funds) {
							t.Errorf("process %d: %v", p, err)
							return
						}
						refused.Add(1)
						continue
					}
					ok.Add(1)
					posts.Add(int64(n))
				}
			})
		}
	}
	wg.Wait()

	r, err := ledger.Audit(ctx, dbs[processes-1])
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK || r.Sum != 0 {
		t.Fatalf("audit: %+v", r)
	}
	if r.Minted != money.Micro(minted.Load()) || r.Minted != r.Circulating+r.Held+r.Burned {
		t.Fatalf("minted %s (the workers minted %s) != circulating %s + held %s + burned %s",
			r.Minted, money.Micro(minted.Load()), r.Circulating, r.Held, r.Burned)
	}
	if want := int(posts.Load()) + agents; r.Transfers != want {
		t.Fatalf("%d transfers recorded, %d posted", r.Transfers, want)
	}
	var retries int64
	for _, db := range dbs {
		retries += db.Retries()
	}
	t.Logf("%d movements, %d refused for lack of funds, %d transactions retried", ok.Load(), refused.Load(), retries)
	if ok.Load() == 0 || refused.Load() == 0 {
		t.Fatalf("the workload must both move money and be refused (ok %d, refused %d)", ok.Load(), refused.Load())
	}
}

// moveMoney makes one random movement of one or two postings in one
// transaction, and returns how many it posted.
func moveMoney(ctx context.Context, db *postgres.DB, rng *rand.Rand, ids []string, minted *atomic.Int64) (int, error) {
	a, b := ids[rng.IntN(len(ids))], ids[rng.IntN(len(ids))]
	for a == b {
		b = ids[rng.IntN(len(ids))]
	}
	amount := money.Micro(rng.Int64N(int64(money.Credits(30)))) + 1
	var p []ledger.Posting
	switch r := rng.IntN(10); {
	case r < 6:
		p = []ledger.Posting{{Kind: ledger.KindTransfer, From: a, To: b, Amount: amount}}
	case r < 8: // a transfer with its fee, both or neither
		p = []ledger.Posting{{Kind: ledger.KindTransfer, From: a, To: b, Amount: amount},
			{Kind: ledger.KindMessageFee, From: a, To: ledger.BurnAccount, Amount: money.Credits(1)}}
	case r < 9: // spend everything: only right if no concurrent spend was lost
		p = []ledger.Posting{{Kind: ledger.KindSettle, From: a, To: ledger.BurnAccount}}
	default:
		p = []ledger.Posting{{Kind: ledger.KindMint, From: ledger.MintAccount, To: a, Amount: 5 * amount}}
	}
	var mint money.Micro
	err := db.Write(ctx, func(tx store.Tx) error {
		mint = 0
		for _, q := range p {
			if q.Amount == 0 {
				acct, err := tx.GetAccount(ctx, q.From)
				if err != nil {
					return err
				}
				if acct.Balance == 0 {
					return &ledger.InsufficientFundsError{Account: q.From, Need: 1}
				}
				q.Amount = acct.Balance
			}
			q.Time, q.AgentID = time.Now(), q.From
			if _, err := ledger.Post(ctx, tx, q); err != nil {
				return err
			}
			if q.From == ledger.MintAccount {
				mint += q.Amount
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	minted.Add(int64(mint))
	return len(p), nil
}
