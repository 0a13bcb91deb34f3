package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/app"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/money"
)

// streamServer is a harness whose API wakes streams from the economy's
// Changed hook, and which never polls (so a test proves the wake-up path).
type streamServer struct {
	*harness
	eco *economy.Economy
	api *api.Server
	url string
}

func newStreamServer(t *testing.T, opt api.Options) *streamServer {
	t.Helper()
	h := newHarness(t, nil)
	set, err := app.Settings(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ch := api.NewChanges()
	eco := economy.New(h.st, set, h.ws, fstest.MapFS{}, slog.New(slog.DiscardHandler), economy.Options{Changed: ch.Notify})
	opt.OperatorToken, opt.Changes = h.op, ch
	if opt.StreamPoll == 0 {
		opt.StreamPoll = time.Hour
	}
	srv := api.New(eco, slog.New(slog.NewTextHandler(h.logs, nil)), opt)
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.CloseStreams()
		ts.Close()
	})
	return &streamServer{harness: h, eco: eco, api: srv, url: ts.URL}
}

// sse is one open stream.
type sse struct {
	t      *testing.T
	resp   *http.Response
	lines  chan string
	cancel context.CancelFunc
}

func (s *streamServer) open(t *testing.T, query string, header map[string]string) *sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/events/stream"+query, nil)
	req.Header.Set("Authorization", "Bearer "+s.op)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		body, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("stream answered %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	st := &sse{t: t, resp: resp, lines: make(chan string, 1000), cancel: cancel}
	go func() {
		defer close(st.lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			st.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return st
}

// next returns the next event (id and decoded data), skipping comments.
func (st *sse) next(timeout time.Duration) (int64, api.EventView, bool) {
	st.t.Helper()
	var id int64
	var data string
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-st.lines:
			if !ok {
				return 0, api.EventView{}, false
			}
			switch {
			case strings.HasPrefix(line, "id: "):
				id, _ = strconv.ParseInt(strings.TrimPrefix(line, "id: "), 10, 64)
			case strings.HasPrefix(line, "data: "):
				data = strings.TrimPrefix(line, "data: ")
			case line == "" && data != "":
				var ev api.EventView
				if err := json.Unmarshal([]byte(data), &ev); err != nil {
					st.t.Fatalf("event data %q: %v", data, err)
				}
				return id, ev, true
			}
		case <-deadline:
			return 0, api.EventView{}, false
		}
	}
}

func (s *streamServer) lastSeq(t *testing.T) int64 {
	t.Helper()
	return ok[api.EventPage](t, s.get(t, "/events?limit=1", s.op), http.StatusOK).LastSeq
}

func TestEventStream(t *testing.T) {
	t.Parallel()
	s := newStreamServer(t, api.Options{})
	s.newAgent("alice", "10", nil)

	t.Run("backlog from after=0 in order", func(t *testing.T) {
		last := s.lastSeq(t)
		st := s.open(t, "?after=0", nil)
		for want := int64(1); want <= last; want++ {
			id, ev, ok := st.next(5 * time.Second)
			if !ok || id != want || ev.Seq != want {
				t.Fatalf("event %d: got id %d seq %d ok=%v", want, id, ev.Seq, ok)
			}
		}
	})

	t.Run("new events arrive when the economy commits", func(t *testing.T) {
		st := s.open(t, "", nil) // no after: only what happens from now on
		last := s.lastSeq(t)
		start := time.Now()
		if _, err := s.eco.Mint(t.Context(), "alice", money.Credits(3), "live", nil); err != nil {
			t.Fatal(err)
		}
		// Polling is off (an hour): only the Changed hook can wake the stream.
		id, ev, ok := st.next(5 * time.Second)
		if !ok || id != last+1 || ev.Type != "ledger.transfer" || ev.AgentID != "alice" {
			t.Fatalf("got id %d %+v ok=%v, want the mint's ledger.transfer %d", id, ev, ok, last+1)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("the event took %s to arrive", took)
		}
	})

	t.Run("resume after Last-Event-ID", func(t *testing.T) {
		last := s.lastSeq(t)
		st := s.open(t, "?after=1", map[string]string{"Last-Event-ID": strconv.FormatInt(last-1, 10)})
		if id, _, ok := st.next(5 * time.Second); !ok || id != last {
			t.Fatalf("resumed at %d (ok=%v), want %d: Last-Event-ID must win over ?after=", id, ok, last)
		}
	})

	t.Run("filters", func(t *testing.T) {
		st := s.open(t, "?after=0&type=agent.&agent=alice", nil)
		id, ev, ok := st.next(5 * time.Second)
		if !ok || ev.Type != "agent.created" || ev.AgentID != "alice" || id != ev.Seq {
			t.Fatalf("filtered stream gave %+v ok=%v", ev, ok)
		}
		if _, err := s.eco.Mint(t.Context(), "alice", money.Credits(1), "", nil); err != nil {
			t.Fatal(err)
		}
		if _, ev, ok := st.next(300 * time.Millisecond); ok {
			t.Fatalf("a filtered stream sent %s", ev.Type)
		}
	})
}

func TestEventStreamRefusals(t *testing.T) {
	t.Parallel()
	s := newStreamServer(t, api.Options{})
	s.newAgent("bob", "10", nil)
	tok, _ := s.login("bob")
	wantProblem(t, s.do(t, req{Method: "GET", Path: "/events/stream"}), http.StatusUnauthorized, "bearer token")
	wantProblem(t, s.do(t, req{Method: "GET", Path: "/events/stream", Token: tok}), http.StatusForbidden, "operator")
	wantProblem(t, s.do(t, req{Method: "GET", Path: "/events/stream?after=-1", Token: s.op}), http.StatusUnprocessableEntity, "after")
	r := s.do(t, req{Method: "GET", Path: "/events/stream?after=x", Token: s.op})
	wantProblem(t, r, http.StatusUnprocessableEntity, "non-negative integer")
}

func TestEventStreamHeartbeatAndShutdown(t *testing.T) {
	t.Parallel()
	s := newStreamServer(t, api.Options{StreamHeartbeat: 30 * time.Millisecond})
	st := s.open(t, "", nil)
	deadline := time.After(5 * time.Second)
	for beat := false; !beat; {
		select {
		case line := <-st.lines:
			beat = line == ": heartbeat"
		case <-deadline:
			t.Fatal("no heartbeat comment on an idle stream")
		}
	}
	// Shutdown ends the stream: the body reaches EOF promptly.
	s.api.CloseStreams()
	deadline = time.After(5 * time.Second)
	for {
		select {
		case _, open := <-st.lines:
			if !open {
				return
			}
		case <-deadline:
			t.Fatal("the stream did not end after CloseStreams")
		}
	}
}

// The dashboard's session cookie lets the browser read operator routes (the
// stream, logs), never call a route that changes something.
func TestSessionReadsOnly(t *testing.T) {
	t.Parallel()
	session := func(r *http.Request) bool {
		c, err := r.Cookie("s")
		return err == nil && c.Value == "good"
	}
	s := newStreamServer(t, api.Options{Session: session})
	s.newAgent("carol", "10", nil)
	send := func(method, path, body, cookie string) *http.Response {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		r, _ := http.NewRequest(method, s.url+path, rd)
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: "s", Value: cookie})
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := send("GET", "/events?limit=1", "", "good"); r.StatusCode != http.StatusOK {
		t.Errorf("GET /events with a session: %d", r.StatusCode)
	}
	if r := send("GET", "/events?limit=1", "", "forged"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /events with a bad session: %d", r.StatusCode)
	}
	before := s.balance(t, "carol").Balance
	if r := send("POST", "/admin/mint", `{"agent_id":"carol","amount":5}`, "good"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /admin/mint with only a session cookie: %d, want 401", r.StatusCode)
	}
	if after := s.balance(t, "carol").Balance; after != before {
		t.Errorf("a cookie-only POST minted: %s → %s", before, after)
	}
}
