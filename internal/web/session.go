package web

// The operator's session: logging in with the operator token creates a
// random session id, kept only as its SHA-256 in memory, and sent as an
// HttpOnly, SameSite=Strict cookie. Each session has a CSRF token that every
// form carries; forms are also refused when the browser says they came from
// another origin. A restart logs everyone out.

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bpagents/bpagents/internal/logctx"
)

// CookieName is the session cookie's name.
const CookieName = "bpagents_session"

// maxFormBytes bounds a form body.
const maxFormBytes = 64 << 10

type session struct {
	expires time.Time
	csrf    string
	flash   flash
}

// flash is a one-time message shown on the next page.
type flash struct {
	Kind string // "ok" or "error"
	Text string
}

type sessions struct {
	mu     sync.Mutex
	byHash map[string]*session
	ttl    time.Duration
	now    func() time.Time
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{byHash: map[string]*session{}, ttl: ttl, now: now}
}

func randomToken() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func hashOf(v string) string {
	h := sha256.Sum256([]byte(v))
	return hex.EncodeToString(h[:])
}

// create starts a session and returns the cookie value that names it.
func (s *sessions) create() (string, *session) {
	id := randomToken()
	sess := &session{expires: s.now().Add(s.ttl), csrf: randomToken()}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k, v := range s.byHash {
		if now.After(v.expires) {
			delete(s.byHash, k)
		}
	}
	s.byHash[hashOf(id)] = sess
	return id, sess
}

// get returns the request's live session, or nil.
func (s *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.byHash[hashOf(c.Value)]
	if sess == nil || s.now().After(sess.expires) {
		return nil
	}
	return sess
}

func (s *sessions) delete(r *http.Request) {
	if c, err := r.Cookie(CookieName); err == nil {
		s.mu.Lock()
		delete(s.byHash, hashOf(c.Value))
		s.mu.Unlock()
	}
}

func (s *sessions) setFlash(sess *session, kind, text string) {
	s.mu.Lock()
	sess.flash = flash{Kind: kind, Text: text}
	s.mu.Unlock()
}

func (s *sessions) takeFlash(sess *session) flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := sess.flash
	sess.flash = flash{}
	return f
}

// Authenticated reports whether r carries a live operator session. The API
// uses it to let the dashboard's scripts read operator routes (GET only).
func (d *Dashboard) Authenticated(r *http.Request) bool { return d.sessions.get(r) != nil }

// sameOrigin refuses requests a browser marks as coming from another site.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

// safeNext keeps a post-login redirect on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	d.render(w, r, "login", "Log in", map[string]any{"Next": safeNext(r.URL.Query().Get("next")), "Error": ""})
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		d.fail(w, r, http.StatusForbidden, "This form was sent from another site.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		d.fail(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	token := strings.TrimSpace(r.PostForm.Get("token"))
	if subtle.ConstantTimeCompare([]byte(token), []byte(d.opt.OperatorToken)) != 1 {
		logctx.From(r.Context(), d.log).Warn("dashboard login refused: wrong operator token", "remote", r.RemoteAddr)
		d.renderStatus(w, r, http.StatusUnauthorized, "login", "Log in", map[string]any{"Next": next,
			"Error": "That is not the operator token. It is in <home>/data/operator.token on the server."})
		return
	}
	id, _ := d.sessions.create()
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/", MaxAge: int(d.opt.SessionTTL.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	logctx.From(r.Context(), d.log).Info("dashboard login", "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request, _ *session) {
	d.sessions.delete(r)
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// form guards a state-changing form: same origin, a live session, and that
// session's CSRF token in the body.
func (d *Dashboard) form(fn func(w http.ResponseWriter, r *http.Request, s *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !sameOrigin(r) {
			d.fail(w, r, http.StatusForbidden, "This form was sent from another site.")
			return
		}
		sess := d.sessions.get(r)
		if sess == nil {
			http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			d.fail(w, r, http.StatusBadRequest, "The form could not be read.")
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(sess.csrf)) != 1 {
			logctx.From(r.Context(), d.log).Warn("dashboard form refused: CSRF token missing or wrong", "path", r.URL.Path)
			d.fail(w, r, http.StatusForbidden, "This form's security token is missing or stale: reload the page and try again.")
			return
		}
		fn(w, r, sess)
	}
}
