package ledger_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/postgres"
	"github.com/bpagents/bpagents/internal/store/postgres/pgtest"
	"github.com/bpagents/bpagents/internal/store/sqlite"
)

// benchAgents is the population the store benchmarks move money between.
const benchAgents = 256

// benchStores opens each backend in its durable configuration: SQLite with
// synchronous FULL (every commit fsynced, as `bpagents up` runs), PostgreSQL
// with the server's defaults (synchronous_commit on).
var benchStores = []struct {
	name string
	open func(b *testing.B) store.Store
}{
	{"sqlite", func(b *testing.B) store.Store {
		st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		return st
	}},
	{"postgres", func(b *testing.B) store.Store {
		return pgtest.Open(b, postgres.Options{MaxConns: 16})
	}},
}

// fundedBook opens benchAgents agents with 1,000,000 credits each.
func fundedBook(b *testing.B, st store.Store) []string {
	b.Helper()
	ctx := context.Background()
	ids := make([]string, benchAgents)
	err := st.Write(ctx, func(tx store.Tx) error {
		if err := ledger.EnsureSystemAccounts(ctx, tx, t0); err != nil {
			return err
		}
		for i := range ids {
			ids[i] = fmt.Sprintf("agent-%03d", i)
			if err := ledger.OpenAgentAccounts(ctx, tx, ids[i], t0); err != nil {
				return err
			}
			if _, err := ledger.Post(ctx, tx, ledger.Posting{Kind: ledger.KindEndowment, From: ledger.MintAccount,
				To: ids[i], Amount: money.Credits(1_000_000), Time: t0}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return ids
}

// BenchmarkStoreTransfers measures durable transfers per second through the
// store and ledger.Post (one committed transaction each: balances, transfer
// row, audit event), from 16 concurrent writers between random agents.
func BenchmarkStoreTransfers(b *testing.B) {
	benchStoreOps(b, "transfers/s", func(ctx context.Context, st store.Store, ids []string, rng *rand.Rand) error {
		from, to := ids[rng.IntN(len(ids))], ids[rng.IntN(len(ids))]
		for to == from {
			to = ids[rng.IntN(len(ids))]
		}
		return st.Write(ctx, func(tx store.Tx) error {
			_, err := ledger.Post(ctx, tx, ledger.Posting{Kind: ledger.KindTransfer, From: from, To: to,
				Amount: money.Credits(1), AgentID: from, Time: time.Now()})
			return err
		})
	})
}

// BenchmarkStoreBalanceReads measures balance reads per second (an agent's
// spending and hold accounts in one read snapshot) from 16 concurrent
// readers.
func BenchmarkStoreBalanceReads(b *testing.B) {
	benchStoreOps(b, "reads/s", func(ctx context.Context, st store.Store, ids []string, rng *rand.Rand) error {
		id := ids[rng.IntN(len(ids))]
		return st.Read(ctx, func(tx store.Tx) error {
			bal, err := ledger.AgentBalances(ctx, tx, id)
			if err == nil && bal.Available <= 0 {
				err = fmt.Errorf("%s has %s", id, bal.Available)
			}
			return err
		})
	})
}

// benchStoreOps runs op from 16 goroutines on each backend's funded book and
// reports op's rate as unit (and, on PostgreSQL, the transactions re-run).
func benchStoreOps(b *testing.B, unit string, op func(ctx context.Context, st store.Store, ids []string, rng *rand.Rand) error) {
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			st := bs.open(b)
			ids := fundedBook(b, st)
			ctx := context.Background()
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
				for pb.Next() {
					if err := op(ctx, st, ids, rng); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
			if pg, ok := st.(*postgres.DB); ok && pg.Retries() > 0 {
				b.ReportMetric(float64(pg.Retries())/float64(b.N), "retries/op")
			}
		})
	}
}
