// Package api owns the HTTP surface: the route table, authentication of
// agents (execution tokens) and the operator (operator token), strict request
// decoding, problem+json errors, idempotency keys, and the OpenAPI document
// generated from the same route table and Go types the handlers use.
//
// Handlers decode, validate, call the economy and encode; they never touch
// the store's write path or the ledger directly, and never trust a body field
// to say who the caller is.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/intelligence"
	"github.com/bpagents/bpagents/internal/logctx"
)

// Options configure a Server.
type Options struct {
	OperatorToken string
	MaxBody       int64
	MaxSpawnBody  int64
	Version       string
	// Status reports runtime figures (sandbox, running executions, runners)
	// for /status.
	Status func(ctx context.Context) RuntimeStatus
	// KillExecution stops a running execution (operator action).
	KillExecution func(ctx context.Context, id string) error

	// Changes wakes /events/stream after each committed write (wire the
	// economy's Changed hook to its Notify); without it streams only poll.
	Changes *Changes
	// StreamPoll and StreamHeartbeat tune /events/stream: how often it looks
	// for events when nothing woke it (default 2s), and how often it sends a
	// comment to keep idle connections open (default 15s).
	StreamPoll, StreamHeartbeat time.Duration
	// Session reports whether a request carries a valid operator session
	// (the dashboard's cookie). It authenticates only GET operator routes:
	// every change still needs the bearer token or a CSRF-checked form.
	Session func(r *http.Request) bool
	// Dashboard, when set, serves the HTML dashboard at / and under /ui/.
	Dashboard http.Handler
	// Metrics, when set, serves GET /metrics (Prometheus text format).
	Metrics http.Handler
	// Observe, when set, records each request's latency under its route
	// pattern (never the raw path).
	Observe func(route string, status int, took time.Duration)
	// Intelligence is the metered model proxy (nil: inference unavailable).
	Intelligence *intelligence.Proxy
}

// RuntimeStatus is what the runtime adds to /status.
type RuntimeStatus struct {
	// Role is what the answering process runs (api, scheduler, runner, all).
	Role         string  `json:"role"`
	Sandbox      string  `json:"sandbox"`
	SandboxNotes string  `json:"sandbox_notes"`
	Running      int     `json:"running"`
	Queued       int     `json:"queued"`
	CycleSeconds float64 `json:"cycle_seconds"`
	// Runners are the active runner processes; Leader the scheduler that
	// clears the market.
	Runners []economy.RunnerView `json:"runners"`
	Leader  string               `json:"leader"`
}

// Server serves the API.
type Server struct {
	eco           *economy.Economy
	log           *slog.Logger
	operatorToken string
	maxBody       int64
	maxSpawnBody  int64
	opt           Options
	routes        []Route
	mux           *http.ServeMux
	started       time.Time

	openapiOnce sync.Once
	openapi     []byte

	// done ends every event stream (CloseStreams, on shutdown).
	done      chan struct{}
	closeOnce sync.Once
}

// New builds the server and its route table.
func New(eco *economy.Economy, log *slog.Logger, opt Options) *Server {
	s := &Server{eco: eco, log: log, operatorToken: opt.OperatorToken, maxBody: opt.MaxBody,
		maxSpawnBody: opt.MaxSpawnBody, opt: opt, started: time.Now(), done: make(chan struct{})}
	if s.maxBody == 0 {
		s.maxBody = 1 << 20
	}
	if s.maxSpawnBody == 0 {
		s.maxSpawnBody = 8 << 20
	}
	if s.opt.Status == nil {
		s.opt.Status = func(context.Context) RuntimeStatus { return RuntimeStatus{} }
	}
	s.routes = append(s.routeTable(), s.inferenceRoutes()...)
	s.mux = http.NewServeMux()
	for _, rt := range s.routes {
		rt := rt
		s.mux.HandleFunc(rt.Method+" "+rt.Path, func(w http.ResponseWriter, r *http.Request) { rt.serve(s, w, r) })
	}
	s.mux.Handle("GET /docs", s.DocsHandler())
	if opt.Dashboard != nil {
		s.mux.Handle("GET /{$}", opt.Dashboard)
		s.mux.Handle("/ui/", opt.Dashboard)
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := s.methodsFor(r.URL.Path); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeProblem(w, problemOf(refuse(codeMethodNotAllowed, "%s does not accept %s, only %s; see /openapi.json",
				r.URL.Path, r.Method, strings.Join(allow, ", ")), s.log, r))
			return
		}
		writeProblem(w, problemOf(refuse(codeMethodMissing, "no route for %s %s; see /openapi.json", r.Method, r.URL.Path), s.log, r))
	})
	return s
}

// methodsFor lists the methods of the routes whose path pattern matches
// path, so that a known path called with the wrong method gets 405, not 404.
// (The catch-all "/" keeps ServeMux from answering 405 itself.)
func (s *Server) methodsFor(path string) []string {
	var out []string
	got := strings.Split(path, "/")
	for _, rt := range s.routes {
		want := strings.Split(rt.Path, "/")
		if len(want) != len(got) || slices.Contains(out, rt.Method) {
			continue
		}
		match := true
		for i := range want {
			wild := strings.HasPrefix(want[i], "{") && got[i] != ""
			if !wild && want[i] != got[i] {
				match = false
				break
			}
		}
		if match {
			out = append(out, rt.Method)
		}
	}
	if slices.Contains(out, "GET") {
		out = append(out, "HEAD")
	}
	return out
}

// Routes returns the route table.
func (s *Server) Routes() []Route { return s.routes }

// ServeHTTP logs each request with an id and dispatches it. The request's
// context carries a logger with the id (logctx), so every line logged while
// handling it names the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get("X-Request-Id")
	if !validRequestID(id) {
		var b [8]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	w.Header().Set("X-Request-Id", id)
	log := s.log.With("request_id", id)
	r = r.WithContext(logctx.With(r.Context(), log))
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		if p := recover(); p != nil {
			log.Error("handler panic", "path", r.URL.Path, "panic", fmt.Sprint(p))
			writeProblem(rec, Problem{Type: "urn:bpagents:problem:internal", Title: "Internal Server Error",
				Status: http.StatusInternalServerError, Detail: "internal error; the operator's log has the cause"})
		}
		took := time.Since(start)
		level := slog.LevelDebug
		if rec.status >= 500 {
			level = slog.LevelError
		}
		log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path,
			"status", rec.status, "duration_ms", float64(took.Microseconds())/1000)
		if s.opt.Observe != nil {
			route := r.Pattern // set by the mux: "GET /agents/{id}", never the raw path
			if route == "" || route == "/" {
				route = "unmatched"
			}
			s.opt.Observe(route, rec.status, took)
		}
	}()
	s.mux.ServeHTTP(rec, r)
}

// validRequestID accepts a client's X-Request-Id only when it is short and
// printable, so it can be logged as is.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Flush lets streaming handlers flush through the recorder.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// Health is the liveness answer.
type Health struct {
	Status  string `json:"status"`
	Version string `json:"version"`
	Uptime  string `json:"uptime"`
}

// StatusView summarises the system for operators and the CLI.
type StatusView struct {
	Cycle       int64                         `json:"cycle"`
	Alive       int                           `json:"alive"`
	Dead        int                           `json:"dead"`
	PendingBids int                           `json:"pending_bids"`
	Money       economy.MoneyTotals           `json:"money"`
	Runtime     RuntimeStatus                 `json:"runtime"`
	Markets     map[string]economy.MarketView `json:"markets"`
}
