package sqlite

import (
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/store"
)

// TestMigrationTwoUpgradesAVersionOneDatabase: a database written by a binary
// that knew only migration 1 opens with its data intact and gains prompts.
func TestMigrationTwoUpgradesAVersionOneDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "v1.db")
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	stmts := []string{
		`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`,
		migrations[0],
		`INSERT INTO schema_migrations(version, applied_at) VALUES (1, 0)`,
		`INSERT INTO messages(id, from_id, to_id, content, created_at, cycle) VALUES ('m1', 'a', 'human', 'hello', 1, 1)`,
	}
	for _, q := range stmts {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatalf("%.40s: %v", q, err)
		}
	}
	raw.Close()

	db, err := Open(ctx, path, Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2026, 11, 25, 19, 0, 0, 0, time.UTC)
	err = db.Write(ctx, func(tx store.Tx) error {
		msgs, err := tx.ListMessages(ctx, store.MessageFilter{To: "human"})
		if err != nil {
			return err
		}
		if len(msgs) != 1 || msgs[0].Content != "hello" {
			t.Fatalf("messages after the upgrade: %+v", msgs)
		}
		return tx.InsertPrompt(ctx, &store.Prompt{ID: "p1", AgentID: "a", ExecutionID: "ex1", Content: "x",
			Status: store.PromptPending, Created: now, ExpiresAt: now.Add(time.Hour)})
	})
	if err != nil {
		t.Fatal(err)
	}
	var version int
	if err := db.writer.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version != len(migrations) || len(migrations) < 2 {
		t.Fatalf("schema version %d after the upgrade, want %d", version, len(migrations))
	}
}
