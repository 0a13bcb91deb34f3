package api

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// routeTable is every route the server has. The OpenAPI document and /docs
// are generated from it.
func (s *Server) routeTable() []Route {
	page := []Param{{"limit", "integer", "page size (default 100, at most 500)"}}
	return []Route{
		handle(Route{Method: "GET", Path: "/healthz", Auth: Public, Summary: "Liveness"}, s.health),
		handle(Route{Method: "GET", Path: "/status", Auth: Public, Summary: "Population, cycle, money totals and runtime"}, s.status),

		handle(Route{Method: "GET", Path: "/economic/balance/{agent_id}", Auth: Public,
			Summary: "Any agent's balance (no token needed)"}, s.publicBalance),
		handle(Route{Method: "GET", Path: "/economic/balance", Auth: Agent, Summary: "The calling agent's balance"}, s.ownBalance),
		handle(Route{Method: "POST", Path: "/economic/transfer", Auth: Agent, Status: http.StatusCreated, Idempotent: true,
			Summary: "Pay another agent; fails if amount exceeds the available balance"}, s.transfer),
		handle(Route{Method: "GET", Path: "/economic/history", Auth: Agent, Summary: "The caller's ledger entries, newest first",
			Query: append([]Param{{"before", "integer", "only entries with id below this"}}, page...)}, s.history),

		handle(Route{Method: "GET", Path: "/market/state", Auth: Public, Summary: "Per resource: price, utilization, capacity; cycle; pending bids"}, s.marketState),
		handle(Route{Method: "GET", Path: "/market/prices", Auth: Public, Summary: "Posted price of each resource"}, s.marketPrices),
		handle(Route{Method: "GET", Path: "/market/history", Auth: Public, Summary: "Recorded clearings, newest first",
			Query: append([]Param{{"before", "integer", "only cycles below this"}}, page...)}, s.marketHistory),
		handle(Route{Method: "POST", Path: "/market/bid", Auth: Agent, Status: http.StatusCreated, Idempotent: true,
			Summary: "Bid for a bundle; the amount is held until the bid wins, expires or is cancelled"}, s.placeBid),
		handle(Route{Method: "GET", Path: "/market/bids", Auth: Agent, Summary: "The caller's bids with status",
			Query: append([]Param{{"status", "string", "pending, won, cancelled, expired or void"}}, page...)}, s.listBids),
		handle(Route{Method: "DELETE", Path: "/market/bid/{id}", Auth: Agent, Idempotent: true,
			Summary: "Cancel a pending bid; its hold is released"}, s.cancelBid),

		handle(Route{Method: "POST", Path: "/social/message", Auth: Agent, Status: http.StatusCreated, Idempotent: true,
			Summary: "Message another agent or \"human\"; costs the message fee"}, s.sendMessage),
		handle(Route{Method: "GET", Path: "/social/inbox", Auth: Agent, Summary: "Messages received, unread first; listing marks them read",
			Query: page}, s.inbox),
		handle(Route{Method: "POST", Path: "/social/spawn", Auth: Agent, Status: http.StatusCreated, Idempotent: true,
			MaxBody: s.maxSpawnBody, Summary: "Create a child agent: fee burned, endowment given, workspace copied or given"}, s.spawn),

		handle(Route{Method: "POST", Path: "/human/prompt", Auth: Agent, Status: http.StatusCreated, Idempotent: true,
			Summary: "Submit a prompt to the operator; only from an execution that holds attention, once per execution"}, s.submitPrompt),
		handle(Route{Method: "GET", Path: "/human/prompts", Auth: Operator,
			Summary: "Prompts by status; pending ones in queue order (highest bid first, then oldest)",
			Query: append([]Param{{"status", "string", "pending (default), rated or expired"},
				{"agent", "string", "only this agent's prompts"}}, page...)}, s.listPrompts),
		handle(Route{Method: "GET", Path: "/human/prompts/{id}", Auth: Operator, Summary: "One prompt"}, s.getPrompt),
		handle(Route{Method: "POST", Path: "/human/reward", Auth: Operator, Status: http.StatusCreated, Idempotent: true,
			Summary: "Rate a pending prompt; mints (interesting + useful + understandable) × reward_weight to its agent"}, s.ratePrompt),
		handle(Route{Method: "GET", Path: "/human/messages", Auth: Operator, Summary: "Messages agents sent to \"human\", newest first",
			Query: append([]Param{{"before", "integer", "only messages below this sequence number (next_before of the previous page)"}},
				page...)}, s.humanMessages),

		handle(Route{Method: "GET", Path: "/agents", Auth: Public, Summary: "Agent directory",
			Query: append([]Param{{"status", "string", "alive or dead"}}, page...)}, s.listAgents),
		handle(Route{Method: "GET", Path: "/agents/{id}", Auth: Public, Summary: "One agent"}, s.getAgent),
		handle(Route{Method: "GET", Path: "/agents/{id}/descendants", Auth: Public,
			Summary: "Every agent descended from this one, with its depth, and counts by generation"}, s.descendants),
		handle(Route{Method: "GET", Path: "/agents/generations", Auth: Public,
			Summary: "The population by generation (lineage length)"}, s.generations),

		handle(Route{Method: "GET", Path: "/events", Auth: Operator, Summary: "Audit log in sequence order",
			Query: append([]Param{{"after", "integer", "events with seq above this, ascending"},
				{"before", "integer", "events with seq below this, descending"},
				{"agent", "string", "only this agent's events"},
				{"type", "string", "exact type, or a prefix ending in '.' such as 'bid.'"}}, page...)}, s.events),
		handle(Route{Method: "GET", Path: "/executions", Auth: Operator, Summary: "Executions, newest first",
			Query: append([]Param{{"agent", "string", "only this agent's"}, {"status", "string", "queued, running or finished"}}, page...)}, s.listExecutions),
		handle(Route{Method: "GET", Path: "/executions/{id}", Auth: Operator, Summary: "One execution record"}, s.getExecution),
		handle(Route{Method: "GET", Path: "/executions/{id}/logs", Auth: Operator, Summary: "Captured output of an execution"}, s.executionLogs),
		handle(Route{Method: "POST", Path: "/executions/{id}/kill", Auth: Operator, Summary: "Kill a running execution"}, s.killExecution),

		handle(Route{Method: "GET", Path: "/admin/audit", Auth: Operator, Summary: "Check every ledger invariant"}, s.audit),
		handle(Route{Method: "GET", Path: "/admin/replay", Auth: Operator,
			Summary: "Rebuild every balance from the event log alone and compare"}, s.replay),
		handle(Route{Method: "POST", Path: "/admin/agents", Auth: Operator, Status: http.StatusCreated,
			MaxBody: s.maxSpawnBody, Summary: "Create an agent from a project directory on the server or inline files"}, s.createAgent),
		handle(Route{Method: "POST", Path: "/admin/mint", Auth: Operator, Status: http.StatusCreated, Idempotent: true,
			Summary: "Mint credits to an agent"}, s.mint),
		handle(Route{Method: "POST", Path: "/admin/agents/{id}/kill", Auth: Operator, Summary: "End an agent: bids voided, credits burned"}, s.killAgent),

		rawRoute(Route{Method: "GET", Path: "/events/stream", Auth: Operator, ContentType: "text/event-stream",
			Summary: "New audit events as Server-Sent Events (id: seq, data: an event); resumes after Last-Event-ID or ?after=, " +
				"else starts now; heartbeat comments keep idle connections open",
			Query: []Param{{"after", "integer", "stream events with seq above this (0: the whole log)"},
				{"agent", "string", "only this agent's events"},
				{"type", "string", "exact type, or a prefix ending in '.' such as 'bid.'"}}},
			reflect.TypeOf(EventView{}), s.eventStream),
		handle(Route{Method: "GET", Path: "/admin/ledger", Auth: Operator, Summary: "The ledger's transfers in id order, paged (exports)",
			Query: append([]Param{{"after", "integer", "transfers with id above this"},
				{"account", "string", "only transfers touching this account"}}, page...)}, s.ledgerPage),
		handle(Route{Method: "GET", Path: "/agents/{id}/bids", Auth: Operator, Summary: "Bids an agent pays or would wake from, newest first",
			Query: append([]Param{{"status", "string", "pending, won, cancelled, expired or void"}}, page...)}, s.agentBids),
		rawRoute(Route{Method: "GET", Path: "/metrics", Auth: Public, ContentType: "text/plain; version=0.0.4",
			Summary: "Prometheus metrics in the text exposition format"}, reflect.TypeOf(""), s.metricsText),
		handle(Route{Method: "GET", Path: "/openapi.json", Auth: Public, Summary: "This API's OpenAPI 3.1 document"}, s.openAPIDoc),
	}
}

func (s *Server) health(ctx context.Context, c *Call[NoBody]) (Health, error) {
	return Health{Status: "ok", Version: s.opt.Version, Uptime: time.Since(s.started).Round(time.Second).String()}, nil
}

func (s *Server) status(ctx context.Context, c *Call[NoBody]) (StatusView, error) {
	t, err := s.eco.Totals(ctx)
	if err != nil {
		return StatusView{}, err
	}
	m, err := s.eco.Market(ctx)
	if err != nil {
		return StatusView{}, err
	}
	return StatusView{Cycle: m.Cycle, Alive: t.Alive, Dead: t.Dead, PendingBids: m.PendingBids, Money: t.Money,
		Runtime: s.opt.Status(ctx), Markets: m.Resources}, nil
}

func (s *Server) publicBalance(ctx context.Context, c *Call[NoBody]) (economy.BalanceView, error) {
	return s.eco.Balance(ctx, c.R.PathValue("agent_id"))
}

func (s *Server) ownBalance(ctx context.Context, c *Call[NoBody]) (economy.BalanceView, error) {
	return s.eco.Balance(ctx, c.Who.AgentID)
}

func (s *Server) transfer(ctx context.Context, c *Call[economy.TransferRequest]) (economy.TransferResult, error) {
	return s.eco.Transfer(ctx, c.Who.AgentID, c.Body, c.Idem)
}

// HistoryPage is a page of ledger entries.
type HistoryPage struct {
	Entries []economy.HistoryEntry `json:"entries"`
	// NextBefore continues the listing (0 when there is nothing older).
	NextBefore int64 `json:"next_before"`
}

func (s *Server) history(ctx context.Context, c *Call[NoBody]) (HistoryPage, error) {
	before, err := c.IntQuery("before", 0)
	if err != nil {
		return HistoryPage{}, err
	}
	limit, err := c.IntQuery("limit", 100)
	if err != nil {
		return HistoryPage{}, err
	}
	entries, err := s.eco.History(ctx, c.Who.AgentID, before, int(limit))
	if err != nil {
		return HistoryPage{}, err
	}
	p := HistoryPage{Entries: entries}
	if n := len(entries); n > 0 && n == clampLimit(limit) {
		p.NextBefore = entries[n-1].ID
	}
	return p, nil
}

func clampLimit(l int64) int {
	if l <= 0 || l > 500 {
		return 100
	}
	return int(l)
}

func (s *Server) marketState(ctx context.Context, c *Call[NoBody]) (economy.MarketState, error) {
	return s.eco.Market(ctx)
}

func (s *Server) marketPrices(ctx context.Context, c *Call[NoBody]) (map[string]money.Micro, error) {
	m, err := s.eco.Market(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]money.Micro, len(m.Resources))
	for r, v := range m.Resources {
		out[r] = v.Price
	}
	return out, nil
}

// ClearingView is one recorded clearing.
type ClearingView struct {
	Cycle       int64                  `json:"cycle"`
	Time        string                 `json:"time"`
	Mechanism   string                 `json:"mechanism"`
	Pending     int64                  `json:"pending"`
	Winners     int64                  `json:"winners"`
	Expired     int64                  `json:"expired"`
	Revenue     money.Micro            `json:"revenue"`
	Allocated   map[string]int64       `json:"allocated"`
	Utilization map[string]float64     `json:"utilization"`
	Prices      map[string]money.Micro `json:"prices"`
	DurationUS  int64                  `json:"duration_us"`
}

// MarketHistory is a page of clearings.
type MarketHistory struct {
	Clearings []ClearingView `json:"clearings"`
}

func (s *Server) marketHistory(ctx context.Context, c *Call[NoBody]) (MarketHistory, error) {
	before, err := c.IntQuery("before", 0)
	if err != nil {
		return MarketHistory{}, err
	}
	limit, err := c.IntQuery("limit", 100)
	if err != nil {
		return MarketHistory{}, err
	}
	var out MarketHistory
	err = s.eco.Store().Read(ctx, func(tx store.Tx) error {
		list, err := tx.ListClearings(ctx, before, clampLimit(limit))
		out.Clearings = make([]ClearingView, 0, len(list))
		for _, cl := range list {
			v := ClearingView{Cycle: cl.Cycle, Time: cl.Time.Format(time.RFC3339Nano), Mechanism: cl.Mechanism,
				Pending: cl.Pending, Winners: cl.Winners, Expired: cl.Expired, Revenue: cl.Revenue,
				Allocated: map[string]int64{}, Utilization: map[string]float64{}, Prices: map[string]money.Micro{},
				DurationUS: cl.DurationUS}
			for _, r := range market.Resources {
				v.Allocated[string(r)] = cl.Allocated[r]
				v.Utilization[string(r)] = cl.Utilization[r]
				v.Prices[string(r)] = cl.Prices[r]
			}
			out.Clearings = append(out.Clearings, v)
		}
		return err
	})
	return out, err
}

func (s *Server) placeBid(ctx context.Context, c *Call[economy.BidRequest]) (economy.BidView, error) {
	return s.eco.PlaceBid(ctx, c.Who.AgentID, c.Body, c.Idem)
}

// BidList is a list of bids.
type BidList struct {
	Bids []economy.BidView `json:"bids"`
}

func (s *Server) listBids(ctx context.Context, c *Call[NoBody]) (BidList, error) {
	limit, err := c.IntQuery("limit", 100)
	if err != nil {
		return BidList{}, err
	}
	status := c.Query("status")
	if status != "" && !slices.Contains([]string{store.BidPending, store.BidWon, store.BidCancelled, store.BidExpired, store.BidVoid}, status) {
		return BidList{}, refuse(economy.CodeInvalid, "query parameter status: must be pending, won, cancelled, expired or void, got %q", status)
	}
	bids, err := s.eco.Bids(ctx, c.Who.AgentID, status, int(limit))
	return BidList{Bids: bids}, err
}

func (s *Server) cancelBid(ctx context.Context, c *Call[NoBody]) (economy.BidView, error) {
	return s.eco.CancelBid(ctx, c.Who.AgentID, c.R.PathValue("id"), c.Idem)
}

func (s *Server) sendMessage(ctx context.Context, c *Call[economy.MessageRequest]) (economy.MessageView, error) {
	return s.eco.SendMessage(ctx, c.Who.AgentID, c.Body, c.Idem)
}

// Inbox is a list of received messages.
type Inbox struct {
	Messages []economy.MessageView `json:"messages"`
}

func (s *Server) inbox(ctx context.Context, c *Call[NoBody]) (Inbox, error) {
	limit, err := c.IntQuery("limit", 100)
	if err != nil {
		return Inbox{}, err
	}
	msgs, err := s.eco.Inbox(ctx, c.Who.AgentID, int(limit))
	return Inbox{Messages: msgs}, err
}

func (s *Server) spawn(ctx context.Context, c *Call[economy.SpawnRequest]) (economy.SpawnResult, error) {
	return s.eco.Spawn(ctx, c.Who.AgentID, c.Body, c.Idem)
}

// AgentList is the directory.
type AgentList struct {
	Agents []economy.AgentView `json:"agents"`
}

func (s *Server) listAgents(ctx context.Context, c *Call[NoBody]) (AgentList, error) {
	limit, err := c.IntQuery("limit", 0)
	if err != nil {
		return AgentList{}, err
	}
	status := c.Query("status")
	if status != "" && status != store.AgentAlive && status != store.AgentDead {
		return AgentList{}, refuse(economy.CodeInvalid, "query parameter status: must be alive or dead, got %q", status)
	}
	list, err := s.eco.Agents(ctx, status, int(limit))
	return AgentList{Agents: list}, err
}

func (s *Server) getAgent(ctx context.Context, c *Call[NoBody]) (economy.AgentView, error) {
	return s.eco.Agent(ctx, c.R.PathValue("id"))
}

func (s *Server) descendants(ctx context.Context, c *Call[NoBody]) (economy.LineageView, error) {
	return s.eco.Descendants(ctx, c.R.PathValue("id"))
}

func (s *Server) generations(ctx context.Context, c *Call[NoBody]) (economy.GenerationStats, error) {
	return s.eco.Generations(ctx)
}

func (s *Server) audit(ctx context.Context, c *Call[NoBody]) (ledger.Report, error) {
	return ledger.Audit(ctx, s.eco.Store())
}

func (s *Server) replay(ctx context.Context, c *Call[NoBody]) (ledger.ReplayReport, error) {
	return ledger.Replay(ctx, s.eco.Store())
}

func (s *Server) createAgent(ctx context.Context, c *Call[economy.CreateAgentRequest]) (economy.AgentView, error) {
	return s.eco.CreateAgent(ctx, c.Body)
}

// MintRequest mints credits to an agent.
type MintRequest struct {
	AgentID string      `json:"agent_id"`
	Amount  money.Micro `json:"amount"`
	Memo    string      `json:"memo,omitempty"`
}

func (s *Server) mint(ctx context.Context, c *Call[MintRequest]) (economy.TransferResult, error) {
	return s.eco.Mint(ctx, c.Body.AgentID, c.Body.Amount, c.Body.Memo, c.Idem)
}

// Done acknowledges an action.
type Done struct {
	OK bool   `json:"ok"`
	ID string `json:"id"`
}

func (s *Server) killAgent(ctx context.Context, c *Call[NoBody]) (Done, error) {
	id := c.R.PathValue("id")
	return Done{OK: true, ID: id}, s.eco.Kill(ctx, id)
}

func (s *Server) killExecution(ctx context.Context, c *Call[NoBody]) (Done, error) {
	id := c.R.PathValue("id")
	if s.opt.KillExecution == nil {
		return Done{}, refuse(economy.CodeConflict, "this server runs no executions")
	}
	return Done{OK: true, ID: id}, s.opt.KillExecution(ctx, id)
}

func (s *Server) openAPIDoc(ctx context.Context, c *Call[NoBody]) (json.RawMessage, error) {
	return s.OpenAPI(), nil
}
