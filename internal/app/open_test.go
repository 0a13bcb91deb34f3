package app

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpagents/bpagents/internal/config"
)

// TestOpenFailureReturnsTheError: when a step of Open fails after it began
// opening things, Open closes what it opened and returns the error (it once
// panicked instead, closing through the nil App it was about to return).
func TestOpenFailureReturnsTheError(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	notDir := filepath.Join(home, "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Home = home
	cfg.Addr = "127.0.0.1:0"
	cfg.Database = "sqlite:" + filepath.Join(notDir, "bpagents.db") // its directory is a file
	a, err := Open(context.Background(), cfg, slog.New(slog.DiscardHandler), Options{})
	if err == nil {
		a.Close()
		t.Fatal("Open succeeded on a database path under a regular file")
	}
	if a != nil {
		t.Errorf("Open returned an App with its error %v", err)
	}
	if !strings.Contains(err.Error(), "file") {
		t.Errorf("error %q does not say what failed", err)
	}
}
