package intelligence_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/economy/economytest"
	"github.com/bpagents/bpagents/internal/intelligence"
	"github.com/bpagents/bpagents/internal/intelligence/llmtest"
	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/testutil"
)

const upstreamKey = "sk-test-secret-0123456789"

// rig is a real economy and API with the proxy pointed at a fake upstream.
type rig struct {
	t    *testing.T
	eco  *economy.Economy
	st   store.Store
	up   *llmtest.Server
	srv  *httptest.Server
	logs *testutil.Buffer
}

func newRig(t *testing.T, edit func(*intelligence.Config)) *rig {
	t.Helper()
	logs := &testutil.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := economytest.Open(t, economytest.Options{Log: log, Config: func(c *config.Config) {
		cpu := c.Market.Resources["cpu"]
		cpu.Capacity = 8
		c.Market.Resources["cpu"] = cpu
	}})
	eco, st := e.Economy, e.Store
	up := llmtest.New(upstreamKey)
	t.Cleanup(up.Close)
	cfg := intelligence.Config{BaseURL: up.BaseURL(), Key: upstreamKey, Models: []string{"tiny", "small"},
		Timeout: 5 * time.Second}
	if edit != nil {
		edit(&cfg)
	}
	proxy := intelligence.New(cfg, eco, log)
	srv := httptest.NewServer(api.New(eco, log, api.Options{OperatorToken: "op", Intelligence: proxy}))
	t.Cleanup(srv.Close)
	return &rig{t: t, eco: eco, st: st, up: up, srv: srv, logs: logs}
}

// token creates an agent whose won bundle carries tokens and starts its
// execution.
func (r *rig) token(id string, tokens int64) (string, string) {
	r.t.Helper()
	ctx := context.Background()
	bundle := market.Bundle{CPUMillis: 100, MemoryMB: 64, DurationSeconds: 300, Tokens: tokens}
	if _, err := r.eco.CreateAgent(ctx, economy.CreateAgentRequest{ID: id, Credits: money.Credits(100),
		Files: map[string]string{"main.py": "print(1)\n"}, Bid: &economy.BidSpec{Amount: money.Credits(50), Bundle: bundle}}); err != nil {
		r.t.Fatal(err)
	}
	res, err := r.eco.Clear(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, ex := range res.Queued {
		started, err := r.eco.StartExecution(ctx, ex.ID, "test", r.srv.URL)
		if err != nil {
			r.t.Fatal(err)
		}
		if ex.AgentID == id {
			return started.Token, ex.ID
		}
	}
	r.t.Fatalf("agent %s did not win", id)
	return "", ""
}

func (r *rig) post(token, path, body string) *http.Response {
	r.t.Helper()
	req, _ := http.NewRequest("POST", r.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp
}

func (r *rig) execution(id string) store.Execution {
	r.t.Helper()
	var ex store.Execution
	ctx := context.Background()
	if err := r.st.Read(ctx, func(tx store.Tx) error {
		var err error
		ex, err = tx.GetExecution(ctx, id)
		return err
	}); err != nil {
		r.t.Fatal(err)
	}
	return ex
}

// events returns the data of inference.completed events.
func (r *rig) events() []map[string]any {
	r.t.Helper()
	var out []map[string]any
	ctx := context.Background()
	r.st.Read(ctx, func(tx store.Tx) error {
		evs, err := tx.ListEvents(ctx, store.EventFilter{Type: "inference.completed"})
		for _, e := range evs {
			var m map[string]any
			json.Unmarshal(e.Data, &m)
			out = append(out, m)
		}
		return err
	})
	return out
}

func (r *rig) audit() {
	r.t.Helper()
	rep, err := ledger.Audit(context.Background(), r.st)
	if err != nil || !rep.OK {
		r.t.Fatalf("audit: %v %v", err, rep.Violations)
	}
	if strings.Contains(r.logs.String(), upstreamKey) {
		r.t.Fatal("the upstream key appears in the logs")
	}
}

func problem(t *testing.T, resp *http.Response, status int, wants ...string) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	var p map[string]any
	json.NewDecoder(resp.Body).Decode(&p)
	if resp.StatusCode != status || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("status %d (%s), want %d problem: %v", resp.StatusCode, resp.Header.Get("Content-Type"), status, p)
	}
	detail, _ := p["detail"].(string)
	for _, w := range wants {
		if !strings.Contains(detail, w) {
			t.Errorf("detail %q lacks %q", detail, w)
		}
	}
	if strings.Contains(detail, upstreamKey) {
		t.Fatal("the upstream key leaked into a problem detail")
	}
	return p
}

const hello = `{"model":"tiny","messages":[{"role":"user","content":"say hello to the economy"}]}`

func TestWholeAnswerIsMetered(t *testing.T) {
	r := newRig(t, nil)
	tok, exID := r.token("a", 500)
	resp := r.post(tok, "/v1/chat/completions", hello)
	defer resp.Body.Close()
	var doc intelligence.ChatResponse
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	if doc.Usage == nil || !strings.Contains(string(doc.Choices), "echo: say hello") {
		t.Fatalf("answer %+v", doc)
	}
	reqs := r.up.Requests()
	if len(reqs) != 1 || reqs[0].Authorization != "Bearer "+upstreamKey || reqs[0].MaxTokens <= 0 || reqs[0].MaxTokens > 500 {
		t.Fatalf("upstream saw %+v", reqs)
	}
	ex := r.execution(exID)
	if ex.TokensUsed != doc.Usage.TotalTokens || resp.Header.Get("X-Bpagents-Tokens-Used") == "" {
		t.Fatalf("execution used %d tokens, upstream reported %d", ex.TokensUsed, doc.Usage.TotalTokens)
	}
	evs := r.events()
	if len(evs) != 1 || evs[0]["total_tokens"] != float64(doc.Usage.TotalTokens) || evs[0]["estimated"] != false ||
		evs[0]["model"] != "tiny" {
		t.Fatalf("events %v", evs)
	}
	// The alias path is the same endpoint.
	resp = r.post(tok, "/intelligence/inference", hello)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(r.up.Requests()) != 2 {
		t.Fatalf("alias: status %d", resp.StatusCode)
	}
	r.audit()
}

func TestStreamPassesThroughAndCountsUsage(t *testing.T) {
	for _, noUsage := range []bool{false, true} {
		t.Run(map[bool]string{false: "usage chunk", true: "estimated"}[noUsage], func(t *testing.T) {
			r := newRig(t, nil)
			r.up.Set(func(s *llmtest.Server) { s.NoUsage = noUsage })
			tok, exID := r.token("a", 500)
			resp := r.post(tok, "/v1/chat/completions",
				`{"model":"small","stream":true,"messages":[{"role":"user","content":"one two three four"}]}`)
			defer resp.Body.Close()
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
				t.Fatalf("status %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), `"content":"four"`) || !strings.HasSuffix(string(body), "data: [DONE]\n\n") {
				t.Fatalf("stream body:\n%s", body)
			}
			if req := r.up.Requests()[0]; !req.IncludeUsage {
				t.Fatal("the proxy did not ask the upstream for usage")
			}
			ex := r.execution(exID)
			evs := r.events()
			if len(evs) != 1 || ex.TokensUsed <= 0 || evs[0]["estimated"] != noUsage || evs[0]["stream"] != true ||
				evs[0]["total_tokens"] != float64(ex.TokensUsed) {
				t.Fatalf("tokens used %d, events %v", ex.TokensUsed, evs)
			}
			r.audit()
		})
	}
}

func TestAllowanceExhaustion(t *testing.T) {
	r := newRig(t, nil)
	r.up.Set(func(s *llmtest.Server) {
		s.Reply = func(llmtest.Request) string { return strings.Repeat("word ", 200) }
	})
	tok, exID := r.token("a", 40)
	resp := r.post(tok, "/v1/chat/completions", hello)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("first call: %d", resp.StatusCode)
	}
	// The completion was capped to what was left of the allowance.
	if req := r.up.Requests()[0]; req.MaxTokens >= 40 {
		t.Fatalf("max_tokens %d not capped below the 40-token allowance", req.MaxTokens)
	}
	used := r.execution(exID).TokensUsed
	resp = r.post(tok, "/v1/chat/completions", hello)
	p := problem(t, resp, http.StatusTooManyRequests, "of its 40 model tokens")
	if p["allowance"] != float64(40) || p["tokens_used"] != float64(used) {
		t.Fatalf("429 figures %v (used %d)", p, used)
	}
	if len(r.up.Requests()) != 1 {
		t.Fatal("an exhausted execution reached the upstream")
	}
	// A bundle without tokens cannot call at all.
	tok0, _ := r.token("b", 0)
	problem(t, r.post(tok0, "/v1/chat/completions", hello), http.StatusTooManyRequests, "of its 0 model tokens")
	r.audit()
}

func TestBadRequestsAndUpstreamFailures(t *testing.T) {
	r := newRig(t, func(c *intelligence.Config) { c.Timeout = 300 * time.Millisecond })
	tok, exID := r.token("a", 500)
	problem(t, r.post(tok, "/v1/chat/completions", `{"model":"huge","messages":[{"role":"user","content":"x"}]}`),
		http.StatusUnprocessableEntity, `"huge" is not allowed`, "tiny, small")
	problem(t, r.post(tok, "/v1/chat/completions", `{"model":"tiny","messages":[]}`), http.StatusUnprocessableEntity, "messages")
	problem(t, r.post(tok, "/v1/chat/completions", `[1,2]`), http.StatusUnprocessableEntity, "JSON object")
	problem(t, r.post("bogus", "/v1/chat/completions", hello), http.StatusUnauthorized, "unknown token")

	r.up.Set(func(s *llmtest.Server) { s.FailStatus = http.StatusInternalServerError })
	problem(t, r.post(tok, "/v1/chat/completions", hello), http.StatusBadGateway, "answered 500", "told to fail")

	r.up.Set(func(s *llmtest.Server) { s.FailStatus = 0; s.ChunkDelay = 2 * time.Second })
	problem(t, r.post(tok, "/v1/chat/completions", `{"model":"tiny","stream":true,"messages":[{"role":"user","content":"slow"}]}`),
		http.StatusGatewayTimeout, "did not answer within")

	r.up.Close()
	problem(t, r.post(tok, "/v1/chat/completions", hello), http.StatusBadGateway, "could not be reached")
	if used := r.execution(exID).TokensUsed; used != 0 {
		t.Fatalf("failed calls consumed %d tokens", used)
	}
	if n := len(r.events()); n != 3 {
		t.Fatalf("want an inference.completed event for each of the 3 failed upstream calls, got %d", n)
	}
	// An execution that ended cannot call any more.
	if _, err := r.eco.FinishExecution(context.Background(), exID, sandbox.Result{Reason: sandbox.ReasonExited}); err != nil {
		t.Fatal(err)
	}
	problem(t, r.post(tok, "/v1/chat/completions", hello), http.StatusUnauthorized, "expired")
	r.audit()
}

func TestNotConfigured(t *testing.T) {
	r := newRig(t, func(c *intelligence.Config) { c.BaseURL = "" })
	tok, _ := r.token("a", 500)
	problem(t, r.post(tok, "/v1/chat/completions", hello), http.StatusServiceUnavailable, "intelligence.base_url")
	resp, err := http.Get(r.srv.URL + "/intelligence/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m intelligence.ModelsView
	json.NewDecoder(resp.Body).Decode(&m)
	if m.Configured {
		t.Fatalf("models says configured: %+v", m)
	}
}

func TestAbandonedStreamIsStillCounted(t *testing.T) {
	r := newRig(t, nil)
	r.up.Set(func(s *llmtest.Server) {
		s.ChunkDelay = 20 * time.Millisecond
		s.Reply = func(llmtest.Request) string { return strings.Repeat("tick ", 300) }
	})
	tok, exID := r.token("a", 1000)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", r.srv.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"tiny","stream":true,"messages":[{"role":"user","content":"count"}]}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for i := 0; i < 5 && sc.Scan(); i++ {
	}
	cancel() // the agent walks away
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(r.events()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	evs := r.events()
	if len(evs) != 1 || evs[0]["aborted"] != true || evs[0]["estimated"] != true {
		t.Fatalf("events after abandoning: %v", evs)
	}
	if used := r.execution(exID).TokensUsed; used <= 0 || used >= 300 {
		t.Fatalf("abandoned stream counted %d tokens", used)
	}
	if r.up.Finished() != 0 {
		t.Fatal("the upstream stream was not cut off")
	}
	r.audit()
}

func TestCreditsPerTokenAndRealUse(t *testing.T) {
	price := money.MustParse("0.01")
	r := newRig(t, func(c *intelligence.Config) { c.CreditsPerToken = price })
	tok, exID := r.token("a", 500)
	before, _ := r.eco.Balance(context.Background(), "a")
	resp := r.post(tok, "/v1/chat/completions", hello)
	resp.Body.Close()
	used := r.execution(exID).TokensUsed
	after, _ := r.eco.Balance(context.Background(), "a")
	if want := before.Balance - price*money.Micro(used); after.Balance != want || used == 0 {
		t.Fatalf("balance %s after %d tokens at %s, want %s", after.Balance, used, price, want)
	}
	// The tokens market's utilization is the tokens really used.
	res, err := r.eco.Clear(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var cl []store.Clearing
	r.st.Read(context.Background(), func(tx store.Tx) error {
		cl, err = tx.ListClearings(context.Background(), 0, 1)
		return err
	})
	capacity := config.Default().Market.Resources["tokens"].Capacity
	if len(cl) != 1 || cl[0].Cycle != res.Cycle || cl[0].Utilization[market.Tokens] != float64(used)/capacity {
		t.Fatalf("tokens utilization %v, want %d/%v", cl[0].Utilization, used, capacity)
	}
	// Too poor for the worst case of the next call: 402 before any upstream call.
	poor := newRig(t, func(c *intelligence.Config) { c.CreditsPerToken = money.Credits(1) })
	ptok, _ := poor.token("p", 500)
	problem(t, poor.post(ptok, "/v1/chat/completions", hello), http.StatusPaymentRequired, "may cost up to")
	if len(poor.up.Requests()) != 0 {
		t.Fatal("a call the agent could not pay for reached the upstream")
	}
	r.audit()
}
