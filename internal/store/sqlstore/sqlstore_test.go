package sqlstore

import (
	"strings"
	"testing"
)

func TestBind(t *testing.T) {
	t.Parallel()
	numbered := &Dialect{Name: "n", Numbered: true}
	plain := &Dialect{Name: "p"}
	tests := []struct{ in, numbered string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT a FROM t WHERE id = ?`, `SELECT a FROM t WHERE id = $1`},
		{`UPDATE t SET a = ?, b = ? WHERE c = ? AND d IN (?, ?) LIMIT ?`,
			`UPDATE t SET a = $1, b = $2 WHERE c = $3 AND d IN ($4, $5) LIMIT $6`},
		{`INSERT INTO t(x) VALUES (?) -- ✓ ü`, `INSERT INTO t(x) VALUES ($1) -- ✓ ü`},
	}
	for _, tc := range tests {
		for range 2 { // the second time from the cache
			if got := numbered.bind(tc.in); got != tc.numbered {
				t.Errorf("bind(%q) = %q, want %q", tc.in, got, tc.numbered)
			}
		}
		if got := plain.bind(tc.in); got != tc.in {
			t.Errorf("? dialect changed %q to %q", tc.in, got)
		}
	}
}

func TestSchemaKeepsSQLiteTextAndTranslatesTypes(t *testing.T) {
	t.Parallel()
	same := Schema(&Dialect{})
	for i, m := range same {
		if m != migrations[i] {
			t.Fatalf("migration %d changed without Types", i+1)
		}
	}
	pg := Schema(&Dialect{Types: strings.NewReplacer("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY",
		"INTEGER", "BIGINT")})
	if len(pg) != SchemaVersion || strings.Contains(pg[0], "INTEGER") || !strings.Contains(pg[0], "BIGSERIAL PRIMARY KEY") {
		t.Fatalf("types not rewritten: %.200s", pg[0])
	}
}
