package app

import (
	"strings"
	"testing"

	"github.com/bpagents/bpagents/internal/config"
)

// Roles but all share the economy with other processes: on SQLite they are
// refused before anything is opened, and unknown roles name the known ones.
func TestCheckRole(t *testing.T) {
	t.Parallel()
	sqlite := config.Default()
	pg := config.Default()
	pg.Database = "postgres://u@127.0.0.1:5432/db?sslmode=disable"
	for _, tc := range []struct {
		cfg     config.Config
		role    string
		want    string
		wantErr string
	}{
		{sqlite, "", "all", ""},
		{sqlite, "all", "all", ""},
		{sqlite, "api", "", "needs PostgreSQL"},
		{sqlite, "scheduler", "", "needs PostgreSQL"},
		{sqlite, "runner", "", "--role all"},
		{pg, "runner", "runner", ""},
		{pg, "api", "api", ""},
		{pg, "worker", "", "known: api, scheduler, runner, all"},
	} {
		got, err := checkRole(tc.cfg, tc.role)
		if tc.wantErr == "" && (err != nil || got != tc.want) || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("checkRole(%q, %q) = %q, %v; want %q, error containing %q", tc.cfg.Database, tc.role, got, err, tc.want, tc.wantErr)
		}
	}
}

// A runner id defaults to a valid form of the host name.
func TestRunnerIdentity(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	if id := cfg.RunnerIdentity(); id == "" || len(id) > 27 || strings.ContainsAny(id, " /:") {
		t.Fatalf("default runner id %q", id)
	}
	cfg.Cluster.RunnerID = "runner-7"
	if id := cfg.RunnerIdentity(); id != "runner-7" {
		t.Fatalf("runner id %q, want runner-7", id)
	}
}
