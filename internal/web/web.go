// Package web owns the operator dashboard: HTML pages rendered with
// html/template from the economy's read views (overview, live event feed,
// agents and their lineage tree, one agent, markets, the attention queue),
// the operator's login session (an HttpOnly, SameSite=Strict cookie), and the
// CSRF-checked forms that rate prompts and mint credits. Its stylesheet,
// script and templates are embedded in the binary: it loads nothing from
// any other host and works with no network.
//
// Web never writes to the store: every change goes through an economy
// method, exactly as the API's would. It never serves operator-only data
// (events, executions, logs, prompts, bids, messages, ledger history) to a
// request without a valid session, and never accepts a form without its
// session's CSRF token.
package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/logctx"
	"github.com/bpagents/bpagents/internal/market"
)

//go:embed assets
var assets embed.FS

// RuntimeInfo is what the runtime adds to the overview.
type RuntimeInfo struct {
	Sandbox      string
	Running      int
	CycleSeconds float64
}

// Options configure a Dashboard.
type Options struct {
	Economy       *economy.Economy
	OperatorToken string
	Log           *slog.Logger
	Version       string
	// Runtime reports the sandbox and running executions (optional).
	Runtime func(ctx context.Context) RuntimeInfo
	// SessionTTL is how long a login lasts (default 12h).
	SessionTTL time.Duration
	// Now replaces the clock (tests).
	Now func() time.Time
}

// Dashboard serves the dashboard's pages, forms and assets.
type Dashboard struct {
	eco      *economy.Economy
	log      *slog.Logger
	opt      Options
	mux      *http.ServeMux
	pages    map[string]*template.Template
	sessions *sessions
}

// New builds the dashboard. Mount it at "GET /{$}" and "/ui/".
func New(opt Options) (*Dashboard, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Runtime == nil {
		opt.Runtime = func(context.Context) RuntimeInfo { return RuntimeInfo{} }
	}
	if opt.SessionTTL <= 0 {
		opt.SessionTTL = 12 * time.Hour
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.OperatorToken == "" {
		return nil, fmt.Errorf("web: an operator token is required")
	}
	d := &Dashboard{eco: opt.Economy, log: opt.Log, opt: opt, mux: http.NewServeMux(),
		sessions: newSessions(opt.SessionTTL, opt.Now)}
	var err error
	if d.pages, err = parsePages(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(assets, "assets/static")
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	files := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	d.mux.Handle("GET /ui/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		files.ServeHTTP(w, r)
	}))
	d.mux.HandleFunc("GET /{$}", d.overview)
	d.mux.HandleFunc("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/", http.StatusFound) })
	d.mux.HandleFunc("GET /ui/events", d.operatorOnly(d.events))
	d.mux.HandleFunc("GET /ui/agents", d.agents)
	d.mux.HandleFunc("GET /ui/agents/{id}", d.agent)
	d.mux.HandleFunc("POST /ui/agents/{id}/mint", d.form(d.mint))
	d.mux.HandleFunc("GET /ui/markets", d.markets)
	d.mux.HandleFunc("GET /ui/attention", d.operatorOnly(d.attention))
	d.mux.HandleFunc("POST /ui/attention/rate", d.form(d.rate))
	d.mux.HandleFunc("GET /ui/login", d.loginPage)
	d.mux.HandleFunc("POST /ui/login", d.login)
	d.mux.HandleFunc("POST /ui/logout", d.form(d.logout))
	d.mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		d.fail(w, r, http.StatusNotFound, "There is no dashboard page at "+r.URL.Path+".")
	})
	return d, nil
}

// ServeHTTP serves a dashboard request with the headers every page gets.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Everything comes from this origin; no inline script or style runs.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	d.mux.ServeHTTP(w, r)
}

// page is what every template gets.
type page struct {
	Title    string
	Nav      string
	Operator bool
	CSRF     string
	Flash    flash
	Version  string
	Path     string
	Data     any
}

// render writes a page with status 200.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, name, title string, data any) {
	d.renderStatus(w, r, http.StatusOK, name, title, data)
}

// renderStatus writes a page; a template error is logged and answered with 500.
func (d *Dashboard) renderStatus(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	s := d.sessions.get(r)
	p := page{Title: title, Nav: name, Version: d.opt.Version, Path: r.URL.RequestURI(), Data: data}
	if s != nil {
		p.Operator, p.CSRF, p.Flash = true, s.csrf, d.sessions.takeFlash(s)
	}
	t, ok := d.pages[name]
	if !ok {
		panic("web: no page " + name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		logctx.From(r.Context(), d.log).Error("rendering a dashboard page", "page", name, "err", err)
		http.Error(w, "the page could not be rendered; the operator's log has the cause", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// fail answers with an error page.
func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	d.renderStatus(w, r, status, "error", http.StatusText(status), map[string]any{"Status": status, "Message": msg})
}

// failErr answers an error from the economy: its detail when it is a
// refusal, a generic message (and a log line) otherwise.
func (d *Dashboard) failErr(w http.ResponseWriter, r *http.Request, err error) {
	if e, ok := economy.AsError(err); ok {
		status := http.StatusUnprocessableEntity
		if e.Code == economy.CodeNotFound {
			status = http.StatusNotFound
		}
		d.fail(w, r, status, e.Detail)
		return
	}
	if r.Context().Err() != nil {
		return
	}
	logctx.From(r.Context(), d.log).Error("dashboard request failed", "path", r.URL.Path, "err", err)
	d.fail(w, r, http.StatusInternalServerError, "Something failed; the operator's log has the cause.")
}

// operatorOnly sends visitors without a session to the login page.
func (d *Dashboard) operatorOnly(fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if d.sessions.get(r) == nil {
			http.Redirect(w, r, "/ui/login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		fn(w, r)
	}
}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"pct":     func(f float64) string { return fmt.Sprintf("%.0f%%", f*100) },
		"barw":    func(f float64) string { return fmt.Sprintf("%.1f", math.Max(0, math.Min(1, f))*100) },
		"when":    when,
		"clock":   clock,
		"ago":     ago,
		"bundle":  bundleText,
		"json":    toJSON,
		"compact": compact,
		"short":   short,
		"mb":      func(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) },
	}
	layout, err := template.New("layout").Funcs(funcs).ParseFS(assets, "assets/templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("web: layout: %w", err)
	}
	names, err := fs.Glob(assets, "assets/templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "assets/templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(assets, n)
		if err != nil {
			return nil, fmt.Errorf("web: %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// when formats an RFC 3339 time (or a time.Time) to the second, in UTC.
func when(v any) string {
	t, ok := asTime(v)
	if !ok {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

// clock formats a time as hh:mm:ss UTC.
func clock(v any) string {
	t, ok := asTime(v)
	if !ok {
		return ""
	}
	return t.UTC().Format("15:04:05")
}

func ago(v any) string {
	t, ok := asTime(v)
	if !ok {
		return ""
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "in " + (-d).Round(time.Second).String()
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func asTime(v any) (time.Time, bool) {
	switch x := v.(type) {
	case time.Time:
		return x, !x.IsZero()
	case string:
		t, err := time.Parse(time.RFC3339Nano, x)
		return t, err == nil
	}
	return time.Time{}, false
}

func bundleText(b market.Bundle) string {
	parts := []string{market.CPU.Format(b.CPUMillis) + " cpu", fmt.Sprintf("%d MB", b.MemoryMB), fmt.Sprintf("%d s", b.DurationSeconds)}
	if b.Tokens > 0 {
		parts = append(parts, fmt.Sprintf("%d tokens", b.Tokens))
	}
	if b.Attention > 0 {
		parts = append(parts, "attention")
	}
	return strings.Join(parts, " · ")
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// compact renders an event's data as key=value pairs, keys sorted.
func compact(raw json.RawMessage) string {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return string(raw)
	}
	return compactMap(m)
}

// short cuts s to n runes.
func short(n int, s string) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

// ctxTimeout bounds the reads of one page.
func ctxTimeout(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 10*time.Second)
}
