package ledger_test

import (
	"strings"
	"testing"

	"github.com/bpagents/bpagents/internal/ledger"
)

func TestReplayRebuildsEveryBalance(t *testing.T) {
	t.Parallel()
	b := cleanEconomy(t)
	r, err := ledger.Replay(t.Context(), b.st)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK || r.Events != 7 || r.Accounts != 6 {
		t.Fatalf("replay of a clean economy: %+v", r)
	}
	// An empty ledger replays to all zeros.
	if r, err := ledger.Replay(t.Context(), newBook(t).st); err != nil || !r.OK || r.Events != 0 {
		t.Fatalf("empty ledger: %+v, %v", r, err)
	}
}

func TestReplayDetects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		corrupt []string
		want    []string
	}{
		{
			name:    "balance changed without an event",
			corrupt: []string{`UPDATE accounts SET balance = balance + 1 WHERE id = 'a'`},
			want:    []string{"account a: balance 620.000001 but the event log rebuilds 620"},
		},
		{
			name:    "event lost",
			corrupt: []string{`DELETE FROM events WHERE seq = (SELECT MAX(seq) FROM events WHERE type = 'ledger.transfer')`},
			want: []string{"the log has 6 ledger.transfer events but the ledger has 7 transfers",
				"account hold:a: balance 50 but the event log rebuilds 70", "account system:burn: balance 30 but the event log rebuilds 10"},
		},
		{
			name: "event edited",
			corrupt: []string{`UPDATE events SET data = json_set(data, '$.to', 'nobody')
				WHERE seq = (SELECT MIN(seq) FROM events WHERE type = 'ledger.transfer')`},
			want: []string{"account a: balance 620 but the event log rebuilds -380",
				"the event log moves money through nobody, which is not an account (1000)"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := cleanEconomy(t)
			execSQL(t, b, tc.corrupt...)
			r, err := ledger.Replay(t.Context(), b.st)
			if err != nil {
				t.Fatal(err)
			}
			if r.OK {
				t.Fatal("replay passed a corrupted log")
			}
			for _, w := range tc.want {
				found := false
				for _, v := range r.Violations {
					found = found || strings.Contains(v, w)
				}
				if !found {
					t.Errorf("no violation says %q; got %q", w, r.Violations)
				}
			}
		})
	}
}
