package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/sandbox/docker"
	"github.com/bpagents/bpagents/internal/testutil"
)

// TestSandboxAutoSaysWhatItChose: auto picks docker when the engine answers
// and holds the image, process otherwise, and logs which and why.
func TestSandboxAutoSaysWhatItChose(t *testing.T) {
	t.Parallel()
	open := func(t *testing.T, image string) (*App, string) {
		t.Helper()
		cfg := config.Default()
		cfg.Home = t.TempDir()
		cfg.Addr = "127.0.0.1:0"
		cfg.Docker.Image = image
		var log testutil.Buffer
		a, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(&log, nil)), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a, log.String()
	}
	t.Run("no such image", func(t *testing.T) {
		t.Parallel()
		a, log := open(t, "bp-agent-runner:absent-"+fmt.Sprint(os.Getpid()))
		if a.Sandbox.Name() != "process" || !strings.Contains(log, "sandbox auto: chose process") {
			t.Errorf("chose %s; log:\n%s", a.Sandbox.Name(), log)
		}
		if a.AgentListener != nil || a.AgentURL != a.Cfg.ServiceURL() {
			t.Errorf("process agents get %s (listener %v)", a.AgentURL, a.AgentListener)
		}
	})
	t.Run("engine and image there", func(t *testing.T) {
		t.Parallel()
		testutil.Need(t, "root", os.Geteuid() == 0, "the docker sandbox's firewall needs root")
		err := docker.Probe(context.Background(), "", docker.DefaultImage)
		testutil.Need(t, "docker", err == nil, fmt.Sprint(err))
		a, log := open(t, docker.DefaultImage)
		if a.Sandbox.Name() != "docker" || !strings.Contains(log, "sandbox auto: chose docker") {
			t.Fatalf("chose %s; log:\n%s", a.Sandbox.Name(), log)
		}
		if a.AgentListener == nil || strings.HasPrefix(a.AgentURL, "http://127.") {
			t.Errorf("docker agents get %s (listener %v)", a.AgentURL, a.AgentListener)
		}
	})
}
