package web

// Read-only pages: the overview, the live event feed, the agents table with
// its lineage tree, and the markets.

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/store"
)

// marketRow is one resource's market, in the resources' canonical order.
type marketRow struct {
	Name string
	economy.MarketView
}

func marketRows(m economy.MarketState) []marketRow {
	out := make([]marketRow, 0, len(m.Resources))
	for _, r := range market.Resources {
		if v, ok := m.Resources[string(r)]; ok {
			out = append(out, marketRow{Name: string(r), MarketView: v})
		}
	}
	return out
}

// eventRow is one audit event as a feed row.
type eventRow struct {
	Seq     int64
	Time    time.Time
	Cycle   int64
	Type    string
	AgentID string
	Ref     string
	Summary string
}

func eventRows(list []store.Event) []eventRow {
	out := make([]eventRow, 0, len(list))
	for _, e := range list {
		out = append(out, eventRow{Seq: e.Seq, Time: e.Time, Cycle: e.Cycle, Type: e.Type, AgentID: e.AgentID,
			Ref: e.Ref, Summary: compact(json.RawMessage(e.Data))})
	}
	return out
}

// compactMap renders a JSON object as sorted key=value pairs.
func compactMap(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		b, _ := json.Marshal(m[k])
		parts = append(parts, k+"="+string(b))
	}
	return short(300, strings.Join(parts, " "))
}

// latestEvents reads the newest n events matching f, newest first, and the
// log's last seq (where a live stream continues).
func (d *Dashboard) latestEvents(ctx context.Context, f store.EventFilter, n int) ([]eventRow, int64, error) {
	var list []store.Event
	var last int64
	err := d.eco.Store().Read(ctx, func(tx store.Tx) error {
		var err error
		if last, err = tx.LastEventSeq(ctx); err != nil {
			return err
		}
		f.BeforeSeq, f.AfterSeq, f.Limit = last+1, 0, n
		list, err = tx.ListEvents(ctx, f)
		return err
	})
	slices.SortFunc(list, func(a, b store.Event) int { return cmp.Compare(b.Seq, a.Seq) })
	return eventRows(list), last, err
}

type overviewData struct {
	Totals      economy.Totals
	Market      economy.MarketState
	Markets     []marketRow
	Generations economy.GenerationStats
	Runtime     RuntimeInfo
	Events      []eventRow
	StreamURL   string
	Pending     int
}

func (d *Dashboard) overview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	var v overviewData
	var err error
	if v.Totals, err = d.eco.Totals(ctx); err != nil {
		d.failErr(w, r, err)
		return
	}
	if v.Market, err = d.eco.Market(ctx); err != nil {
		d.failErr(w, r, err)
		return
	}
	if v.Generations, err = d.eco.Generations(ctx); err != nil {
		d.failErr(w, r, err)
		return
	}
	v.Markets = marketRows(v.Market)
	v.Runtime = d.opt.Runtime(ctx)
	if d.sessions.get(r) != nil {
		var last int64
		if v.Events, last, err = d.latestEvents(ctx, store.EventFilter{}, 12); err != nil {
			d.failErr(w, r, err)
			return
		}
		v.StreamURL = "/events/stream?after=" + itoa(last)
		prompts, err := d.eco.Prompts(ctx, store.PromptPending, "", 500)
		if err != nil {
			d.failErr(w, r, err)
			return
		}
		v.Pending = len(prompts)
	}
	d.render(w, r, "overview", "Overview", v)
}

type eventsData struct {
	Events    []eventRow
	Type      string
	Agent     string
	StreamURL string
}

func (d *Dashboard) events(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	q := r.URL.Query()
	v := eventsData{Type: strings.TrimSpace(q.Get("type")), Agent: strings.TrimSpace(q.Get("agent"))}
	rows, last, err := d.latestEvents(ctx, store.EventFilter{Type: v.Type, AgentID: v.Agent}, 100)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	v.Events = rows
	sq := url.Values{"after": {itoa(last)}}
	if v.Type != "" {
		sq.Set("type", v.Type)
	}
	if v.Agent != "" {
		sq.Set("agent", v.Agent)
	}
	v.StreamURL = "/events/stream?" + sq.Encode()
	d.render(w, r, "events", "Live events", v)
}

// treeNode is one agent in the lineage tree.
type treeNode struct {
	economy.AgentView
	Children    []*treeNode
	Descendants int
	Open        bool
}

// lineageTree arranges agents under their parents; an agent whose parent is
// unknown is a root. Roots and their children are shown expanded.
func lineageTree(list []economy.AgentView) []*treeNode {
	nodes := make(map[string]*treeNode, len(list))
	for _, a := range list {
		nodes[a.ID] = &treeNode{AgentView: a}
	}
	var roots []*treeNode
	for _, a := range list {
		n := nodes[a.ID]
		if p, ok := nodes[a.ParentID]; ok && a.ParentID != a.ID {
			p.Children = append(p.Children, n)
		} else {
			roots = append(roots, n)
		}
	}
	var count func(n *treeNode, depth int) int
	count = func(n *treeNode, depth int) int {
		n.Open = depth == 0
		for _, c := range n.Children {
			n.Descendants += 1 + count(c, depth+1)
		}
		return n.Descendants
	}
	for _, r := range roots {
		count(r, 0)
	}
	return roots
}

// maxTableAgents bounds the agents table; the tree shows everyone.
const maxTableAgents = 1000

type agentsData struct {
	Agents      []economy.AgentView
	Total       int
	Shown       int
	Status      string
	Tree        []*treeNode
	Generations economy.GenerationStats
}

func (d *Dashboard) agents(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	status := r.URL.Query().Get("status")
	if status != store.AgentAlive && status != store.AgentDead {
		status = ""
	}
	all, err := d.eco.Agents(ctx, "", 0)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	v := agentsData{Status: status, Tree: lineageTree(all)}
	if v.Generations, err = d.eco.Generations(ctx); err != nil {
		d.failErr(w, r, err)
		return
	}
	for _, a := range all {
		if status == "" || a.Status == status {
			v.Total++
			if len(v.Agents) < maxTableAgents {
				v.Agents = append(v.Agents, a)
			}
		}
	}
	v.Shown = len(v.Agents)
	d.render(w, r, "agents", "Agents", v)
}

// clearingRow is one recorded clearing.
type clearingRow struct {
	store.Clearing
	Took time.Duration
}

type marketsData struct {
	Market    economy.MarketState
	Markets   []marketRow
	Clearings []clearingRow
}

func (d *Dashboard) markets(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	var v marketsData
	var err error
	if v.Market, err = d.eco.Market(ctx); err != nil {
		d.failErr(w, r, err)
		return
	}
	v.Markets = marketRows(v.Market)
	err = d.eco.Store().Read(ctx, func(tx store.Tx) error {
		list, err := tx.ListClearings(ctx, 0, 15)
		for _, c := range list {
			v.Clearings = append(v.Clearings, clearingRow{Clearing: c, Took: time.Duration(c.DurationUS) * time.Microsecond})
		}
		return err
	})
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	d.render(w, r, "markets", "Markets", v)
}
