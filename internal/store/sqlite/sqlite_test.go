package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/sqlite"
	"github.com/bpagents/bpagents/internal/store/storetest"
)

func openAt(t *testing.T, path string, opt sqlite.Options) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path, opt)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		// NORMAL keeps commits atomic and durable across a process crash,
		// which is all these tests observe, without an fsync per commit.
		return openAt(t, filepath.Join(t.TempDir(), "bpagents.db"), sqlite.Options{Synchronous: "NORMAL"})
	})
}

// TestConformanceDefaults runs the suite once more with the default options
// (synchronous FULL), the configuration `bpagents up` uses.
func TestConformanceDefaults(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("the NORMAL run covers the same behaviour")
	}
	storetest.Run(t, func(t *testing.T) store.Store {
		return openAt(t, filepath.Join(t.TempDir(), "bpagents.db"), sqlite.Options{})
	})
}

// rawDB opens a second, plain handle on the same file.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

func schemaVersions(t *testing.T, path string) (maxVersion, rows int) {
	t.Helper()
	raw := rawDB(t, path)
	if err := raw.QueryRow(`SELECT COALESCE(MAX(version), 0), COUNT(*) FROM schema_migrations`).Scan(&maxVersion, &rows); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	return maxVersion, rows
}

func TestReopenKeepsDataAndSchemaVersion(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "data", "..", "bpagents.db") // Open resolves the path
	db, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if db.Backend() != "sqlite" || !filepath.IsAbs(db.Path()) || strings.Contains(db.Path(), "..") {
		t.Fatalf("Backend %q Path %q", db.Backend(), db.Path())
	}
	err = db.Write(ctx, func(tx store.Tx) error {
		if err := tx.SetMeta(ctx, "instance_id", "abc123"); err != nil {
			return err
		}
		if err := tx.CreateAccount(ctx, store.Account{ID: "genesis", Kind: store.AccountAgent, AgentID: "genesis",
			Created: storetest.T0}); err != nil {
			return err
		}
		_, err := tx.AddToBalance(ctx, "genesis", 1_000_000_000)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	v, rows := schemaVersions(t, db.Path())
	if v != sqlite.SchemaVersion || rows != sqlite.SchemaVersion {
		t.Fatalf("after first open: version %d in %d rows, want %d", v, rows, sqlite.SchemaVersion)
	}

	for i := range 2 {
		db2 := openAt(t, db.Path(), sqlite.Options{Synchronous: "normal"})
		err = db2.Read(ctx, func(tx store.Tx) error {
			id, err := tx.GetMeta(ctx, "instance_id")
			if err != nil || id != "abc123" {
				return fmt.Errorf("instance_id %q, %w", id, err)
			}
			a, err := tx.GetAccount(ctx, "genesis")
			if err != nil || a.Balance != 1_000_000_000 {
				return fmt.Errorf("genesis balance %s, %w", a.Balance, err)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("reopen %d: %v", i+1, err)
		}
		db2.Close()
		// Reopening applies no migration twice.
		if v, rows := schemaVersions(t, db.Path()); v != sqlite.SchemaVersion || rows != sqlite.SchemaVersion {
			t.Fatalf("reopen %d: version %d in %d rows, want %d", i+1, v, rows, sqlite.SchemaVersion)
		}
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bpagents.db")
	db, err := sqlite.Open(t.Context(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	raw := rawDB(t, path)
	if _, err := raw.Exec(`INSERT INTO schema_migrations(version, applied_at) VALUES (?, 0)`, sqlite.SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	db, err = sqlite.Open(t.Context(), path, sqlite.Options{})
	if err == nil {
		db.Close()
		t.Fatal("Open accepted a database from a newer binary")
	}
	if !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), fmt.Sprint(sqlite.SchemaVersion+1)) {
		t.Fatalf("error %q does not explain the version mismatch", err)
	}
	if v, _ := schemaVersions(t, path); v != sqlite.SchemaVersion+1 {
		t.Fatalf("refused open changed the schema version to %d", v)
	}
}

func TestOpenRefusesBadOptionsAndPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := sqlite.Open(t.Context(), filepath.Join(dir, "a.db"), sqlite.Options{Synchronous: "OFF"}); err == nil ||
		!strings.Contains(err.Error(), "OFF") {
		t.Fatalf("Synchronous OFF: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused open created the file: %v", err)
	}
	if _, err := sqlite.Open(t.Context(), filepath.Join(dir, "missing", "dir", "a.db"), sqlite.Options{}); err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
	notDB := filepath.Join(dir, "text.db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("this is not a database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	if db, err := sqlite.Open(t.Context(), notDB, sqlite.Options{}); err == nil {
		db.Close()
		t.Fatal("Open of a text file succeeded")
	}
}
