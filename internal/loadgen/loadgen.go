// Package loadgen drives a running bpagents API over HTTP with many
// concurrent agent clients — transfers, bids, cancels, messages, spawns and
// balance reads, with idempotent retries mixed in (the same request resent
// with the same Idempotency-Key, one after the other or at the same moment) —
// and measures every answer: status, latency per operation, and whether each
// retry got the first answer back.
//
// It is a client only: it knows the API's paths and JSON shapes, never the
// server's internals, and never reads the database. Verify checks afterwards,
// through the operator's API, that no retried request moved money twice.
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Agent is an identity the load acts as: an agent whose execution is running,
// with its execution token.
type Agent struct {
	ID    string
	Token string
}

// Op names an operation of the load.
type Op string

// The operations.
const (
	OpTransfer Op = "transfer"       // POST /economic/transfer to another load agent (memo = the key)
	OpBid      Op = "bid"            // POST /market/bid for a small bundle
	OpCancel   Op = "cancel"         // DELETE /market/bid/{id} of one of the client's own pending bids
	OpMessage  Op = "message"        // POST /social/message to another load agent
	OpSpawn    Op = "spawn"          // POST /social/spawn with a one-file project and a tiny endowment
	OpBalance  Op = "balance"        // GET /economic/balance (the caller's own, authenticated)
	OpPublic   Op = "public-balance" // GET /economic/balance/{id} (no token)
)

// mutating reports whether op changes state (and so carries an Idempotency-Key).
func (op Op) mutating() bool { return op != OpBalance && op != OpPublic }

// Mix weighs the operations: each request picks op with probability
// Mix[op] / sum. A cancel picked while the client has no pending bid becomes
// a bid.
type Mix map[Op]int

// DefaultMix is the load test's mixture.
var DefaultMix = Mix{OpTransfer: 30, OpBid: 15, OpCancel: 10, OpMessage: 15, OpSpawn: 5, OpBalance: 20, OpPublic: 5}

// Config describes one run.
type Config struct {
	// URL is the API's base URL (loopback).
	URL string
	// Agents are the identities; client i acts as Agents[i % len(Agents)].
	Agents []Agent
	// Clients is the number of concurrent clients (default len(Agents)).
	Clients int
	// Duration bounds the run in time; Requests, when > 0, in count (each
	// HTTP request counts, retries included).
	Duration time.Duration
	Requests int64
	// Mix weighs the operations (default DefaultMix).
	Mix Mix
	// RetryPercent of the mutating requests are sent again with the same
	// Idempotency-Key; ConcurrentPercent of those send 2 or 3 copies at the
	// same moment instead of one after the other.
	RetryPercent      int
	ConcurrentPercent int
	// Seed makes the choices repeatable (the server's timing is not).
	Seed uint64
	// Timeout bounds one request (default 60 s).
	Timeout time.Duration
	// BidBundle is the JSON bundle bids ask for; BidAmount and SpawnCredits
	// are decimal credit amounts as the API takes them (transfers move
	// 0.000001 to 0.009999 credits).
	BidBundle    string
	BidAmount    string
	SpawnCredits string
	// MaxPendingBids is how many pending bids a client keeps at most (the
	// server's max_pending_bids); beyond it the client cancels.
	MaxPendingBids int
	// Unkeyed sends mutating requests without an Idempotency-Key (and so
	// never retries them): the throughput benchmarks' plain requests.
	Unkeyed bool
}

func (c *Config) defaults() error {
	if c.URL == "" || len(c.Agents) == 0 {
		return errors.New("loadgen: URL and at least one agent are required")
	}
	if c.Duration <= 0 && c.Requests <= 0 {
		return errors.New("loadgen: a run needs a duration or a request count")
	}
	if c.Duration <= 0 {
		c.Duration = 24 * time.Hour
	}
	if c.Clients <= 0 {
		c.Clients = len(c.Agents)
	}
	if c.Mix == nil {
		c.Mix = DefaultMix
	}
	if c.Timeout <= 0 {
		c.Timeout = 60 * time.Second
	}
	if c.BidBundle == "" {
		c.BidBundle = `{"cpu":0.01,"memory_mb":1,"duration_seconds":1}`
	}
	if c.BidAmount == "" {
		c.BidAmount = "0.5"
	}
	if c.SpawnCredits == "" {
		c.SpawnCredits = "0.01"
	}
	if c.MaxPendingBids <= 0 {
		c.MaxPendingBids = 8
	}
	return nil
}

// Run sends the load until Duration passes, Requests were sent or ctx ends,
// and reports what came back. Every goroutine it starts has ended when it
// returns. An error means the run could not be made, not that the server
// misbehaved: the report says that.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	var weights []weighted
	for _, op := range slices.Sorted(maps.Keys(cfg.Mix)) {
		if w := cfg.Mix[op]; w > 0 {
			weights = append(weights, weighted{op, w})
		}
	}
	if len(weights) == 0 {
		return nil, errors.New("loadgen: the mix has no operation with a positive weight")
	}
	tr := &http.Transport{
		MaxIdleConns:        cfg.Clients * 4,
		MaxIdleConnsPerHost: cfg.Clients * 4,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	run := &runner{cfg: cfg, weights: weights, http: &http.Client{Transport: tr, Timeout: cfg.Timeout},
		keys: map[string]*KeyRecord{}}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	clients := make([]*client, cfg.Clients)
	for i := range clients {
		clients[i] = &client{run: run, n: i, agent: cfg.Agents[i%len(cfg.Agents)],
			rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i))), lat: map[Op][]time.Duration{}}
		wg.Add(1)
		go func(c *client) {
			defer wg.Done()
			c.loop(ctx, runCtx)
		}(clients[i])
	}
	wg.Wait()
	return run.report(clients, time.Since(start)), nil
}

type weighted struct {
	op Op
	w  int
}

// runner is the state the clients share.
type runner struct {
	cfg     Config
	weights []weighted
	http    *http.Client
	sent    atomic.Int64

	mu   sync.Mutex
	keys map[string]*KeyRecord
	// serverErrors keeps the first few 5xx answers for the report.
	serverErrors []string
	transport    []string
}

// KeyRecord is what came back for one Idempotency-Key.
type KeyRecord struct {
	Op    Op
	Agent string
	// Sent counts the requests sent with the key; Concurrent tells whether
	// the copies went out at the same moment.
	Sent       int
	Concurrent bool
	// OK is the first successful answer's body; Statuses every status seen,
	// in the order the answers arrived.
	OK       []byte
	Statuses []int
	// Violation, when set, says how the answers broke the idempotency
	// promise.
	Violation string
}

// client is one concurrent agent client.
type client struct {
	run   *runner
	n     int
	agent Agent
	rng   *rand.Rand
	seq   int
	// bids are the client's own bids it believes pending, for cancels.
	bids []string
	lat  map[Op][]time.Duration
	// statuses counts answers per op and status class.
	counts []opCount
}

type opCount struct {
	op     Op
	status int
}

// more reports whether the client may send another request, counting it.
func (c *client) more(stop context.Context) bool {
	if stop.Err() != nil {
		return false
	}
	if max := c.run.cfg.Requests; max > 0 && c.run.sent.Add(1) > max {
		return false
	}
	return true
}

// loop sends requests until stop ends; requests in flight then finish
// (under ctx), so that every request sent is answered and recorded.
func (c *client) loop(ctx, stop context.Context) {
	for c.more(stop) {
		op := c.pick()
		req := c.build(op)
		if req.key == "" || c.rng.IntN(100) >= c.run.cfg.RetryPercent {
			c.single(ctx, op, req)
			continue
		}
		if c.rng.IntN(100) < c.run.cfg.ConcurrentPercent {
			c.concurrent(ctx, op, req, 2+c.rng.IntN(2))
		} else {
			c.sequential(ctx, op, req, 1+c.rng.IntN(2))
		}
	}
}

func (c *client) pick() Op {
	total := 0
	for _, w := range c.run.weights {
		total += w.w
	}
	n := c.rng.IntN(total)
	for _, w := range c.run.weights {
		if n < w.w {
			switch {
			case w.op == OpCancel && len(c.bids) == 0:
				return OpBid
			case w.op == OpBid && len(c.bids) >= c.run.cfg.MaxPendingBids:
				return OpCancel
			}
			return w.op
		}
		n -= w.w
	}
	return c.run.weights[0].op
}

// request is one prepared API call.
type request struct {
	method, path string
	body         []byte
	token        string
	key          string
	bid          string // the bid a cancel withdraws
}

func (c *client) other() string {
	agents := c.run.cfg.Agents
	for {
		a := agents[c.rng.IntN(len(agents))]
		if a.ID != c.agent.ID || len(agents) == 1 {
			return a.ID
		}
	}
}

func (c *client) build(op Op) request {
	cfg := &c.run.cfg
	r := request{token: c.agent.Token}
	if op.mutating() && !cfg.Unkeyed {
		c.seq++
		r.key = fmt.Sprintf("lg-%d-%d-%d", cfg.Seed, c.n, c.seq)
	}
	switch op {
	case OpTransfer:
		amount := fmt.Sprintf("0.%06d", 1+c.rng.IntN(9999))
		r.method, r.path = http.MethodPost, "/economic/transfer"
		r.body = fmt.Appendf(nil, `{"to_id":%q,"amount":%s,"memo":%q}`, c.other(), amount, r.key) // memo = key: Verify counts transfers per key
	case OpBid:
		r.method, r.path = http.MethodPost, "/market/bid"
		r.body = fmt.Appendf(nil, `{"amount":%s,"bundle":%s}`, cfg.BidAmount, cfg.BidBundle)
	case OpCancel:
		i := c.rng.IntN(len(c.bids))
		r.bid = c.bids[i]
		c.bids = slices.Delete(c.bids, i, i+1)
		r.method, r.path = http.MethodDelete, "/market/bid/"+r.bid
	case OpMessage:
		r.method, r.path = http.MethodPost, "/social/message"
		r.body = fmt.Appendf(nil, `{"to_id":%q,"content":"load %s"}`, c.other(), r.key)
	case OpSpawn:
		r.method, r.path = http.MethodPost, "/social/spawn"
		r.body = fmt.Appendf(nil, `{"initial_credits":%s,"files":{"main.py":"print('child of %s')\n"}}`,
			cfg.SpawnCredits, c.agent.ID)
	case OpBalance:
		r.method, r.path = http.MethodGet, "/economic/balance"
	case OpPublic:
		r.method, r.path, r.token = http.MethodGet, "/economic/balance/"+c.other(), ""
	}
	return r
}

// answer is one response.
type answer struct {
	status int
	body   []byte
	took   time.Duration
	err    error
}

func (c *client) do(ctx context.Context, r request) answer {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, c.run.cfg.URL+r.path, body)
	if err != nil {
		return answer{err: err}
	}
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	if r.key != "" {
		req.Header.Set("Idempotency-Key", r.key)
	}
	start := time.Now()
	resp, err := c.run.http.Do(req)
	if err != nil {
		return answer{err: err, took: time.Since(start)}
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return answer{status: resp.StatusCode, body: data, took: time.Since(start), err: err}
}

// note records an answer's latency and status and keeps samples of failures.
// It reports whether the answer counts (a request cut short by the end of the
// run does not).
func (c *client) note(ctx context.Context, op Op, a answer) bool {
	if a.err != nil {
		if ctx.Err() != nil {
			return false // the caller gave up while it was in flight
		}
		c.counts = append(c.counts, opCount{op, 0})
		c.run.sample(&c.run.transport, fmt.Sprintf("%s: %v", op, a.err))
		return true
	}
	c.lat[op] = append(c.lat[op], a.took)
	c.counts = append(c.counts, opCount{op, a.status})
	if a.status >= 500 {
		c.run.sample(&c.run.serverErrors, fmt.Sprintf("%s: %d %s", op, a.status, strings.TrimSpace(string(a.body))))
	}
	return true
}

func (r *runner) sample(list *[]string, s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(*list) < 20 {
		*list = append(*list, s)
	}
}

func (c *client) single(ctx context.Context, op Op, r request) {
	a := c.do(ctx, r)
	if !c.note(ctx, op, a) {
		return
	}
	c.learn(op, a)
	if r.key != "" {
		c.record(op, r, false, []answer{a})
	}
}

// sequential sends r, then n more times with the same key, each after the
// previous answer arrived.
func (c *client) sequential(ctx context.Context, op Op, r request, n int) {
	var got []answer
	for i := 0; i <= n; i++ {
		a := c.do(ctx, r)
		if !c.note(ctx, op, a) {
			break
		}
		got = append(got, a)
	}
	if len(got) == 0 {
		return
	}
	c.learn(op, got[0])
	c.record(op, r, false, got)
}

// concurrent sends n copies of r at the same moment.
func (c *client) concurrent(ctx context.Context, op Op, r request, n int) {
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = c.do(ctx, r)
		}()
	}
	wg.Wait()
	var got []answer
	for _, a := range answers {
		if c.note(ctx, op, a) {
			got = append(got, a)
		}
	}
	if len(got) == 0 {
		return
	}
	for _, a := range got {
		if a.err == nil && a.status < 300 {
			c.learn(op, a)
			break
		}
	}
	c.record(op, r, true, got)
}

// learn keeps track of the client's own pending bids (a cancelled one left
// the list when its cancel was built, whatever the answer).
func (c *client) learn(op Op, a answer) {
	if a.err == nil && op == OpBid && a.status == http.StatusCreated {
		if id := jsonString(a.body, "id"); id != "" {
			c.bids = append(c.bids, id)
		}
	}
}

// record checks the answers one key got and keeps them for Verify.
//
// The promise: a request that succeeded is answered with the same body every
// time it is sent again with its key, and changes nothing more. A request
// that was refused changed nothing and is not remembered, so a copy may still
// succeed later (the state may have changed in between); but two successful
// answers must be byte for byte the same, and a key is never reported as
// used for another request (the copies are identical).
func (c *client) record(op Op, r request, concurrent bool, got []answer) {
	rec := &KeyRecord{Op: op, Agent: c.agent.ID, Sent: len(got), Concurrent: concurrent}
	for i, a := range got {
		if a.err != nil {
			rec.Statuses = append(rec.Statuses, 0)
			continue
		}
		rec.Statuses = append(rec.Statuses, a.status)
		if a.status < 300 {
			if rec.OK == nil {
				rec.OK = a.body
			} else if !bytes.Equal(rec.OK, a.body) {
				rec.Violation = fmt.Sprintf("two successful answers differ:\n  %s\n  %s", rec.OK, a.body)
			}
			if !concurrent && i > 0 && got[0].err == nil && got[0].status >= 300 {
				// Refused first, accepted on a retry: allowed (nothing was
				// remembered), but only after a refusal that is not a 5xx.
				if got[0].status >= 500 {
					rec.Violation = fmt.Sprintf("answered %d, then %d", got[0].status, a.status)
				}
			}
		} else if !concurrent && i > 0 && got[0].err == nil && got[0].status < 300 {
			rec.Violation = fmt.Sprintf("first answer %d, a retry got %d: %s", got[0].status, a.status, a.body)
		}
		if strings.Contains(string(a.body), "idempotency-key-reuse") {
			rec.Violation = fmt.Sprintf("identical copies refused as another request: %s", a.body)
		}
	}
	c.run.mu.Lock()
	c.run.keys[r.key] = rec
	c.run.mu.Unlock()
}
