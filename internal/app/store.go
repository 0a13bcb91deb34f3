package app

import (
	"context"

	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/postgres"
	"github.com/bpagents/bpagents/internal/store/sqlite"
)

// OpenStore opens the configured database, migrated. It is the one place a
// store backend is chosen: PostgreSQL when database is a postgres:// URL
// (several processes may share it), SQLite otherwise (the embedded default).
func OpenStore(ctx context.Context, cfg config.Config) (store.Store, error) {
	switch {
	case cfg.IsPostgres():
		return postgres.Open(ctx, cfg.Database, postgres.Options{})
	default:
		return sqlite.Open(ctx, cfg.DatabasePath(), sqlite.Options{Synchronous: cfg.SQLiteSync})
	}
}
