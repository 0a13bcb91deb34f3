package api

// The live audit log: GET /events/stream sends new events as Server-Sent
// Events. A stream wakes when the economy commits a write (Changes, fed by
// economy's Changed hook), polls as a fallback, sends heartbeat comments on
// idle connections, resumes after Last-Event-ID or ?after=, and ends when the
// client goes away or the server shuts down (CloseStreams).
//
// Events go out in seq order and only up to the store's settled horizon
// (store.SettledOf): on PostgreSQL an event can become visible after one with
// a higher seq, and a stream that had sent the higher one would never send
// the lower. Events past the horizon wait (a few milliseconds, while the
// transactions that took lower numbers finish), so a client resuming after
// the last id it saw misses nothing.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/logctx"
	"github.com/bpagents/bpagents/internal/store"
)

// Changes wakes every waiter when something changed. Notify never blocks, so
// it can be the economy's Changed hook, called after every committed write.
type Changes struct {
	mu sync.Mutex
	ch chan struct{}
}

// NewChanges returns a Changes with no waiters.
func NewChanges() *Changes { return &Changes{ch: make(chan struct{})} }

// Notify wakes everyone waiting on the channel Wait returned.
func (c *Changes) Notify() {
	c.mu.Lock()
	close(c.ch)
	c.ch = make(chan struct{})
	c.mu.Unlock()
}

// Wait returns a channel closed by the next Notify. Take it before reading
// the state it guards, so that no change slips between read and wait.
func (c *Changes) Wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch
}

// CloseStreams ends every open event stream; the HTTP server's shutdown
// calls it (http.Server.RegisterOnShutdown), since Shutdown itself waits for
// streaming handlers instead of ending them.
func (s *Server) CloseStreams() { s.closeOnce.Do(func() { close(s.done) }) }

// Stream tuning.
const (
	streamBatch = 500
	// streamSpacing bounds how often one stream queries the log when writes
	// come in quick succession: wake-ups within it are coalesced.
	streamSpacing = 50 * time.Millisecond
	// streamHeld is how soon a stream looks again when events wait for the
	// horizon.
	streamHeld = 20 * time.Millisecond
)

// rawRoute builds a route whose handler writes the answer itself (a stream,
// a foreign format). It authenticates like every other route; resp is the
// type documented for the answer, of media type rt.ContentType.
func rawRoute(rt Route, resp reflect.Type, fn http.HandlerFunc) Route {
	rt.Response = resp
	if rt.Status == 0 {
		rt.Status = http.StatusOK
	}
	rt.serve = func(s *Server, w http.ResponseWriter, r *http.Request) {
		if _, err := s.authenticate(r, rt.Auth); err != nil {
			writeError(w, r, s.log, err)
			return
		}
		fn(w, r)
	}
	return rt
}

// streamStart is where a stream begins: Last-Event-ID (a reconnecting
// EventSource) wins over ?after=; with neither, only events committed from
// now on are sent.
func (s *Server) streamStart(r *http.Request) (int64, error) {
	for _, v := range []struct{ name, val string }{
		{"Last-Event-ID header", r.Header.Get("Last-Event-ID")},
		{"query parameter after", r.URL.Query().Get("after")},
	} {
		if v.val == "" {
			continue
		}
		n, err := strconv.ParseInt(v.val, 10, 64)
		if err != nil || n < 0 {
			return 0, refuse(economy.CodeInvalid, "%s: %q is not a non-negative integer", v.name, v.val)
		}
		return n, nil
	}
	// From now on: the newest event, or the horizon if that is lower (an
	// event below the newest may still be about to appear).
	h, err := store.SettledOf(r.Context(), s.eco.Store())
	if err != nil {
		return 0, err
	}
	var last int64
	err = s.eco.Store().Read(r.Context(), func(tx store.Tx) error {
		var err error
		last, err = tx.LastEventSeq(r.Context())
		return err
	})
	return min(last, h.EventSeq), err
}

func (s *Server) eventStream(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	after, err := s.streamStart(r)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	f := store.EventFilter{AgentID: r.URL.Query().Get("agent"), Type: r.URL.Query().Get("type"), Limit: streamBatch}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	// Tell EventSource to reconnect quickly; it resends the last id it saw.
	if _, err := fmt.Fprintf(w, "retry: 2000\n: streaming events after %d\n\n", after); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}

	poll, beat := s.opt.StreamPoll, s.opt.StreamHeartbeat
	if poll <= 0 {
		poll = 2 * time.Second
	}
	if beat <= 0 {
		beat = 15 * time.Second
	}
	var wake <-chan struct{}
	pollT := time.NewTicker(poll)
	defer pollT.Stop()
	beatT := time.NewTicker(beat)
	defer beatT.Stop()
	log := logctx.From(ctx, s.log)
	for {
		if s.opt.Changes != nil {
			wake = s.opt.Changes.Wait() // before reading, so no commit is missed
		}
		queried := time.Now()
		sent, held, err := s.sendEvents(w, r, &f, &after)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, errClientGone) {
				log.Warn("event stream failed", "err", err)
			}
			return
		}
		if sent > 0 {
			if rc.Flush() != nil {
				return
			}
			beatT.Reset(beat)
			if sent == streamBatch {
				continue // more are waiting
			}
		}
		var soon <-chan time.Time
		if held {
			soon = time.After(streamHeld)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case <-soon:
		case <-wake:
			// Coalesce bursts of commits into one query.
			if d := streamSpacing - time.Since(queried); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				case <-s.done:
					return
				}
			}
		case <-pollT.C:
		case <-beatT.C:
			if _, err := fmt.Fprint(w, ": heartbeat\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// errClientGone marks a write to a connection that is no longer there.
var errClientGone = errors.New("client went away")

// sendEvents writes every settled event after *after matching f and
// advances *after; held reports events that wait for the horizon.
func (s *Server) sendEvents(w http.ResponseWriter, r *http.Request, f *store.EventFilter, after *int64) (sent int, held bool, err error) {
	ctx := r.Context()
	h, err := store.SettledOf(ctx, s.eco.Store()) // before the read it bounds
	if err != nil {
		return 0, false, err
	}
	f.AfterSeq = *after
	var list []store.Event
	err = s.eco.Store().Read(ctx, func(tx store.Tx) error {
		var err error
		list, err = tx.ListEvents(ctx, *f)
		return err
	})
	if err != nil {
		return 0, false, err
	}
	for _, e := range list {
		if e.Seq > h.EventSeq {
			return sent, true, nil
		}
		data, err := json.Marshal(eventView(e))
		if err != nil {
			return sent, false, fmt.Errorf("event %d: %w", e.Seq, err)
		}
		// One data line: the JSON has no raw newlines.
		if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", e.Seq, data); err != nil {
			return sent, false, errClientGone
		}
		*after = e.Seq
		sent++
	}
	return sent, false, nil
}

// metricsText serves the Prometheus exposition when metrics are enabled.
func (s *Server) metricsText(w http.ResponseWriter, r *http.Request) {
	if s.opt.Metrics == nil {
		writeError(w, r, s.log, refuse(economy.CodeNotFound, "this server exports no metrics"))
		return
	}
	s.opt.Metrics.ServeHTTP(w, r)
}
