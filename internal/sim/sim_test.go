package sim_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/bpagents/bpagents/internal/app"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/sandbox/process"
	"github.com/bpagents/bpagents/internal/sim"
	"github.com/bpagents/bpagents/internal/testutil"
)

func TestMain(m *testing.M) {
	process.MaybeRunInit() // the process sandbox re-executes this test binary
	os.Exit(m.Run())
}

// TestSimulation runs 200 cycles of genesis and its descendants on the
// process sandbox under each mechanism with fixed parameters. sim.Run fails
// as soon as an audit fails; at the end the event log alone must rebuild
// every balance.
func TestSimulation(t *testing.T) {
	testutil.Need(t, "python3", exec.Command("/usr/bin/python3", "-c", "import json").Run() == nil, "genesis is Python")
	for _, mech := range []string{"first-price", "critical"} {
		t.Run(mech, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			cfg := config.Default()
			cfg.Home = t.TempDir()
			cfg.Addr = ln.Addr().String()
			cfg.Sandbox = "process"
			cfg.Market.Mechanism = mech
			cpu := cfg.Market.Resources["cpu"]
			cpu.Capacity = 2 // fixed, whatever the host has
			cfg.Market.Resources["cpu"] = cpu
			a, err := app.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), app.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			// A stand-in operator rates every prompt 6/5/7, so rewards flow
			// and the population can grow.
			res, err := sim.Run(context.Background(), a, ln, sim.Options{Cycles: 200,
				EachCycle: sim.RateAll(economy.Scores{Interesting: 6, Useful: 5, Understandable: 7}, "test operator")})
			var out strings.Builder
			res.Summary(&out, 25)
			t.Logf("summary:\n%s", out.String())
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Samples) != 200 || !res.Replay.OK {
				t.Fatalf("ran %d cycles, replay %+v", len(res.Samples), res.Replay)
			}
			last := res.Samples[len(res.Samples)-1]
			if last.Money.Minted != last.Money.Circulating+last.Money.Held+last.Money.Burned {
				t.Fatalf("money does not add up: %+v", last.Money)
			}
			if last.Executions < 200 || res.Generations.MaxDepth < 1 {
				t.Fatalf("the economy did not live: %d executions, max depth %d", last.Executions, res.Generations.MaxDepth)
			}
			if last.Money.Minted <= cfg.Economy.GenesisCredits {
				t.Fatalf("no prompt was rewarded: minted %s", last.Money.Minted)
			}
		})
	}
}
