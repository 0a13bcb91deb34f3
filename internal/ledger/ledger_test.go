package ledger_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/sqlite"
)

var t0 = time.Date(2026, 11, 25, 19, 0, 0, 0, time.UTC)

// book is a ledger on a real SQLite file with agents a and b.
type book struct {
	st   *sqlite.DB
	path string
}

func newBook(t *testing.T, agents ...string) book {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	st, err := sqlite.Open(context.Background(), path, sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b := book{st: st, path: path}
	b.write(t, func(ctx context.Context, tx store.Tx) error {
		if err := ledger.EnsureSystemAccounts(ctx, tx, t0); err != nil {
			return err
		}
		for _, id := range agents {
			if err := ledger.OpenAgentAccounts(ctx, tx, id, t0); err != nil {
				return err
			}
		}
		return nil
	})
	return b
}

func (b book) write(t *testing.T, fn func(ctx context.Context, tx store.Tx) error) {
	t.Helper()
	ctx := t.Context()
	if err := b.st.Write(ctx, func(tx store.Tx) error { return fn(ctx, tx) }); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// post applies one posting in its own transaction.
func (b book) post(t *testing.T, p ledger.Posting) (store.Transfer, error) {
	t.Helper()
	var tr store.Transfer
	ctx := t.Context()
	if p.Time.IsZero() {
		p.Time = t0
	}
	err := b.st.Write(ctx, func(tx store.Tx) error {
		var err error
		tr, err = ledger.Post(ctx, tx, p)
		return err
	})
	return tr, err
}

func (b book) mustPost(t *testing.T, kind ledger.Kind, from, to string, amount money.Micro) store.Transfer {
	t.Helper()
	tr, err := b.post(t, ledger.Posting{Kind: kind, From: from, To: to, Amount: amount, AgentID: to})
	if err != nil {
		t.Fatalf("Post %s %s→%s %s: %v", kind, from, to, amount, err)
	}
	return tr
}

// balances reads every account's balance.
func (b book) balances(t *testing.T) map[string]money.Micro {
	t.Helper()
	out := map[string]money.Micro{}
	ctx := t.Context()
	err := b.st.Read(ctx, func(tx store.Tx) error {
		list, err := tx.ListAccounts(ctx)
		for _, a := range list {
			out[a.ID] = a.Balance
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// counts returns the number of transfers and of ledger.transfer events.
func (b book) counts(t *testing.T) (transfers, events int) {
	t.Helper()
	ctx := t.Context()
	err := b.st.Read(ctx, func(tx store.Tx) error {
		trs, err := tx.ListTransfers(ctx, store.TransferFilter{})
		if err != nil {
			return err
		}
		evs, err := tx.ListEvents(ctx, store.EventFilter{Type: ledger.EventTransfer})
		transfers, events = len(trs), len(evs)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return transfers, events
}

func (b book) audit(t *testing.T) ledger.Report {
	t.Helper()
	r, err := ledger.Audit(t.Context(), b.st)
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	return r
}

// raw opens a second, plain handle on the same database file, for
// corrupting rows behind the ledger's back.
func (b book) raw(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+b.path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestPostRefuses(t *testing.T) {
	t.Parallel()
	var ife *ledger.InsufficientFundsError
	tests := []struct {
		name      string
		p         ledger.Posting
		is        error // errors.Is target, when there is one
		need      money.Micro
		have      money.Micro
		insuffAcc string
	}{
		{name: "zero", p: ledger.Posting{From: "a", To: "b", Amount: 0}, is: ledger.ErrInvalidAmount},
		{name: "negative", p: ledger.Posting{From: "a", To: "b", Amount: -1}, is: ledger.ErrInvalidAmount},
		{name: "negative from mint", p: ledger.Posting{From: ledger.MintAccount, To: "b", Amount: -money.Credits(5)}, is: ledger.ErrInvalidAmount},
		{name: "over max", p: ledger.Posting{From: ledger.MintAccount, To: "a", Amount: money.Max + 1}, is: ledger.ErrInvalidAmount},
		{name: "self transfer", p: ledger.Posting{From: "a", To: "a", Amount: 1}},
		{name: "mint to itself", p: ledger.Posting{From: ledger.MintAccount, To: ledger.MintAccount, Amount: 1}},
		{name: "unknown payer", p: ledger.Posting{From: "ghost", To: "a", Amount: 1}, is: store.ErrNotFound},
		{name: "unknown payee", p: ledger.Posting{From: "a", To: "ghost", Amount: 1}, is: store.ErrNotFound},
		{name: "unknown payee from mint", p: ledger.Posting{From: ledger.MintAccount, To: "hold:ghost", Amount: 1}, is: store.ErrNotFound},
		{name: "agent overdraft", p: ledger.Posting{From: "a", To: "b", Amount: money.Credits(10) + 1},
			need: money.Credits(10) + 1, have: money.Credits(10), insuffAcc: "a"},
		{name: "agent overdraft into hold", p: ledger.Posting{From: "b", To: "hold:b", Amount: 1},
			need: 1, have: 0, insuffAcc: "b"},
		{name: "hold overdraft", p: ledger.Posting{From: "hold:a", To: "a", Amount: money.Credits(3) + 1},
			need: money.Credits(3) + 1, have: money.Credits(3), insuffAcc: "hold:a"},
		{name: "burn overdraft", p: ledger.Posting{From: ledger.BurnAccount, To: "a", Amount: money.Credits(2) + 1},
			need: money.Credits(2) + 1, have: money.Credits(2), insuffAcc: ledger.BurnAccount},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBook(t, "a", "b")
			b.mustPost(t, ledger.KindMint, ledger.MintAccount, "a", money.Credits(15))
			b.write(t, func(ctx context.Context, tx store.Tx) error { return placeBid(ctx, tx, "bid1", "a", money.Credits(3)) })
			b.mustPost(t, ledger.KindSettle, "a", ledger.BurnAccount, money.Credits(2))
			before := b.balances(t)
			trBefore, evBefore := b.counts(t)

			tc.p.Kind = ledger.KindTransfer
			_, err := b.post(t, tc.p)
			if err == nil {
				t.Fatal("Post accepted the posting")
			}
			switch {
			case tc.is != nil:
				if !errors.Is(err, tc.is) {
					t.Fatalf("err = %v, want %v", err, tc.is)
				}
			case tc.insuffAcc != "":
				if !errors.As(err, &ife) {
					t.Fatalf("err = %v (%T), want *InsufficientFundsError", err, err)
				}
				if ife.Account != tc.insuffAcc || ife.Need != tc.need || ife.Have != tc.have {
					t.Fatalf("InsufficientFundsError = %+v, want account %s need %s have %s", ife, tc.insuffAcc, tc.need, tc.have)
				}
				if msg := ife.Error(); !strings.Contains(msg, tc.need.String()) || !strings.Contains(msg, tc.have.String()) {
					t.Fatalf("message %q lacks the figures", msg)
				}
			}
			after := b.balances(t)
			for id, v := range before {
				if after[id] != v {
					t.Fatalf("balance of %s moved from %s to %s", id, v, after[id])
				}
			}
			if tr, ev := b.counts(t); tr != trBefore || ev != evBefore {
				t.Fatalf("transfers %d→%d, events %d→%d", trBefore, tr, evBefore, ev)
			}
			if r := b.audit(t); !r.OK {
				t.Fatalf("audit after a refusal: %v", r.Violations)
			}
		})
	}
}

func TestMintMayGoNegative(t *testing.T) {
	t.Parallel()
	b := newBook(t, "a")
	b.mustPost(t, ledger.KindMint, ledger.MintAccount, "a", money.Max)
	b.mustPost(t, ledger.KindMint, ledger.MintAccount, "a", money.Credits(1))
	bal := b.balances(t)
	if bal[ledger.MintAccount] != -money.Max-money.Credits(1) || bal["a"] != money.Max+money.Credits(1) {
		t.Fatalf("mint %s, a %s", bal[ledger.MintAccount], bal["a"])
	}
	r := b.audit(t)
	if !r.OK || r.Minted != money.Max+money.Credits(1) || r.Circulating != r.Minted {
		t.Fatalf("audit %+v", r)
	}
}

func TestPostWritesOneTransferAndOneEvent(t *testing.T) {
	t.Parallel()
	b := newBook(t, "a", "b")
	b.mustPost(t, ledger.KindMint, ledger.MintAccount, "a", money.Credits(100))
	p := ledger.Posting{Kind: ledger.KindTransfer, From: "a", To: "b", Amount: money.MustParse("12.345678"),
		Ref: "b", Memo: "for the code review", AgentID: "a", Time: t0.Add(time.Minute), Cycle: 42}
	tr, err := b.post(t, p)
	if err != nil {
		t.Fatal(err)
	}
	if tr.ID == 0 || tr.Kind != "transfer" || tr.From != "a" || tr.To != "b" || tr.Amount != p.Amount ||
		tr.Ref != "b" || tr.Memo != p.Memo || tr.Cycle != 42 || !tr.Created.Equal(p.Time) {
		t.Fatalf("returned transfer %+v", tr)
	}
	ctx := t.Context()
	err = b.st.Read(ctx, func(tx store.Tx) error {
		trs, err := tx.ListTransfers(ctx, store.TransferFilter{Account: "b"})
		if err != nil {
			return err
		}
		if len(trs) != 1 || trs[0].ID != tr.ID || trs[0].Amount != p.Amount || trs[0].Memo != p.Memo {
			t.Fatalf("stored transfers touching b: %+v", trs)
		}
		evs, err := tx.ListEvents(ctx, store.EventFilter{Type: ledger.EventTransfer, AgentID: "a"})
		if err != nil {
			return err
		}
		var found []store.Event
		for _, e := range evs {
			if e.Ref == "b" {
				found = append(found, e)
			}
		}
		if len(found) != 1 {
			t.Fatalf("%d ledger.transfer events for the posting, want 1", len(found))
		}
		e := found[0]
		if e.Cycle != 42 || !e.Time.Equal(p.Time) {
			t.Fatalf("event %+v", e)
		}
		var data ledger.TransferEvent
		if err := json.Unmarshal(e.Data, &data); err != nil {
			return err
		}
		want := ledger.TransferEvent{ID: tr.ID, Kind: ledger.KindTransfer, From: "a", To: "b", Amount: p.Amount,
			Ref: "b", Memo: p.Memo}
		if data != want {
			t.Fatalf("event data %+v, want %+v", data, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if tr, ev := b.counts(t); tr != 2 || ev != 2 {
		t.Fatalf("%d transfers and %d events after two postings", tr, ev)
	}

	// A posting whose transaction is rolled back leaves neither.
	errLater := errors.New("something later in the transaction failed")
	err = b.st.Write(ctx, func(tx store.Tx) error {
		if _, err := ledger.Post(ctx, tx, ledger.Posting{Kind: ledger.KindTransfer, From: "b", To: "a",
			Amount: money.Credits(1), AgentID: "b", Time: t0}); err != nil {
			return err
		}
		return errLater
	})
	if !errors.Is(err, errLater) {
		t.Fatalf("err = %v", err)
	}
	if tr, ev := b.counts(t); tr != 2 || ev != 2 {
		t.Fatalf("rolled back posting kept: %d transfers, %d events", tr, ev)
	}
	if bal := b.balances(t); bal["b"] != p.Amount || bal["a"] != money.Credits(100)-p.Amount {
		t.Fatalf("rolled back posting moved money: %v", bal)
	}
}

func TestAccounts(t *testing.T) {
	t.Parallel()
	b := newBook(t, "a")
	// Idempotent for system accounts; agent accounts are opened once.
	b.write(t, func(ctx context.Context, tx store.Tx) error { return ledger.EnsureSystemAccounts(ctx, tx, t0) })
	ctx := t.Context()
	err := b.st.Write(ctx, func(tx store.Tx) error { return ledger.OpenAgentAccounts(ctx, tx, "a", t0) })
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("reopening accounts: err = %v, want ErrConflict", err)
	}
	b.mustPost(t, ledger.KindMint, ledger.MintAccount, "a", money.Credits(10))
	b.mustPost(t, ledger.KindHold, "a", "hold:a", money.Credits(4))
	err = b.st.Read(ctx, func(tx store.Tx) error {
		bal, err := ledger.AgentBalances(ctx, tx, "a")
		if err != nil {
			return err
		}
		if bal.Available != money.Credits(6) || bal.Held != money.Credits(4) {
			t.Fatalf("AgentBalances = %+v", bal)
		}
		if _, err := ledger.AgentBalances(ctx, tx, "ghost"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("AgentBalances(ghost): %v", err)
		}
		accts, err := tx.ListAccounts(ctx)
		if err != nil {
			return err
		}
		kinds := map[string]string{}
		for _, a := range accts {
			kinds[a.ID] = a.Kind + "/" + a.AgentID
		}
		want := map[string]string{"a": "agent/a", "hold:a": "hold/a", ledger.MintAccount: "system/", ledger.BurnAccount: "system/"}
		if len(kinds) != len(want) {
			t.Fatalf("accounts %v", kinds)
		}
		for id, k := range want {
			if kinds[id] != k {
				t.Fatalf("account %s is %q, want %q", id, kinds[id], k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ledger.HoldAccount("x") != "hold:x" || !ledger.IsSystem(ledger.BurnAccount) || ledger.IsSystem("hold:x") || ledger.IsSystem("a") {
		t.Fatal("account naming helpers wrong")
	}
}

// bundle is any valid bundle; the ledger does not look inside it.
var bundle = market.Bundle{CPUMillis: 500, MemoryMB: 128, DurationSeconds: 10}

// placeBid holds amount from payer and records a pending bid, as the economy does.
func placeBid(ctx context.Context, tx store.Tx, id, payer string, amount money.Micro) error {
	if _, err := ledger.Post(ctx, tx, ledger.Posting{Kind: ledger.KindHold, From: payer, To: ledger.HoldAccount(payer),
		Amount: amount, Ref: id, AgentID: payer, Time: t0}); err != nil {
		return err
	}
	b := store.Bid{ID: id, AgentID: payer, PayerID: payer, Amount: amount, Bundle: bundle, Status: store.BidPending,
		Created: t0, ExpiresCycle: 30}
	return tx.InsertBid(ctx, &b)
}

// cleanEconomy builds a small consistent economy: minted 1000, burned 30,
// a has 620 available and 50 held in two bids, b has 300.
func cleanEconomy(t *testing.T) book {
	t.Helper()
	b := newBook(t, "a", "b")
	b.mustPost(t, ledger.KindMint, ledger.MintAccount, "a", money.Credits(1000))
	b.mustPost(t, ledger.KindTransfer, "a", "b", money.Credits(310))
	b.mustPost(t, ledger.KindMessageFee, "b", ledger.BurnAccount, money.Credits(10))
	b.write(t, func(ctx context.Context, tx store.Tx) error {
		for _, bid := range []struct {
			id     string
			amount money.Micro
		}{{"bid1", money.Credits(20)}, {"bid2", money.Credits(30)}, {"bid3", money.Credits(20)}} {
			if err := placeBid(ctx, tx, bid.id, "a", bid.amount); err != nil {
				return err
			}
		}
		return nil
	})
	// bid3 wins and settles: its hold is burned.
	b.write(t, func(ctx context.Context, tx store.Tx) error {
		bid, err := tx.GetBid(ctx, "bid3")
		if err != nil {
			return err
		}
		bid.Status, bid.Closed, bid.Paid = store.BidWon, t0, bid.Amount
		if err := tx.CloseBid(ctx, bid); err != nil {
			return err
		}
		_, err = ledger.Post(ctx, tx, ledger.Posting{Kind: ledger.KindSettle, From: "hold:a", To: ledger.BurnAccount,
			Amount: bid.Amount, Ref: "bid3", AgentID: "a", Time: t0})
		return err
	})
	return b
}

func TestAuditClean(t *testing.T) {
	t.Parallel()
	b := cleanEconomy(t)
	r := b.audit(t)
	if !r.OK || len(r.Violations) != 0 {
		t.Fatalf("clean economy failed the audit: %v", r.Violations)
	}
	want := ledger.Report{OK: true, Accounts: 6, Transfers: 7, Sum: 0, Minted: money.Credits(1000),
		Burned: money.Credits(30), Circulating: money.Credits(920), Held: money.Credits(50), PendingBids: 2}
	r.Violations = nil
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("report %+v\nwant   %+v", r, want)
	}
	if r.Minted != r.Circulating+r.Held+r.Burned {
		t.Fatal("minted != circulating + held + burned")
	}
	// An empty ledger passes too.
	if r := newBook(t).audit(t); !r.OK || r.Accounts != 2 || r.Transfers != 0 {
		t.Fatalf("empty ledger: %+v", r)
	}
}

func TestAuditDetects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		corrupt func(t *testing.T, b book)
		// want are substrings, each of which must appear in its own violation;
		// the report must hold exactly len(want) violations.
		want []string
		sum  money.Micro
	}{
		{
			name: "balances disagree with entries, sum still zero",
			corrupt: func(t *testing.T, b book) {
				execSQL(t, b, `UPDATE accounts SET balance = balance - 5000000 WHERE id = 'a'`,
					`UPDATE accounts SET balance = balance + 5000000 WHERE id = 'b'`)
			},
			want: []string{"account a: balance 615 but its entries sum to 620", "account b: balance 305 but its entries sum to 300"},
		},
		{
			name: "nonzero sum",
			corrupt: func(t *testing.T, b book) {
				execSQL(t, b, `UPDATE accounts SET balance = balance + 7000000 WHERE id = 'b'`)
			},
			want: []string{"account b: balance 307 but its entries sum to 300", "balances sum to 7, not 0"},
			sum:  money.Credits(7),
		},
		{
			name: "transfer row deleted",
			corrupt: func(t *testing.T, b book) {
				execSQL(t, b, `DELETE FROM transfers WHERE kind = 'message_fee'`)
			},
			want: []string{"account b: balance 300 but its entries sum to 310", "account system:burn: balance 30 but its entries sum to 20"},
		},
		{
			name: "negative agent balance with consistent entries",
			corrupt: func(t *testing.T, b book) {
				execSQL(t, b,
					`INSERT INTO transfers(kind, from_account, to_account, amount, cycle, created_at) VALUES ('transfer', 'b', 'a', 305000000, 0, 0)`,
					`UPDATE accounts SET balance = balance - 305000000 WHERE id = 'b'`,
					`UPDATE accounts SET balance = balance + 305000000 WHERE id = 'a'`)
			},
			want: []string{"agent account b is negative: -5"},
		},
		{
			name: "negative hold and mint positive",
			corrupt: func(t *testing.T, b book) {
				execSQL(t, b,
					`INSERT INTO transfers(kind, from_account, to_account, amount, cycle, created_at) VALUES ('mint', 'hold:b', 'system:mint', 2000000000, 0, 0)`,
					`UPDATE accounts SET balance = balance - 2000000000 WHERE id = 'hold:b'`,
					`UPDATE accounts SET balance = balance + 2000000000 WHERE id = 'system:mint'`)
			},
			want: []string{"hold account hold:b is negative: -2000", "hold account hold:b holds -2000 but its pending bids total 0",
				"system:mint is positive: 1000"},
		},
		{
			name: "pending bid without a hold (store bypassing the ledger)",
			corrupt: func(t *testing.T, b book) {
				b.write(t, func(ctx context.Context, tx store.Tx) error {
					bid := store.Bid{ID: "sneaky", AgentID: "b", PayerID: "b", Amount: money.Credits(3), Bundle: bundle,
						Status: store.BidPending, Created: t0, ExpiresCycle: 30}
					return tx.InsertBid(ctx, &bid)
				})
			},
			want: []string{"hold account hold:b holds 0 but its pending bids total 3"},
		},
		{
			name: "bid closed without releasing its hold",
			corrupt: func(t *testing.T, b book) {
				b.write(t, func(ctx context.Context, tx store.Tx) error {
					bid, err := tx.GetBid(ctx, "bid2")
					if err != nil {
						return err
					}
					bid.Status, bid.Closed = store.BidCancelled, t0
					return tx.CloseBid(ctx, bid)
				})
			},
			want: []string{"hold account hold:a holds 50 but its pending bids total 20"},
		},
		{
			name: "bid amount changed behind the ledger",
			corrupt: func(t *testing.T, b book) {
				execSQL(t, b, `UPDATE bids SET amount = amount + 1 WHERE id = 'bid1'`)
			},
			want: []string{"hold account hold:a holds 50 but its pending bids total 50.000001"},
		},
		{
			name: "pending bid paid by a missing account",
			corrupt: func(t *testing.T, b book) {
				execSQL(t, b, `UPDATE bids SET payer_id = 'ghost' WHERE id = 'bid1'`)
			},
			want: []string{"hold account hold:a holds 50 but its pending bids total 30",
				"pending bids are held by hold:ghost, which does not exist (20)"},
		},
		{
			name: "entries name a deleted account",
			corrupt: func(t *testing.T, b book) {
				execSQL(t, b, `UPDATE accounts SET balance = 0 WHERE id = 'b'`, `DELETE FROM accounts WHERE id = 'b'`)
			},
			want: []string{"balances sum to -300, not 0", "entries name account b, which does not exist (sum 300)"},
			sum:  -money.Credits(300),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := cleanEconomy(t)
			if r := b.audit(t); !r.OK {
				t.Fatalf("audit before corruption: %v", r.Violations)
			}
			tc.corrupt(t, b)
			r := b.audit(t)
			if r.OK {
				t.Fatal("audit passed a corrupted ledger")
			}
			if r.Sum != tc.sum {
				t.Errorf("Sum = %s, want %s", r.Sum, tc.sum)
			}
			if len(r.Violations) != len(tc.want) {
				t.Fatalf("violations %q, want %d: %q", r.Violations, len(tc.want), tc.want)
			}
			for _, w := range tc.want {
				found := false
				for _, v := range r.Violations {
					found = found || strings.Contains(v, w)
				}
				if !found {
					t.Errorf("no violation mentions %q; got %q", w, r.Violations)
				}
			}
		})
	}
}

func execSQL(t *testing.T, b book, stmts ...string) {
	t.Helper()
	db := b.raw(t)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		if _, err := tx.Exec(s); err != nil {
			tx.Rollback()
			t.Fatalf("%s: %v", s, err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}
