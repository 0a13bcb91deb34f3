package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/bpagents/bpagents/internal/app"
	"github.com/bpagents/bpagents/internal/config"
)

// loadConfig reads --config, the environment and the flags that were set.
func loadConfig(fs *flag.FlagSet, args []string, extra func(*config.Config)) (config.Config, error) {
	var (
		cfgPath = fs.String("config", "", "YAML configuration file")
		home    = fs.String("home", "", "directory holding data/ and workspaces/ (default: current directory)")
		addr    = fs.String("addr", "", "HTTP listen address (default 127.0.0.1:8000)")
		sandbox = fs.String("sandbox", "", "execution backend: auto, docker or process (default auto: docker when the engine answers and the image exists)")
		cycle   = fs.Duration("cycle", 0, "market clearing period (default 2s)")
		db      = fs.String("database", "", "store: sqlite:<path> or postgres://user[:password]@host:port/db?sslmode=disable (default <home>/data/bpagents.db)")
	)
	if err := fs.Parse(args); err != nil {
		return config.Config{}, err
	}
	cfg, err := config.Load(*cfgPath, os.Environ())
	if err != nil {
		return cfg, err
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "home":
			cfg.Home = *home
		case "addr":
			cfg.Addr = *addr
		case "sandbox":
			cfg.Sandbox = *sandbox
		case "cycle":
			cfg.Cycle = *cycle
		case "database":
			cfg.Database = *db
		}
	})
	if extra != nil {
		extra(&cfg)
	}
	if abs, err := filepath.Abs(cfg.Home); err == nil {
		cfg.Home = abs
	}
	return cfg, nil
}

func cmdUp(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	setUsage(fs, "up")
	cfg, err := loadConfig(fs, args, nil)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, "all")
}

// serve runs role until ctx ends: it opens the system, listens on addr when
// the role serves the API, and serves.
func serve(ctx context.Context, cfg config.Config, role string) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := newLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	a, err := app.Open(ctx, cfg, log, app.Options{Version: version, Role: role})
	if err != nil {
		return err
	}
	var ln net.Listener
	if a.API != nil {
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			a.Close()
			return fmt.Errorf("listen: %w", err)
		}
	}
	start := time.Now()
	err = a.Serve(ctx, ln)
	log.Info("stopped", "role", role, "ran_for", time.Since(start).Round(time.Second).String())
	return err
}

// newLogger builds the process logger: text on a terminal, JSON otherwise.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if info, err := f.Stat(); err == nil && info.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
