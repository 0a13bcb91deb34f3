package web_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/economy/economytest"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/web"
)

const token = "op-web-test-token"

// site is the dashboard mounted in the real API server, as app wires it.
type site struct {
	t   *testing.T
	eco *economy.Economy
	url string
	log *strings.Builder
}

func newSite(t *testing.T) *site {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	eco := economytest.Open(t, economytest.Options{Log: log, Config: func(c *config.Config) {
		cpu := c.Market.Resources["cpu"]
		cpu.Capacity = 8
		c.Market.Resources["cpu"] = cpu
	}}).Economy
	dash, err := web.New(web.Options{Economy: eco, OperatorToken: token, Log: log, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(eco, log, api.Options{OperatorToken: token, Dashboard: dash, Session: dash.Authenticated}))
	t.Cleanup(srv.Close)
	return &site{t: t, eco: eco, url: srv.URL}
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	t *testing.T
	s *site
	c *http.Client
}

func (s *site) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: s.t, s: s, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type page struct {
	Status int
	Header http.Header
	Body   string
}

func (b *browser) do(method, path string, form url.Values, header map[string]string) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r, _ := http.NewRequest(method, b.s.url+path, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		r.Header.Set(k, v)
	}
	resp, err := b.c.Do(r)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return page{Status: resp.StatusCode, Header: resp.Header, Body: string(raw)}
}

func (b *browser) get(path string) page { b.t.Helper(); return b.do("GET", path, nil, nil) }

func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	return b.do("POST", path, form, map[string]string{"Origin": b.s.url, "Sec-Fetch-Site": "same-origin"})
}

func (b *browser) login() {
	b.t.Helper()
	p := b.post("/ui/login", url.Values{"token": {token}, "next": {"/ui/events"}})
	if p.Status != http.StatusSeeOther || p.Header.Get("Location") != "/ui/events" {
		b.t.Fatalf("login: %d to %q: %s", p.Status, p.Header.Get("Location"), p.Body)
	}
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func (b *browser) csrf(path string) string {
	b.t.Helper()
	m := csrfRe.FindStringSubmatch(b.get(path).Body)
	if m == nil {
		b.t.Fatalf("no CSRF token on %s", path)
	}
	return m[1]
}

func TestPublicPages(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	b := s.browser()
	for path, want := range map[string]string{
		"/":                      "Overview",
		"/ui/agents":             `href="/ui/agents/genesis"`,
		"/ui/agents/genesis":     "Agent genesis",
		"/ui/markets":            "data-market-history",
		"/ui/static/app.js":      "EventSource",
		"/ui/static/app.css":     "--accent",
		"/ui/login?next=/x":      `name="token"`,
		"/ui/static/favicon.svg": "<svg",
	} {
		p := b.get(path)
		if p.Status != http.StatusOK || !strings.Contains(p.Body, want) {
			t.Errorf("GET %s: %d, want 200 containing %q", path, p.Status, want)
		}
		if strings.HasPrefix(path, "/ui/static/") {
			continue
		}
		if csp := p.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
		if p.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s: X-Frame-Options %q", path, p.Header.Get("X-Frame-Options"))
		}
	}
	// The public agent page keeps operator data back.
	if p := b.get("/ui/agents/genesis"); strings.Contains(p.Body, "data-plot") || strings.Contains(p.Body, "Mint credits") {
		t.Error("a visitor without a session sees the operator's sections")
	}
	if p := b.get("/ui/agents/nobody"); p.Status != http.StatusNotFound {
		t.Errorf("an unknown agent: %d", p.Status)
	}
	if p := b.get("/ui/nothing-here"); p.Status != http.StatusNotFound || p.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
		p.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("an unknown page: %d %q %q", p.Status, p.Header.Get("Content-Type"), p.Header.Get("Cache-Control"))
	}
}

// Nothing the dashboard serves refers to another host: it works offline.
func TestAssetsAreSelfContained(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	b := s.browser()
	b.login()
	ext := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?\s*(https?:)?//|@import|url\(\s*["']?(https?:)?//`)
	for _, path := range []string{"/", "/ui/events", "/ui/agents", "/ui/agents/genesis", "/ui/markets", "/ui/attention",
		"/ui/static/app.css", "/ui/static/app.js"} {
		p := b.get(path)
		if p.Status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, p.Status)
		}
		if m := ext.FindString(p.Body); m != "" {
			t.Errorf("%s refers to another host: %q", path, m)
		}
	}
	// Every asset a page links is served by the binary.
	for _, link := range regexp.MustCompile(`(?:src|href)="(/ui/static/[^"]+)"`).FindAllStringSubmatch(b.get("/").Body, -1) {
		if p := b.get(link[1]); p.Status != http.StatusOK {
			t.Errorf("%s: %d", link[1], p.Status)
		}
	}
}

func TestLoginSession(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	b := s.browser()
	for _, path := range []string{"/ui/events", "/ui/attention"} {
		p := b.get(path)
		if p.Status != http.StatusSeeOther || !strings.HasPrefix(p.Header.Get("Location"), "/ui/login?next=") {
			t.Errorf("GET %s without a session: %d to %q", path, p.Status, p.Header.Get("Location"))
		}
	}
	if p := b.post("/ui/login", url.Values{"token": {"wrong"}}); p.Status != http.StatusUnauthorized || strings.Contains(p.Header.Get("Set-Cookie"), web.CookieName) {
		t.Errorf("a wrong token: %d, Set-Cookie %q", p.Status, p.Header.Get("Set-Cookie"))
	}
	if p := b.do("POST", "/ui/login", url.Values{"token": {token}}, map[string]string{"Origin": "http://evil.example"}); p.Status != http.StatusForbidden {
		t.Errorf("a cross-site login: %d", p.Status)
	}
	if p := b.post("/ui/login", url.Values{"token": {token}, "next": {"//evil.example/"}}); p.Header.Get("Location") != "/" {
		t.Errorf("login redirected off-site to %q", p.Header.Get("Location"))
	}
	p := b.post("/ui/login", url.Values{"token": {token}, "next": {"/ui/attention"}})
	cookie := p.Header.Get("Set-Cookie")
	for _, attr := range []string{web.CookieName + "=", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(cookie, attr) {
			t.Errorf("session cookie %q lacks %s", cookie, attr)
		}
	}
	if p := b.get("/ui/events"); p.Status != http.StatusOK || !strings.Contains(p.Body, "data-feed=") {
		t.Fatalf("the live feed with a session: %d", p.Status)
	}
	// The session reads operator API routes (the feed's stream, logs)…
	if p := b.get("/events?limit=1"); p.Status != http.StatusOK {
		t.Errorf("GET /events with the session: %d", p.Status)
	}
	// …and logging out ends it.
	if p := b.post("/ui/logout", url.Values{"csrf": {b.csrf("/")}}); p.Status != http.StatusSeeOther {
		t.Fatalf("logout: %d", p.Status)
	}
	if p := b.get("/events?limit=1"); p.Status != http.StatusUnauthorized {
		t.Errorf("GET /events after logout: %d", p.Status)
	}
}

// prompt makes an agent win attention and write a prompt; it returns the id.
func (s *site) prompt(agent, content string) string {
	s.t.Helper()
	ctx := context.Background()
	bundle := market.Bundle{CPUMillis: 100, MemoryMB: 64, DurationSeconds: 60, Attention: 1}
	if _, err := s.eco.CreateAgent(ctx, economy.CreateAgentRequest{ID: agent, Credits: money.Credits(100),
		Files: map[string]string{"main.py": "print(1)\n"}, Bid: &economy.BidSpec{Amount: money.Credits(10), Bundle: bundle}}); err != nil {
		s.t.Fatal(err)
	}
	res, err := s.eco.Clear(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, ex := range res.Queued {
		if ex.AgentID != agent {
			continue
		}
		if _, err := s.eco.StartExecution(ctx, ex.ID, "test", s.url); err != nil {
			s.t.Fatal(err)
		}
		// A pending bid keeps the agent alive after this execution.
		if _, err := s.eco.PlaceBid(ctx, agent, economy.BidRequest{Amount: money.Credits(1),
			Bundle: market.Bundle{CPUMillis: 100, MemoryMB: 64, DurationSeconds: 60}}, nil); err != nil {
			s.t.Fatal(err)
		}
		p, err := s.eco.SubmitPrompt(ctx, economy.Principal{AgentID: agent, ExecutionID: ex.ID},
			economy.PromptRequest{Content: content}, nil)
		if err != nil {
			s.t.Fatal(err)
		}
		if _, err := s.eco.FinishExecution(ctx, ex.ID, sandbox.Result{Reason: sandbox.ReasonExited, Output: []byte("hello <b>log</b>\n")}); err != nil {
			s.t.Fatal(err)
		}
		return p.ID
	}
	s.t.Fatalf("%s did not win attention", agent)
	return ""
}

func (s *site) balance(id string) money.Micro {
	s.t.Helper()
	b, err := s.eco.Balance(context.Background(), id)
	if err != nil {
		s.t.Fatal(err)
	}
	return b.Balance
}

func TestRateThroughTheForm(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	id := s.prompt("asker", `Is <script>alert(1)</script> escaped?`)
	b := s.browser()
	b.login()
	p := b.get("/ui/attention")
	if !strings.Contains(p.Body, id) || strings.Contains(p.Body, "<script>alert(1)") || !strings.Contains(p.Body, "&lt;script&gt;alert(1)") {
		t.Fatalf("the queue does not show the prompt escaped:\n%s", p.Body)
	}
	csrf := b.csrf("/ui/attention")
	form := func(extra url.Values) url.Values {
		v := url.Values{"prompt_id": {id}, "interesting": {"7"}, "useful": {"8"}, "understandable": {"9"}, "reason": {"clear"}}
		for k, x := range extra {
			v[k] = x
		}
		return v
	}
	before := s.balance("asker")

	// Refused: no CSRF token, a wrong one, another site, no session.
	for name, try := range map[string]func() page{
		"no csrf":    func() page { return b.post("/ui/attention/rate", form(nil)) },
		"wrong csrf": func() page { return b.post("/ui/attention/rate", form(url.Values{"csrf": {flip(csrf)}})) },
		"cross-site": func() page {
			return b.do("POST", "/ui/attention/rate", form(url.Values{"csrf": {csrf}}), map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
		},
		"no session": func() page { return s.browser().post("/ui/attention/rate", form(url.Values{"csrf": {csrf}})) },
	} {
		p := try()
		if p.Status == http.StatusSeeOther && name != "no session" || p.Status == http.StatusOK {
			t.Errorf("%s: %d", name, p.Status)
		}
		if got := s.balance("asker"); got != before {
			t.Fatalf("%s: the balance moved from %s to %s", name, before, got)
		}
	}

	p = b.post("/ui/attention/rate", form(url.Values{"csrf": {csrf}}))
	if p.Status != http.StatusSeeOther || p.Header.Get("Location") != "/ui/attention" {
		t.Fatalf("rating: %d to %q: %s", p.Status, p.Header.Get("Location"), p.Body)
	}
	want := before + money.Credits(24*50)
	if got := s.balance("asker"); got != want {
		t.Fatalf("balance after the rating %s, want %s", got, want)
	}
	if p := b.get("/ui/attention"); !strings.Contains(p.Body, "minted 1200 credits to asker") {
		t.Errorf("no confirmation after rating:\n%s", p.Body)
	}
	// Sending the same form again (a reload) does not mint twice.
	b.post("/ui/attention/rate", form(url.Values{"csrf": {csrf}}))
	if got := s.balance("asker"); got != want {
		t.Fatalf("a resubmitted rating moved the balance to %s", got)
	}
	// Bad scores come back as a message, not a rating.
	id2 := s.prompt("asker2", "second")
	b.post("/ui/attention/rate", url.Values{"csrf": {csrf}, "prompt_id": {id2}, "interesting": {"11"}, "useful": {"1"}, "understandable": {"1"}})
	if p := b.get("/ui/attention"); !strings.Contains(p.Body, "Rating refused") || !strings.Contains(p.Body, id2) {
		t.Errorf("an out-of-range score was not refused visibly")
	}
}

func TestAgentPageAndMint(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.prompt("writer", "a prompt")
	s.prompt("reader", "another prompt")
	if _, err := s.eco.SendMessage(context.Background(), "writer", economy.MessageRequest{ToID: "reader", Content: "hi <i>reader</i>"}, nil); err != nil {
		t.Fatal(err)
	}
	b := s.browser()
	b.login()
	// A message shows on the sender's page and on the recipient's, escaped.
	for _, id := range []string{"writer", "reader"} {
		if p := b.get("/ui/agents/" + id); !strings.Contains(p.Body, "hi &lt;i&gt;reader&lt;/i&gt;") {
			t.Errorf("%s's page does not show the message", id)
		}
	}
	p := b.get("/ui/agents/writer")
	for _, want := range []string{"data-plot=", "data-logs=", "a prompt", "Mint credits", "Bids", "0.1 cpu"} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("the operator's agent page lacks %q", want)
		}
	}
	csrf := b.csrf("/ui/agents/writer")
	key := regexp.MustCompile(`name="idem" value="([^"]+)"`).FindStringSubmatch(p.Body)[1]
	before := s.balance("writer")
	mint := url.Values{"csrf": {csrf}, "idem": {key}, "amount": {"2.5"}, "memo": {"web"}}
	if p := b.post("/ui/agents/writer/mint", mint); p.Status != http.StatusSeeOther {
		t.Fatalf("mint: %d", p.Status)
	}
	b.post("/ui/agents/writer/mint", mint) // the same form twice mints once
	if got, want := s.balance("writer"), before+money.MustParse("2.5"); got != want {
		t.Fatalf("balance %s, want %s", got, want)
	}
	if p := b.get("/ui/agents/writer"); !strings.Contains(p.Body, "Minted 2.5 credits to writer") {
		t.Error("no confirmation after minting")
	}
	if p := b.post("/ui/agents/writer/mint", url.Values{"csrf": {csrf}, "amount": {"abc"}}); p.Status != http.StatusSeeOther {
		t.Errorf("a bad amount: %d", p.Status)
	}
	if p := b.get("/ui/agents/writer"); !strings.Contains(p.Body, "Amount:") {
		t.Error("a bad amount is not explained")
	}
}

func TestEmbeddedTemplatesParse(t *testing.T) {
	t.Parallel()
	// New parses every template; a broken one fails here, not at first use.
	if _, err := web.New(web.Options{OperatorToken: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := web.New(web.Options{}); err == nil {
		t.Error("a dashboard without an operator token was built")
	}
}

// flip changes the first character of a hex token.
func flip(tok string) string {
	if tok[0] == '0' {
		return "1" + tok[1:]
	}
	return "0" + tok[1:]
}
