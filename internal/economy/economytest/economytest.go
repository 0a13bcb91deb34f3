// Package economytest builds real economies for other packages' tests: the
// configuration's defaults (adjusted by the test), a fresh SQLite store in a
// temporary home, and genesis bootstrapped. It owns that set-up and nothing
// else; it never fakes the economy or the store, and only tests import it.
package economytest

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/bpagents/bpagents/internal/agents"
	"github.com/bpagents/bpagents/internal/app"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/store/sqlite"
)

// Options shape the economy Open builds; the zero value is the defaults.
type Options struct {
	// Config, when set, adjusts the configuration (config.Default(), with the
	// temporary home and SQLite's synchronous mode NORMAL) before it is
	// validated.
	Config func(*config.Config)
	// Log receives the economy's logs (nil: discarded).
	Log *slog.Logger
	// Economy is passed to economy.New.
	Economy economy.Options
	// Genesis is genesis's main.py (empty: a program printing 1).
	Genesis string
}

// Economy is a bootstrapped economy with its store, home and configuration.
type Economy struct {
	*economy.Economy
	Store  *sqlite.DB
	Home   string
	Config config.Config
}

// Open builds an economy for t; its store is closed when t ends.
func Open(t testing.TB, opt Options) Economy {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Home = dir
	cfg.SQLiteSync = "NORMAL"
	if opt.Config != nil {
		opt.Config(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	set, err := app.Settings(cfg)
	if err != nil {
		t.Fatalf("settings: %v", err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, "bpagents.db"), sqlite.Options{Synchronous: cfg.SQLiteSync})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	genesis := opt.Genesis
	if genesis == "" {
		genesis = "print(1)\n"
	}
	eco := economy.New(st, set, agents.Workspaces{Root: filepath.Join(dir, "workspaces")},
		fstest.MapFS{"main.py": {Data: []byte(genesis), Mode: 0o644}}, log, opt.Economy)
	created, err := eco.Bootstrap(ctx)
	if err != nil || !created {
		t.Fatalf("bootstrap: created=%v err=%v", created, err)
	}
	return Economy{Economy: eco, Store: st, Home: dir, Config: cfg}
}
