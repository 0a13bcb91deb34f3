package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/bpagents/bpagents/internal/app"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/sim"
)

func cmdSimulate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	cycles := fs.Int("cycles", 200, "how many cycles to run")
	mechanism := fs.String("mechanism", "", "clearing mechanism: first-price or critical (default from the configuration)")
	every := fs.Int("every", 20, "print a summary row every N cycles")
	progress := fs.Bool("progress", false, "print a line after every cycle")
	rate := fs.String("rate", "", "act as the operator: rate every pending prompt with these scores, e.g. 6,5,7 (interesting,useful,understandable)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: bpagents simulate [--cycles 200] [--mechanism first-price|critical] [--home DIR] [--config FILE]")
		fmt.Fprintln(fs.Output(), "\nRuns genesis and its descendants for N cycles as fast as they execute (no waiting between cycles),")
		fmt.Fprintln(fs.Output(), "auditing the ledger after every cycle, then replays the event log and prints a summary:")
		fmt.Fprintln(fs.Output(), "population, credits in circulation, minted, burned, and prices over time.")
		fmt.Fprintln(fs.Output(), "\nExample: bpagents simulate --cycles 200 --mechanism critical --home /tmp/sim1")
		fs.PrintDefaults()
	}
	cfg, err := loadConfig(fs, args, func(c *config.Config) {
		if *mechanism != "" {
			c.Market.Mechanism = *mechanism
		}
	})
	if err != nil {
		return err
	}
	if !flagSet(fs, "home") {
		dir, err := os.MkdirTemp("", "bpagents-sim-")
		if err != nil {
			return err
		}
		cfg.Home = dir
	}
	if !flagSet(fs, "sandbox") && cfg.Sandbox == "auto" {
		cfg.Sandbox = "process"
	}
	if *cycles < 1 {
		return fmt.Errorf("--cycles must be at least 1")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	cfg.Addr = ln.Addr().String()
	cfg.LogLevel = "warn"
	if err := cfg.Validate(); err != nil {
		ln.Close()
		return err
	}
	log := newLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	a, err := app.Open(ctx, cfg, log, app.Options{Version: version})
	if err != nil {
		ln.Close()
		return err
	}
	defer a.Close()
	fmt.Printf("simulating %d cycles under %s in %s\n", *cycles, cfg.Market.Mechanism, cfg.Home)
	opt := sim.Options{Cycles: *cycles}
	if *rate != "" {
		scores, err := parseScores(*rate)
		if err != nil {
			return err
		}
		opt.EachCycle = sim.RateAll(scores, "rated by bpagents simulate --rate "+*rate)
	}
	if *progress {
		opt.Progress = os.Stdout
	}
	res, err := sim.Run(ctx, a, ln, opt)
	res.Summary(os.Stdout, *every)
	return err
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// parseScores reads "i,u,c" into three scores.
func parseScores(s string) (economy.Scores, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return economy.Scores{}, fmt.Errorf("--rate wants three scores, interesting,useful,understandable: got %q", s)
	}
	var v [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 0 || n > 10 {
			return economy.Scores{}, fmt.Errorf("--rate: %q is not a score from 0 to 10", p)
		}
		v[i] = n
	}
	return economy.Scores{Interesting: v[0], Useful: v[1], Understandable: v[2]}, nil
}
