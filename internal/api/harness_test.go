package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/bpagents/bpagents/internal/agents"
	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/economy/economytest"
	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/sqlite"
	"github.com/bpagents/bpagents/internal/testutil"
)

// testBundle is small and cheap at the harness's prices, and long enough
// (600 s) that no execution token reaches its deadline during a test.
var testBundle = market.Bundle{CPUMillis: 100, MemoryMB: 16, DurationSeconds: 600}

// testBundleJSON is testBundle as an agent writes it.
const testBundleJSON = `{"cpu":0.1,"memory_mb":16,"duration_seconds":600}`

// harness is one economy on a real SQLite store, served over HTTP.
type harness struct {
	t      *testing.T
	ctx    context.Context
	cfg    config.Config
	st     *sqlite.DB
	eco    *economy.Economy
	api    *api.Server
	srv    *httptest.Server
	client *http.Client
	op     string // the operator token
	ws     agents.Workspaces
	logs   *testutil.Buffer
}

// newHarness builds config.Default() (with tweak applied, if any) into a
// bootstrapped economy and an API server. The market is made roomy and cheap
// so that every test agent's bid wins when the test clears it. Any error the
// server logs (a 500, a panic) fails the test.
func newHarness(t *testing.T, tweak func(*config.Config)) *harness {
	t.Helper()
	ctx := context.Background()
	logs := &testutil.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e := economytest.Open(t, economytest.Options{Log: log, Genesis: "print('genesis')\n", Config: func(cfg *config.Config) {
		cfg.Market.MaxDurationSeconds = 3600
		cfg.Genesis.DurationSeconds = 600
		res := cfg.Market.Resources
		cpu := res["cpu"]
		cpu.Capacity, cpu.Price, cpu.Floor = 64, money.MustParse("0.001"), money.MustParse("0.001")
		res["cpu"] = cpu
		mem := res["memory_mb"]
		mem.Capacity, mem.Price = 1<<20, money.MustParse("0.000001")
		res["memory_mb"] = mem
		if tweak != nil {
			tweak(cfg)
		}
	}})
	eco, st, cfg := e.Economy, e.Store, e.Config
	ws := agents.Workspaces{Root: filepath.Join(e.Home, "workspaces")}

	op := "op-" + strings.ReplaceAll(t.Name(), "/", "-") + "-secret"
	srv := api.New(eco, log, api.Options{OperatorToken: op, MaxBody: cfg.API.MaxBodyBytes,
		MaxSpawnBody: cfg.API.MaxSpawnBodyBytes, Version: "test"})
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ts.Close()
		if l := logs.String(); strings.Contains(l, "level=ERROR") {
			t.Errorf("the server logged errors:\n%s", l)
		}
	})
	return &harness{t: t, ctx: ctx, cfg: cfg, st: st, eco: eco, api: srv, srv: ts, client: ts.Client(),
		op: op, ws: ws, logs: logs}
}

// newAgent creates an agent with inline files, credits and a pending bid of
// 1 credit for testBundle (so that login can wake it).
func (h *harness) newAgent(id, credits string, files map[string]string) economy.AgentView {
	h.t.Helper()
	if files == nil {
		files = map[string]string{"main.py": "print(1)\n"}
	}
	v, err := h.eco.CreateAgent(h.ctx, economy.CreateAgentRequest{ID: id, Files: files,
		Credits: money.MustParse(credits), Bid: &economy.BidSpec{Amount: money.Credits(1), Bundle: testBundle}})
	if err != nil {
		h.t.Fatalf("create agent %s: %v", id, err)
	}
	return v
}

// login returns a valid execution token for agentID and its execution id:
// it starts a queued execution of the agent if there is one, else makes sure
// the agent has a pending bid, clears the market so the bid wins, and starts
// the queued execution. Log every agent in before placing bids a test wants
// to stay pending: clearing lets every pending bid of an idle agent win.
func (h *harness) login(agentID string) (token, execID string) {
	h.t.Helper()
	queued, err := h.eco.QueuedExecutions(h.ctx)
	if err != nil {
		h.t.Fatalf("queued executions: %v", err)
	}
	i := slices.IndexFunc(queued, func(e store.Execution) bool { return e.AgentID == agentID })
	if i < 0 {
		var pending bool
		err := h.st.Read(h.ctx, func(tx store.Tx) error {
			var err error
			pending, err = tx.HasPendingBidFor(h.ctx, agentID)
			return err
		})
		if err != nil {
			h.t.Fatalf("pending bids of %s: %v", agentID, err)
		}
		if !pending {
			if _, err := h.eco.PlaceBid(h.ctx, agentID, economy.BidRequest{Amount: money.Credits(1), Bundle: testBundle}, nil); err != nil {
				h.t.Fatalf("bid for %s: %v", agentID, err)
			}
		}
		res, err := h.eco.Clear(h.ctx)
		if err != nil {
			h.t.Fatalf("clear: %v", err)
		}
		queued = res.Queued
		if i = slices.IndexFunc(queued, func(e store.Execution) bool { return e.AgentID == agentID }); i < 0 {
			h.t.Fatalf("login %s: its bid did not win (queued %d executions)", agentID, len(queued))
		}
	}
	started, err := h.eco.StartExecution(h.ctx, queued[i].ID, "test", h.srv.URL)
	if err != nil {
		h.t.Fatalf("start execution of %s: %v", agentID, err)
	}
	if started.Token == "" {
		h.t.Fatalf("start execution of %s: empty token", agentID)
	}
	return started.Token, queued[i].ID
}

// finish ends an execution as exited with the given output; its token expires.
func (h *harness) finish(execID, output string) {
	h.t.Helper()
	if _, err := h.eco.FinishExecution(h.ctx, execID, sandbox.Result{Reason: sandbox.ReasonExited, Output: []byte(output)}); err != nil {
		h.t.Fatalf("finish %s: %v", execID, err)
	}
}

// req is one HTTP request to the harness's server.
type req struct {
	Method string
	Path   string
	Token  string // sent as a bearer token when set
	Body   string // raw body; Content-Type application/json unless ContentType says otherwise
	// ContentType overrides the media type; "-" sends none.
	ContentType string
	IdemKey     string
	// Chunked hides the body's length from the server.
	Chunked bool
}

// reply is a server's answer.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r reply) String() string { return strings.TrimSpace(string(r.Body)) }

func (h *harness) do(t testing.TB, q req) reply {
	t.Helper()
	r, err := h.send(q)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// send is do for goroutines other than the test's: it returns the error.
func (h *harness) send(q req) (reply, error) {
	var body io.Reader
	if q.Body != "" {
		body = strings.NewReader(q.Body)
		if q.Chunked {
			body = io.MultiReader(body)
		}
	}
	r, err := http.NewRequestWithContext(h.ctx, q.Method, h.srv.URL+q.Path, body)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", q.Method, q.Path, err)
	}
	switch {
	case q.ContentType == "-":
	case q.ContentType != "":
		r.Header.Set("Content-Type", q.ContentType)
	case q.Body != "":
		r.Header.Set("Content-Type", "application/json")
	}
	if q.Token != "" {
		r.Header.Set("Authorization", "Bearer "+q.Token)
	}
	if q.IdemKey != "" {
		r.Header.Set("Idempotency-Key", q.IdemKey)
	}
	resp, err := h.client.Do(r)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", q.Method, q.Path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: reading the reply: %w", q.Method, q.Path, err)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: raw}, nil
}

// get is a GET with an optional token.
func (h *harness) get(t testing.TB, path, token string) reply {
	t.Helper()
	return h.do(t, req{Method: "GET", Path: path, Token: token})
}

// ok asserts a successful JSON reply with the given status and decodes it.
func ok[T any](t testing.TB, r reply, status int) T {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	var v T
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %T from %s: %v", v, r, err)
	}
	return v
}

// problem is a decoded problem document.
type problem struct {
	Type   string         `json:"type"`
	Title  string         `json:"title"`
	Status int            `json:"status"`
	Detail string         `json:"detail"`
	All    map[string]any `json:"-"`
}

// wantProblem asserts r is an RFC 9457 problem with status whose detail
// contains every one of parts.
func wantProblem(t testing.TB, r reply, status int, parts ...string) problem {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json: %s", ct, r)
	}
	var p problem
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatalf("problem is not JSON: %v: %s", err, r)
	}
	if err := json.Unmarshal(r.Body, &p.All); err != nil {
		t.Fatalf("problem is not a JSON object: %v: %s", err, r)
	}
	if p.Status != status || !strings.HasPrefix(p.Type, "urn:bpagents:problem:") || p.Title == "" || p.Detail == "" {
		t.Fatalf("incomplete problem document: %s", r)
	}
	for _, part := range parts {
		if !strings.Contains(p.Detail, part) {
			t.Errorf("detail %q does not contain %q", p.Detail, part)
		}
	}
	return p
}

// balance reads an agent's balance through the public route.
func (h *harness) balance(t testing.TB, id string) economy.BalanceView {
	t.Helper()
	return ok[economy.BalanceView](t, h.get(t, "/economic/balance/"+id, ""), http.StatusOK)
}

// audit asserts the ledger audit, read through /admin/audit, is clean.
func (h *harness) audit(t testing.TB) ledger.Report {
	t.Helper()
	rep := ok[ledger.Report](t, h.get(t, "/admin/audit", h.op), http.StatusOK)
	if !rep.OK || len(rep.Violations) > 0 || rep.Sum != 0 {
		t.Fatalf("audit failed: %+v", rep)
	}
	return rep
}

// snapshot is everything a request could change: every account, transfer,
// agent, bid, execution and message, the audit log's length, the workspace
// directories, and the audit report.
type snapshot struct {
	Accounts   []store.Account
	Transfers  []store.Transfer
	Agents     []store.Agent
	Bids       []store.Bid
	Executions []store.Execution
	Messages   []store.Message
	LastEvent  int64
	Workspaces []string
	Audit      ledger.Report
}

func (h *harness) snapshot(t testing.TB) snapshot {
	t.Helper()
	var s snapshot
	err := h.st.Read(h.ctx, func(tx store.Tx) error {
		var err error
		if s.Accounts, err = tx.ListAccounts(h.ctx); err != nil {
			return err
		}
		if s.Transfers, err = tx.ListTransfers(h.ctx, store.TransferFilter{Ascending: true}); err != nil {
			return err
		}
		if s.Agents, err = tx.ListAgents(h.ctx, store.AgentFilter{}); err != nil {
			return err
		}
		if s.Bids, err = tx.ListBids(h.ctx, store.BidFilter{}); err != nil {
			return err
		}
		if s.Executions, err = tx.ListExecutions(h.ctx, store.ExecutionFilter{}); err != nil {
			return err
		}
		for _, a := range append(s.Agents, store.Agent{ID: economy.HumanID}) {
			msgs, err := tx.Inbox(h.ctx, a.ID, 0)
			if err != nil {
				return err
			}
			s.Messages = append(s.Messages, msgs...)
		}
		s.LastEvent, err = tx.LastEventSeq(h.ctx)
		return err
	})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	entries, err := os.ReadDir(h.ws.Root)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	for _, e := range entries {
		s.Workspaces = append(s.Workspaces, e.Name())
	}
	s.Audit = h.audit(t)
	return s
}

// sameSnapshot reports which parts of two snapshots differ.
func sameSnapshot(t testing.TB, before, after snapshot) {
	t.Helper()
	bv, av := reflect.ValueOf(before), reflect.ValueOf(after)
	for i := 0; i < bv.NumField(); i++ {
		if !reflect.DeepEqual(bv.Field(i).Interface(), av.Field(i).Interface()) {
			t.Errorf("%s changed:\nbefore %+v\nafter  %+v", bv.Type().Field(i).Name, bv.Field(i).Interface(), av.Field(i).Interface())
		}
	}
}

// mustJSON marshals v.
func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
