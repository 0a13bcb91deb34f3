package sqlite

import (
	"errors"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/bpagents/bpagents/internal/store/sqlstore"
)

// dialect is SQLite's side of the shared SQL: ? placeholders and the schema
// as written.
var dialect = sqlstore.Dialect{Name: "sqlite", Classify: classify}

// classify recognises unique and primary key violations. SQLite never aborts
// a transaction to keep writers apart: they queue on BEGIN IMMEDIATE.
func classify(err error) sqlstore.Class {
	var e *sqlite.Error
	if errors.As(err, &e) {
		switch e.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return sqlstore.Unique
		}
	}
	return sqlstore.Other
}

// migrations is the schema in SQLite's types, version n at index n-1.
var migrations = sqlstore.Schema(&dialect)

// SchemaVersion is the version a fully migrated database has.
var SchemaVersion = sqlstore.SchemaVersion
