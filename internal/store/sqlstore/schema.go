package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migrations are applied in order, each exactly once, each in its own
// transaction. Never edit a released migration: append a new one.
//
// They are written in SQLite's words; a dialect's Types rewrites the column
// types for its database (see Schema). Keep to SQL both databases accept:
// INTEGER (64-bit), TEXT (compared byte by byte), BLOB, REAL, INTEGER PRIMARY
// KEY AUTOINCREMENT, CHECK, UNIQUE, indexes and ALTER TABLE … ADD COLUMN.
var migrations = []string{
	// 1: the initial schema.
	`
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE accounts (
	id         TEXT PRIMARY KEY,
	kind       TEXT NOT NULL,
	agent_id   TEXT NOT NULL DEFAULT '',
	balance    INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL
);
CREATE TABLE transfers (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	kind         TEXT NOT NULL,
	from_account TEXT NOT NULL REFERENCES accounts(id),
	to_account   TEXT NOT NULL REFERENCES accounts(id),
	amount       INTEGER NOT NULL CHECK (amount > 0),
	ref          TEXT NOT NULL DEFAULT '',
	memo         TEXT NOT NULL DEFAULT '',
	cycle        INTEGER NOT NULL,
	created_at   INTEGER NOT NULL
);
CREATE INDEX transfers_from ON transfers(from_account, id);
CREATE INDEX transfers_to ON transfers(to_account, id);
CREATE TABLE events (
	seq      INTEGER PRIMARY KEY AUTOINCREMENT,
	time     INTEGER NOT NULL,
	cycle    INTEGER NOT NULL,
	type     TEXT NOT NULL,
	agent_id TEXT NOT NULL DEFAULT '',
	ref      TEXT NOT NULL DEFAULT '',
	data     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_agent ON events(agent_id, seq);
CREATE INDEX events_type ON events(type, seq);
CREATE TABLE agents (
	num             INTEGER PRIMARY KEY AUTOINCREMENT,
	id              TEXT NOT NULL UNIQUE,
	status          TEXT NOT NULL,
	parent_id       TEXT NOT NULL DEFAULT '',
	lineage         TEXT NOT NULL DEFAULT '[]',
	workspace       TEXT NOT NULL,
	created_at      INTEGER NOT NULL,
	created_cycle   INTEGER NOT NULL,
	execution_count INTEGER NOT NULL DEFAULT 0,
	died_at         INTEGER NOT NULL DEFAULT 0,
	death_reason    TEXT NOT NULL DEFAULT '',
	death_cycle     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX agents_status ON agents(status);
CREATE TABLE bids (
	seq              INTEGER PRIMARY KEY AUTOINCREMENT,
	id               TEXT NOT NULL UNIQUE,
	agent_id         TEXT NOT NULL,
	payer_id         TEXT NOT NULL,
	amount           INTEGER NOT NULL CHECK (amount > 0),
	cpu_millis       INTEGER NOT NULL,
	memory_mb        INTEGER NOT NULL,
	duration_seconds INTEGER NOT NULL,
	tokens           INTEGER NOT NULL,
	attention        INTEGER NOT NULL,
	status           TEXT NOT NULL,
	created_at       INTEGER NOT NULL,
	created_cycle    INTEGER NOT NULL,
	expires_cycle    INTEGER NOT NULL,
	closed_at        INTEGER NOT NULL DEFAULT 0,
	closed_cycle     INTEGER NOT NULL DEFAULT 0,
	paid             INTEGER NOT NULL DEFAULT 0,
	execution_id     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX bids_pending ON bids(status, seq);
CREATE INDEX bids_payer ON bids(payer_id, seq);
CREATE INDEX bids_agent ON bids(agent_id, seq);
CREATE TABLE executions (
	seq              INTEGER PRIMARY KEY AUTOINCREMENT,
	id               TEXT NOT NULL UNIQUE,
	agent_id         TEXT NOT NULL,
	bid_id           TEXT NOT NULL,
	status           TEXT NOT NULL,
	cycle            INTEGER NOT NULL,
	cpu_millis       INTEGER NOT NULL,
	memory_mb        INTEGER NOT NULL,
	duration_seconds INTEGER NOT NULL,
	tokens           INTEGER NOT NULL,
	attention        INTEGER NOT NULL,
	paid             INTEGER NOT NULL,
	token_hash       TEXT,
	sandbox          TEXT NOT NULL DEFAULT '',
	created_at       INTEGER NOT NULL,
	started_at       INTEGER NOT NULL DEFAULT 0,
	deadline         INTEGER NOT NULL DEFAULT 0,
	ended_at         INTEGER NOT NULL DEFAULT 0,
	exit_code        INTEGER NOT NULL DEFAULT 0,
	reason           TEXT NOT NULL DEFAULT '',
	detail           TEXT NOT NULL DEFAULT '',
	cpu_seconds      REAL NOT NULL DEFAULT 0,
	peak_memory      INTEGER NOT NULL DEFAULT 0,
	output_size      INTEGER NOT NULL DEFAULT 0,
	output_dropped   INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX executions_token ON executions(token_hash);
CREATE INDEX executions_status ON executions(status, seq);
CREATE INDEX executions_agent ON executions(agent_id, seq);
CREATE TABLE execution_output (
	execution_id TEXT PRIMARY KEY,
	output       BLOB NOT NULL
);
CREATE TABLE messages (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	id         TEXT NOT NULL UNIQUE,
	from_id    TEXT NOT NULL,
	to_id      TEXT NOT NULL,
	content    TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	cycle      INTEGER NOT NULL,
	read_at    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_to ON messages(to_id, read_at, seq);
CREATE TABLE resources (
	resource    TEXT PRIMARY KEY,
	price       INTEGER NOT NULL,
	capacity    INTEGER NOT NULL,
	utilization REAL NOT NULL DEFAULT 0
);
CREATE TABLE clearings (
	cycle       INTEGER PRIMARY KEY,
	time        INTEGER NOT NULL,
	mechanism   TEXT NOT NULL,
	pending     INTEGER NOT NULL,
	winners     INTEGER NOT NULL,
	expired     INTEGER NOT NULL,
	revenue     INTEGER NOT NULL,
	allocated   TEXT NOT NULL,
	utilization TEXT NOT NULL,
	prices      TEXT NOT NULL,
	duration_us INTEGER NOT NULL
);
CREATE TABLE idempotency (
	principal    TEXT NOT NULL,
	key          TEXT NOT NULL,
	request_hash TEXT NOT NULL,
	status       INTEGER NOT NULL,
	body         BLOB NOT NULL,
	created_at   INTEGER NOT NULL,
	PRIMARY KEY (principal, key)
);
`,
	// 2: prompts to the operator (human attention).
	`
CREATE TABLE prompts (
	seq            INTEGER PRIMARY KEY AUTOINCREMENT,
	id             TEXT NOT NULL UNIQUE,
	agent_id       TEXT NOT NULL,
	execution_id   TEXT NOT NULL UNIQUE,
	content        TEXT NOT NULL,
	bid_amount     INTEGER NOT NULL DEFAULT 0 CHECK (bid_amount >= 0),
	status         TEXT NOT NULL CHECK (status IN ('pending', 'rated', 'expired')),
	created_at     INTEGER NOT NULL,
	cycle          INTEGER NOT NULL,
	expires_at     INTEGER NOT NULL,
	interesting    INTEGER NOT NULL DEFAULT 0 CHECK (interesting BETWEEN 0 AND 10),
	useful         INTEGER NOT NULL DEFAULT 0 CHECK (useful BETWEEN 0 AND 10),
	understandable INTEGER NOT NULL DEFAULT 0 CHECK (understandable BETWEEN 0 AND 10),
	reason         TEXT NOT NULL DEFAULT '',
	reward         INTEGER NOT NULL DEFAULT 0 CHECK (reward >= 0),
	rated_at       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX prompts_queue ON prompts(status, bid_amount DESC, seq);
CREATE INDEX prompts_due ON prompts(status, expires_at);
CREATE INDEX prompts_agent ON prompts(agent_id, seq);
CREATE INDEX messages_to_seq ON messages(to_id, seq);
`,
	// 3: model tokens each execution consumed through the intelligence proxy.
	`
ALTER TABLE executions ADD COLUMN tokens_used INTEGER NOT NULL DEFAULT 0 CHECK (tokens_used >= 0);
`,
	// 4: runner processes, their claims on executions, operator kill requests.
	`
CREATE TABLE runners (
	id           TEXT PRIMARY KEY,
	host         TEXT NOT NULL,
	pid          INTEGER NOT NULL,
	sandbox      TEXT NOT NULL DEFAULT '',
	slots        INTEGER NOT NULL DEFAULT 0 CHECK (slots >= 0),
	status       TEXT NOT NULL CHECK (status IN ('active', 'stopped', 'lost')),
	started_at   INTEGER NOT NULL,
	heartbeat_at INTEGER NOT NULL,
	ended_at     INTEGER NOT NULL DEFAULT 0
);
ALTER TABLE executions ADD COLUMN runner_id TEXT NOT NULL DEFAULT '';
ALTER TABLE executions ADD COLUMN claimed_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE executions ADD COLUMN kill_requested_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX executions_runner ON executions(runner_id, status);
`,
}

// Schema returns the migrations in d's column types, in order: version n is
// Schema(d)[n-1].
func Schema(d *Dialect) []string {
	out := make([]string, len(migrations))
	for i, m := range migrations {
		out[i] = d.ddl(m)
	}
	return out
}

// SchemaVersion is the version a fully migrated database has.
var SchemaVersion = len(migrations)

func (d *Dialect) ddl(q string) string {
	if d.Types == nil {
		return q
	}
	return d.Types.Replace(q)
}

// Migrate brings db's schema to SchemaVersion, one migration per
// transaction. Several processes may migrate the same database at once: each
// transaction first takes the dialect's MigrationLock (SQLite's writers
// serialise on BEGIN IMMEDIATE instead) and re-reads the version, so every
// migration is applied exactly once. A database from a newer binary is
// refused.
func Migrate(ctx context.Context, db *sql.DB, d *Dialect) error {
	steps := Schema(d)
	for {
		done, err := migrateOnce(ctx, db, d, steps)
		if err != nil || done {
			return err
		}
	}
}

// migrateOnce applies the next pending migration, or reports that none is.
func migrateOnce(ctx context.Context, db *sql.DB, d *Dialect, steps []string) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("%s: migrate: %w", d.Name, err)
	}
	defer func() {
		if err != nil || done {
			_ = tx.Rollback()
		}
	}()
	if d.MigrationLock != "" {
		if _, err := tx.ExecContext(ctx, d.MigrationLock); err != nil {
			return false, fmt.Errorf("%s: migration lock: %w", d.Name, err)
		}
	}
	if _, err := tx.ExecContext(ctx, d.ddl(`CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`)); err != nil {
		return false, fmt.Errorf("%s: migrations table: %w", d.Name, err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return false, fmt.Errorf("%s: read schema version: %w", d.Name, err)
	}
	if current > len(steps) {
		return false, fmt.Errorf("%s: database schema version %d is newer than this binary's %d", d.Name, current, len(steps))
	}
	if current == len(steps) {
		return true, nil
	}
	v := current + 1
	if _, err := tx.ExecContext(ctx, steps[v-1]); err != nil {
		return false, fmt.Errorf("%s: migration %d: %w", d.Name, v, err)
	}
	if _, err := tx.ExecContext(ctx, d.bind(`INSERT INTO schema_migrations(version, applied_at) VALUES (?, ?)`),
		v, time.Now().UnixMicro()); err != nil {
		return false, fmt.Errorf("%s: migration %d: %w", d.Name, v, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("%s: migration %d: %w", d.Name, v, err)
	}
	return false, nil
}
