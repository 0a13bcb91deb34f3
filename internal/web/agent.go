package web

// One agent's page: its directory entry and children (public); for the
// operator also its balance over time, executions with their logs, bids,
// messages, prompts, and a form to mint credits to it.

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// executionRow is an execution with its wall time.
type executionRow struct {
	store.Execution
	Wall time.Duration
}

type agentData struct {
	Agent       economy.AgentView
	Children    []economy.AgentView
	Descendants int
	// Operator only.
	Series     string // the balance plot's data, JSON
	History    []economy.HistoryEntry
	Executions []executionRow
	Bids       []economy.BidView
	Messages   []store.Message
	Prompts    []economy.PromptView
	MintKey    string
}

// historyDepth is how many ledger entries the balance plot covers.
const historyDepth = 500

func (d *Dashboard) agent(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	id := r.PathValue("id")
	var v agentData
	var err error
	if v.Agent, err = d.eco.Agent(ctx, id); err != nil {
		d.failErr(w, r, err)
		return
	}
	lin, err := d.eco.Descendants(ctx, id)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	v.Descendants = len(lin.Descendants)
	for _, c := range lin.Descendants {
		if c.Depth == 1 {
			v.Children = append(v.Children, c.AgentView)
		}
	}
	if d.sessions.get(r) != nil {
		if err := d.operatorAgentData(ctx, &v); err != nil {
			d.failErr(w, r, err)
			return
		}
	}
	d.render(w, r, "agent", "Agent "+id, v)
}

func (d *Dashboard) operatorAgentData(ctx context.Context, v *agentData) error {
	id := v.Agent.ID
	hist, err := d.eco.History(ctx, id, 0, historyDepth)
	if err != nil {
		return err
	}
	if v.Series, err = toJSON(balanceSeries(v.Agent, hist, time.Now())); err != nil {
		return err
	}
	v.History = hist[:min(len(hist), 25)]
	if v.Bids, err = d.eco.Bids(ctx, id, "", 30); err != nil {
		return err
	}
	for _, status := range []string{store.PromptPending, store.PromptRated, store.PromptExpired} {
		list, err := d.eco.Prompts(ctx, status, id, 30)
		if err != nil {
			return err
		}
		v.Prompts = append(v.Prompts, list...)
	}
	slices.SortFunc(v.Prompts, func(a, b economy.PromptView) int { return cmp.Compare(b.CreatedAt, a.CreatedAt) })
	v.MintKey = randomToken()[:24]
	return d.eco.Store().Read(ctx, func(tx store.Tx) error {
		list, err := tx.ListExecutions(ctx, store.ExecutionFilter{AgentID: id, Limit: 25})
		if err != nil {
			return err
		}
		for _, e := range list {
			row := executionRow{Execution: e}
			if !e.Ended.IsZero() && !e.Started.IsZero() {
				row.Wall = e.Ended.Sub(e.Started).Round(time.Millisecond)
			}
			v.Executions = append(v.Executions, row)
		}
		v.Messages, err = tx.ListMessages(ctx, store.MessageFilter{Party: id, Limit: 30})
		return err
	})
}

// plotSeries is one line of a plot: [x, y] points.
type plotSeries struct {
	Name   string       `json:"name"`
	Points [][2]float64 `json:"points"`
}

// plotSpec is what the dashboard's script draws.
type plotSpec struct {
	X      string       `json:"x"` // "time" (ms since the epoch) or "cycle"
	Y      string       `json:"y"` // "credits" or "percent"
	Step   bool         `json:"step"`
	Series []plotSeries `json:"series"`
}

// balanceSeries rebuilds the agent's available and held balances after each
// of its ledger entries (newest first in hist), walking back from the
// current balances. Floats only draw the plot; no balance is computed from
// them.
func balanceSeries(a economy.AgentView, hist []economy.HistoryEntry, now time.Time) plotSpec {
	avail, held := a.Balance, a.Held
	hold := ledger.HoldAccount(a.ID)
	type point struct {
		t           time.Time
		avail, held money.Micro
	}
	pts := []point{{now, avail, held}}
	for _, e := range hist {
		t, err := time.Parse(time.RFC3339Nano, e.Time)
		if err != nil {
			continue
		}
		pts = append(pts, point{t, avail, held})
		switch {
		case e.Account == "available" && e.Counterparty == hold:
			avail -= e.Amount // a hold or a release moves between the two
			held += e.Amount
		case e.Account == "available":
			avail -= e.Amount
		default:
			held -= e.Amount
		}
	}
	if n := len(hist); n > 0 {
		if t, err := time.Parse(time.RFC3339Nano, hist[n-1].Time); err == nil {
			pts = append(pts, point{t.Add(-time.Millisecond), avail, held})
		}
	}
	slices.Reverse(pts)
	spec := plotSpec{X: "time", Y: "credits", Step: true,
		Series: []plotSeries{{Name: "available"}, {Name: "held"}}}
	for _, p := range pts {
		ms := float64(p.t.UnixMilli())
		spec.Series[0].Points = append(spec.Series[0].Points, [2]float64{ms, p.avail.Float64()})
		spec.Series[1].Points = append(spec.Series[1].Points, [2]float64{ms, p.held.Float64()})
	}
	return spec
}

func (d *Dashboard) mint(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	back := "/ui/agents/" + id
	amount, err := money.Parse(strings.TrimSpace(r.PostForm.Get("amount")))
	if err != nil {
		d.sessions.setFlash(s, "error", "Amount: "+err.Error())
		http.Redirect(w, r, back, http.StatusSeeOther)
		return
	}
	memo := strings.TrimSpace(r.PostForm.Get("memo"))
	var idem *economy.Idem
	if key := r.PostForm.Get("idem"); key != "" && len(key) <= 64 {
		// A resubmitted form mints once.
		idem = &economy.Idem{Principal: "operator", Key: "web-mint:" + key, Hash: hashOf(id + "\n" + amount.String() + "\n" + memo)}
	}
	res, err := d.eco.Mint(r.Context(), id, amount, memo, idem)
	if err != nil {
		if e, ok := economy.AsError(err); ok {
			d.sessions.setFlash(s, "error", "Mint refused: "+e.Detail)
			http.Redirect(w, r, back, http.StatusSeeOther)
			return
		}
		d.failErr(w, r, err)
		return
	}
	d.sessions.setFlash(s, "ok", "Minted "+res.Amount.String()+" credits to "+id+"; its balance is now "+res.Balance.String()+".")
	http.Redirect(w, r, back, http.StatusSeeOther)
}
