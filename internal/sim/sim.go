// Package sim runs an economy for a fixed number of cycles as fast as the
// agents allow — clear, run every winner to completion, audit — and
// summarises what happened: population, money and prices over time. It is
// how researchers (and the tests) check that an economy of genesis and its
// descendants stays sound over many cycles.
//
// It drives the real system (app, economy, runtime, sandbox, API over
// loopback); it never shortcuts the rules, and it stops at the first cycle
// after which the audit fails.
package sim

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bpagents/bpagents/internal/app"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// Sample is the economy's state after one cycle.
type Sample struct {
	Cycle       int64                           `json:"cycle"`
	Alive       int                             `json:"alive"`
	Dead        int                             `json:"dead"`
	Executions  int                             `json:"executions"`
	Money       economy.MoneyTotals             `json:"money"`
	Prices      map[market.Resource]money.Micro `json:"prices"`
	Utilization map[market.Resource]float64     `json:"utilization"`
}

// Result is a whole run.
type Result struct {
	Mechanism string        `json:"mechanism"`
	Cycles    int           `json:"cycles"`
	Took      time.Duration `json:"took_ns"`
	Samples   []Sample      `json:"samples"`
	// Replay is the final check that the event log alone rebuilds every balance.
	Replay ledger.ReplayReport `json:"replay"`
	// Generations is the final population by generation.
	Generations economy.GenerationStats `json:"generations"`
}

// Options tune a run.
type Options struct {
	Cycles int
	// EachCycle, when set, runs after every cycle's executions finished and
	// the audit passed (the CLI uses it to rate prompts like an operator).
	EachCycle func(ctx context.Context, a *app.App, cycle int64) error
	// Progress, when set, receives one line per cycle.
	Progress io.Writer
}

// Run serves a's API on ln (whose address must be the one the app tells
// agents, its Addr) and runs opt.Cycles cycles. After every cycle it runs the
// full audit and stops with an error if any invariant is violated.
func Run(ctx context.Context, a *app.App, ln net.Listener, opt Options) (Result, error) {
	var err error
	srv := &http.Server{Handler: a.API, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	res := Result{Mechanism: a.Cfg.Market.Mechanism, Cycles: opt.Cycles}
	start := time.Now()
	for i := 0; i < opt.Cycles; i++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		a.Runtime.Tick(ctx)
		a.Runtime.Wait()
		rep, err := ledger.Audit(ctx, a.Store)
		if err != nil {
			return res, err
		}
		s, err := sample(ctx, a)
		if err != nil {
			return res, err
		}
		res.Samples = append(res.Samples, s)
		if !rep.OK {
			return res, fmt.Errorf("sim: audit failed after cycle %d: %s", s.Cycle, strings.Join(rep.Violations, "; "))
		}
		if opt.EachCycle != nil {
			if err := opt.EachCycle(ctx, a, s.Cycle); err != nil {
				return res, err
			}
		}
		if opt.Progress != nil {
			fmt.Fprintf(opt.Progress, "cycle %d: %d alive, %s circulating, audit OK\n", s.Cycle, s.Alive, s.Money.Circulating)
		}
	}
	res.Took = time.Since(start)
	if res.Replay, err = ledger.Replay(ctx, a.Store); err != nil {
		return res, err
	}
	if !res.Replay.OK {
		return res, fmt.Errorf("sim: replay failed: %s", strings.Join(res.Replay.Violations, "; "))
	}
	res.Generations, err = a.Economy.Generations(ctx)
	return res, err
}

func sample(ctx context.Context, a *app.App) (Sample, error) {
	t, err := a.Economy.Totals(ctx)
	if err != nil {
		return Sample{}, err
	}
	s := Sample{Alive: t.Alive, Dead: t.Dead, Money: t.Money, Prices: map[market.Resource]money.Micro{},
		Utilization: map[market.Resource]float64{}}
	err = a.Store.Read(ctx, func(tx store.Tx) error {
		cl, err := tx.ListClearings(ctx, 0, 1)
		if err != nil || len(cl) == 0 {
			return err
		}
		s.Cycle, s.Prices, s.Utilization = cl[0].Cycle, cl[0].Prices, cl[0].Utilization
		ex, err := tx.ListExecutions(ctx, store.ExecutionFilter{Statuses: []string{store.ExecFinished}})
		s.Executions = len(ex)
		return err
	})
	return s, err
}

// Summary writes a readable account of the run: a table every `every`
// cycles (and the last), then totals.
func (r Result) Summary(w io.Writer, every int) {
	if every < 1 {
		every = 1
	}
	fmt.Fprintf(w, "%d cycles under %s in %s; audit passed after every cycle\n", r.Cycles, r.Mechanism, r.Took.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "cycle\talive\tdead\texecutions\tcirculating\theld\tminted\tburned\tcpu price\tmemory price\tattention price\tcpu util\t")
	for i, s := range r.Samples {
		if (i+1)%every != 0 && i != len(r.Samples)-1 {
			continue
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f%%\t\n", s.Cycle, s.Alive, s.Dead, s.Executions,
			s.Money.Circulating, s.Money.Held, s.Money.Minted, s.Money.Burned, s.Prices[market.CPU],
			s.Prices[market.Memory], s.Prices[market.Attention], s.Utilization[market.CPU]*100)
	}
	tw.Flush()
	if n := len(r.Samples); n > 0 {
		last := r.Samples[n-1]
		fmt.Fprintf(w, "population: %d alive, %d dead, %d generations (max depth %d, mean depth of the living %.2f)\n",
			last.Alive, last.Dead, len(r.Generations.Generations), r.Generations.MaxDepth, r.Generations.MeanDepth)
		fmt.Fprintf(w, "money: minted %s = circulating %s + held %s + burned %s\n",
			last.Money.Minted, last.Money.Circulating, last.Money.Held, last.Money.Burned)
	}
	fmt.Fprintf(w, "replay: %d ledger events rebuild all %d balances exactly\n", r.Replay.Events, r.Replay.Accounts)
}

// RateAll returns an EachCycle function that stands in for the operator:
// it rates every pending prompt with the same scores, minting rewards.
func RateAll(sc economy.Scores, reason string) func(ctx context.Context, a *app.App, cycle int64) error {
	return func(ctx context.Context, a *app.App, cycle int64) error {
		pending, err := a.Economy.Prompts(ctx, store.PromptPending, "", 100)
		if err != nil {
			return err
		}
		for _, p := range pending {
			i, u, c := sc.Interesting, sc.Useful, sc.Understandable
			_, err := a.Economy.RatePrompt(ctx, economy.RatingRequest{PromptID: p.ID, Interesting: &i, Useful: &u,
				Understandable: &c, Reason: reason}, nil)
			if err != nil {
				return fmt.Errorf("sim: rate %s: %w", p.ID, err)
			}
		}
		return nil
	}
}
