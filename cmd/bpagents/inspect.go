package main

// Read-only views for the operator: one agent (`agent ID`) and the markets.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/client"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/market"
)

// AgentDetails is what `agent ID --json` prints.
type AgentDetails struct {
	Agent      economy.AgentView    `json:"agent"`
	Children   []economy.AgentView  `json:"children"`
	Generation []economy.Generation `json:"descendants_by_generation"`
	Executions []api.ExecutionView  `json:"executions"`
	Bids       []economy.BidView    `json:"bids"`
	// Note says why executions and bids are missing (no operator token).
	Note string `json:"note,omitempty"`
}

func cmdAgentShow(ctx context.Context, args []string) error {
	return runAgentShow(ctx, args, os.Stdout)
}

func runAgentShow(ctx context.Context, args []string, out io.Writer) error {
	fs, cf := clientCommand("agent")
	limit := fs.Int("limit", 10, "how many recent executions and bids")
	id, err := parseWithArgs(fs, args, 1)
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var d AgentDetails
	if err := c.Get(ctx, "/agents/"+url.PathEscape(id[0]), &d.Agent); err != nil {
		return err
	}
	var lin economy.LineageView
	if err := c.Get(ctx, "/agents/"+url.PathEscape(id[0])+"/descendants", &lin); err != nil {
		return err
	}
	d.Children, d.Generation = []economy.AgentView{}, lin.Generations
	for _, x := range lin.Descendants {
		if x.Depth == 1 {
			d.Children = append(d.Children, x.AgentView)
		}
	}
	q := url.Values{"agent": {d.Agent.ID}, "limit": {fmt.Sprint(*limit)}}
	var ex api.ExecutionList
	var bids api.BidList
	err = c.Get(ctx, "/executions?"+q.Encode(), &ex)
	if err == nil {
		err = c.Get(ctx, "/agents/"+url.PathEscape(d.Agent.ID)+"/bids?limit="+fmt.Sprint(*limit), &bids)
	}
	var pe *client.ProblemError
	if errors.As(err, &pe) && (pe.Status == 401 || pe.Status == 403) {
		d.Note = "executions and bids need the operator token (--home or BPAGENTS_TOKEN)"
	} else if err != nil {
		return err
	}
	d.Executions, d.Bids = ex.Executions, bids.Bids
	if d.Executions == nil {
		d.Executions = []api.ExecutionView{}
	}
	if d.Bids == nil {
		d.Bids = []economy.BidView{}
	}
	if *cf.json {
		return writeJSON(out, d)
	}
	printAgent(out, d)
	return nil
}

func printAgent(out io.Writer, d AgentDetails) {
	a := d.Agent
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "agent\t%s (%s)\n", a.ID, a.Status)
	fmt.Fprintf(w, "balance\t%s available, %s held\n", a.Balance, a.Held)
	fmt.Fprintf(w, "executions\t%d\n", a.ExecutionCount)
	fmt.Fprintf(w, "created\t%s (cycle %d)\n", a.Created, a.CreatedCycle)
	lineage := "(a root agent)"
	if len(a.Lineage) > 0 {
		lineage = strings.Join(a.Lineage, " ← ")
	}
	fmt.Fprintf(w, "lineage\t%s\n", lineage)
	if a.DiedAt != "" {
		fmt.Fprintf(w, "died\t%s: %s\n", a.DiedAt, a.DeathReason)
	}
	kids := make([]string, 0, len(d.Children))
	for _, c := range d.Children {
		kids = append(kids, c.ID)
	}
	fmt.Fprintf(w, "children\t%d %s\n", len(kids), strings.Join(kids, ", "))
	w.Flush()
	if d.Note != "" {
		fmt.Fprintf(out, "\n(%s)\n", d.Note)
		return
	}
	fmt.Fprintf(out, "\nRecent executions (%d):\n", len(d.Executions))
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tCYCLE\tSTATUS\tREASON\tEXIT\tWALL\tCPU-S\tPEAK MB\tPAID")
	for _, e := range d.Executions {
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%d\t%.2fs\t%.2f\t%.1f\t%s\n", e.ID, e.Cycle, e.Status, e.Reason, e.ExitCode,
			e.WallSeconds, e.CPUSeconds, float64(e.PeakMemory)/(1<<20), e.Paid)
	}
	w.Flush()
	fmt.Fprintf(out, "\nBids (%d):\n", len(d.Bids))
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tAMOUNT\tSTATUS\tBUNDLE\tPAYER\tCYCLE\tEXPIRES\tPAID")
	for _, b := range d.Bids {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", b.ID, b.Amount, b.Status, bundleText(b.Bundle), b.PayerID,
			b.CreatedCycle, b.ExpiresCycle, b.Paid)
	}
	w.Flush()
}

func bundleText(b market.Bundle) string {
	s := fmt.Sprintf("%s cpu, %d MB, %d s", market.CPU.Format(b.CPUMillis), b.MemoryMB, b.DurationSeconds)
	if b.Tokens > 0 {
		s += fmt.Sprintf(", %d tokens", b.Tokens)
	}
	if b.Attention > 0 {
		s += ", attention"
	}
	return s
}

// MarketsView is what `markets --json` prints.
type MarketsView struct {
	State   economy.MarketState `json:"state"`
	History []api.ClearingView  `json:"history"`
}

func cmdMarkets(ctx context.Context, args []string) error {
	return runMarkets(ctx, args, os.Stdout)
}

func runMarkets(ctx context.Context, args []string, out io.Writer) error {
	fs, cf := clientCommand("markets")
	history := fs.Int("history", 10, "how many recent clearings to show (0: none)")
	if _, err := parseWithArgs(fs, args, 0); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var v MarketsView
	if err := c.Get(ctx, "/market/state", &v.State); err != nil {
		return err
	}
	v.History = []api.ClearingView{}
	if *history > 0 {
		var h api.MarketHistory
		if err := c.Get(ctx, fmt.Sprintf("/market/history?limit=%d", *history), &h); err != nil {
			return err
		}
		v.History = h.Clearings
	}
	if *cf.json {
		return writeJSON(out, v)
	}
	fmt.Fprintf(out, "cycle %d, mechanism %s, %d pending bids\n\n", v.State.Cycle, v.State.Mechanism, v.State.PendingBids)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "RESOURCE\tPRICE\tUNIT\tCAPACITY\tUTILIZATION")
	for _, r := range market.Resources {
		m, ok := v.State.Resources[string(r)]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%g\t%s %3.0f%%\n", r, m.Price, m.Unit, m.Capacity, meter(m.Utilization, 20), m.Utilization*100)
	}
	w.Flush()
	if len(v.History) == 0 {
		return nil
	}
	fmt.Fprintf(out, "\nLast %d clearings (prices per unit):\n", len(v.History))
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprint(w, "CYCLE\tTIME\tPENDING\tWINNERS\tREVENUE")
	for _, r := range market.Resources {
		fmt.Fprintf(w, "\t%s", strings.ToUpper(string(r)))
	}
	fmt.Fprintln(w)
	for _, cl := range v.History {
		t, _ := time.Parse(time.RFC3339Nano, cl.Time)
		fmt.Fprintf(w, "%d\t%s\t%d\t%d\t%s", cl.Cycle, t.UTC().Format("15:04:05"), cl.Pending, cl.Winners, cl.Revenue)
		for _, r := range market.Resources {
			fmt.Fprintf(w, "\t%s", cl.Prices[string(r)])
		}
		fmt.Fprintln(w)
	}
	return w.Flush()
}

// meter draws a utilization bar of width cells.
func meter(f float64, width int) string {
	n := int(f*float64(width) + 0.5)
	n = max(0, min(width, n))
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

// parseWithArgs parses flags that may come before or after exactly n
// positional arguments, and returns the arguments.
func parseWithArgs(fs *flag.FlagSet, args []string, n int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != n {
		c, _ := findCommand(fs.Name())
		return nil, fmt.Errorf("%s takes %d argument(s), got %d: usage: bpagents %s", fs.Name(), n, len(pos), c.Synopsis)
	}
	return pos, nil
}
