// Package pgtest gives tests a PostgreSQL store of their own: a fresh schema
// on the server named by BPAGENTS_TEST_POSTGRES (default: the role and
// database .ci/run creates), dropped when the test ends, so that tests and
// runs never see each other's rows.
//
// A test that calls it is skipped, saying why, when no server answers a real
// query, and fails instead when BPAGENTS_TEST_REQUIRE names postgres (or is
// "all"). It is for tests only and never creates or drops anything but the
// schemas it names itself.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"github.com/bpagents/bpagents/internal/store/postgres"
	"github.com/bpagents/bpagents/internal/testutil"
)

// Env names the variable holding the test server's URL.
const Env = "BPAGENTS_TEST_POSTGRES"

// DefaultURL is the server .ci/run starts: role bpagents_test, trusted on
// loopback, owning database bpagents_test.
const DefaultURL = "postgres://bpagents_test@127.0.0.1:5432/bpagents_test?sslmode=disable"

// URL is the test server's URL.
func URL() string {
	if u := os.Getenv(Env); u != "" {
		return u
	}
	return DefaultURL
}

var (
	probeOnce sync.Once
	admin     *sql.DB
	probeErr  error
)

// server returns a shared connection pool to the test server, or why there
// is none. It asks the server a real question, once per test binary.
func server() (*sql.DB, error) {
	probeOnce.Do(func() {
		db, err := sql.Open("pgx", URL())
		if err != nil {
			probeErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var one int
		if err := db.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
			db.Close()
			probeErr = fmt.Errorf("%s does not answer: %w", postgres.Redact(URL()), err)
			return
		}
		db.SetMaxOpenConns(4)
		admin = db
	})
	return admin, probeErr
}

// Schema creates an empty schema on the test server, drops it when t ends,
// and returns a URL whose connections use it.
func Schema(t testing.TB) string {
	t.Helper()
	db, err := server()
	testutil.Need(t, "postgres", err == nil, fmt.Sprint(err))
	var b [8]byte
	_, _ = rand.Read(b[:])
	name := "test_" + hex.EncodeToString(b[:])
	if _, err := db.ExecContext(context.Background(), `CREATE SCHEMA `+name); err != nil {
		t.Fatalf("create schema %s: %v", name, err)
	}
	t.Cleanup(func() {
		if _, err := db.ExecContext(context.Background(), `DROP SCHEMA `+name+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	u, err := url.Parse(URL())
	if err != nil {
		t.Fatal(err)
	}
	if u.RawQuery != "" {
		u.RawQuery += "&"
	}
	u.RawQuery += "search_path=" + name // the rest as written
	return u.String()
}

// Open returns a migrated store in a fresh schema, closed when t ends.
func Open(t testing.TB, opt postgres.Options) *postgres.DB {
	t.Helper()
	return OpenAt(t, Schema(t), opt)
}

// OpenAt opens another store (pool) on the schema of url, closed when t ends:
// several of them act like several processes sharing one database.
func OpenAt(t testing.TB, url string, opt postgres.Options) *postgres.DB {
	t.Helper()
	if opt.MaxConns == 0 {
		opt.MaxConns = 4 // many tests run at once against one server
	}
	db, err := postgres.Open(context.Background(), url, opt)
	if err != nil {
		t.Fatalf("open %s: %v", postgres.Redact(url), err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
