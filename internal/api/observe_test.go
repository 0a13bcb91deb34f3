package api_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/testutil"
)

// Every line logged while a request is handled carries its request id, and
// latency is observed under the route pattern, never the raw path.
func TestRequestIDAndRouteLabels(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	var logs testutil.Buffer
	var mu sync.Mutex
	routes := map[string]int{}
	srv := api.New(h.eco, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), api.Options{
		OperatorToken: h.op,
		Observe: func(route string, status int, took time.Duration) {
			mu.Lock()
			routes[route]++
			mu.Unlock()
		},
	})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	get := func(path, id string) *http.Response {
		r, _ := http.NewRequest("GET", ts.URL+path, nil)
		r.Header.Set("Authorization", "Bearer "+h.op)
		if id != "" {
			r.Header.Set("X-Request-Id", id)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := get("/agents/genesis", "req-given-1"); r.Header.Get("X-Request-Id") != "req-given-1" {
		t.Errorf("X-Request-Id %q, want the client's", r.Header.Get("X-Request-Id"))
	}
	get("/agents/nobody", "req-given-2")
	get("/no/such/route", "")
	r := get("/agents/genesis", "bad id with spaces")
	if id := r.Header.Get("X-Request-Id"); id == "" || strings.Contains(id, " ") {
		t.Errorf("an unprintable X-Request-Id was kept: %q", id)
	}

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) < 4 {
		t.Fatalf("expected a log line per request, got:\n%s", logs.String())
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if id, _ := m["request_id"].(string); id == "" {
			t.Errorf("log line without request_id: %s", l)
		}
	}
	if !strings.Contains(logs.String(), `"request_id":"req-given-2"`) {
		t.Errorf("the client's request id is not logged:\n%s", logs.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if routes["GET /agents/{id}"] != 3 || routes["unmatched"] != 1 {
		t.Errorf("observed routes %v, want GET /agents/{id} ×3 and unmatched ×1", routes)
	}
	for route := range routes {
		if strings.Contains(route, "genesis") || strings.Contains(route, "nobody") {
			t.Errorf("a raw path leaked into a route label: %q", route)
		}
	}
}

func TestAdminLedger(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.newAgent("dora", "25", nil)
	if _, err := h.eco.Mint(h.ctx, "dora", money.MustParse("1.5"), "gift", nil); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, h.get(t, "/admin/ledger", ""), http.StatusUnauthorized, "bearer token")
	// Page through with a small limit; every transfer exactly once, in order.
	var all []api.LedgerEntry
	var after int64
	for i := 0; ; i++ {
		p := ok[api.LedgerPage](t, h.get(t, "/admin/ledger?limit=2&after="+strconv.FormatInt(after, 10), h.op), http.StatusOK)
		all = append(all, p.Entries...)
		if p.NextAfter == 0 {
			if p.LastID == 0 || all[len(all)-1].ID != p.LastID {
				t.Fatalf("last page ends at %d, last_id %d", all[len(all)-1].ID, p.LastID)
			}
			break
		}
		after = p.NextAfter
		if i > 100 {
			t.Fatal("paging never ends")
		}
	}
	var minted money.Micro
	for i, e := range all {
		if i > 0 && e.ID <= all[i-1].ID {
			t.Fatalf("ids not ascending at %d: %d after %d", i, e.ID, all[i-1].ID)
		}
		if e.From == "system:mint" {
			minted += e.Amount
		}
	}
	if want := money.MustParse("1026.5"); minted != want { // genesis 1000 + dora 25 + 1.5
		t.Errorf("minted per the ledger export %s, want %s", minted, want)
	}
	one := ok[api.LedgerPage](t, h.get(t, "/admin/ledger?account=dora", h.op), http.StatusOK)
	for _, e := range one.Entries {
		if e.From != "dora" && e.To != "dora" {
			t.Errorf("account filter let through %+v", e)
		}
	}
}

func TestAgentBids(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.newAgent("eve", "10", nil)
	wantProblem(t, h.get(t, "/agents/eve/bids", ""), http.StatusUnauthorized)
	list := ok[api.BidList](t, h.get(t, "/agents/eve/bids?status=pending", h.op), http.StatusOK)
	if len(list.Bids) != 1 || list.Bids[0].AgentID != "eve" || list.Bids[0].Status != "pending" {
		t.Fatalf("eve's bids %+v", list.Bids)
	}
	wantProblem(t, h.get(t, "/agents/nobody/bids", h.op), http.StatusNotFound, "nobody")
	wantProblem(t, h.get(t, "/agents/eve/bids?status=maybe", h.op), http.StatusUnprocessableEntity, "status")
}

// The raw routes are documented from the same table, with their media types.
func TestOpenAPIRawRoutes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	doc := ok[map[string]any](t, h.get(t, "/openapi.json", ""), http.StatusOK)
	paths := obj(t, doc, "paths")
	for path, ct := range map[string]string{"/events/stream": "text/event-stream", "/metrics": "text/plain; version=0.0.4"} {
		op := obj(t, obj(t, paths, path), "get")
		content := obj(t, obj(t, obj(t, op, "responses"), "200"), "content")
		if _, found := content[ct]; !found {
			t.Errorf("%s: 200 response content %v, want %s", path, content, ct)
		}
	}
	stream := obj(t, obj(t, paths, "/events/stream"), "get")
	if sec, _ := stream["security"].([]any); len(sec) != 1 {
		t.Errorf("/events/stream security %v, want the operator token", stream["security"])
	}
	// Without Metrics configured, /metrics says so.
	wantProblem(t, h.get(t, "/metrics", ""), http.StatusNotFound, "metrics")
}
