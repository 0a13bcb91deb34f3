// Package metrics owns the Prometheus instruments of one bpagents process:
// population and money gauges read from the economy at scrape time,
// executions by termination reason, the duration of each market cycle, the
// size of each clearing, sandbox start latency and API latency per route.
// Everything lives in the process's own registry (no global state) and is
// served in the Prometheus text format by Handler.
//
// Metrics never decides anything and never writes: the runtime, the API and
// the composition root report to it through small methods, and its gauges
// read a Snapshot function the composition root provides.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Snapshot is the state the gauges report, read once per scrape.
type Snapshot struct {
	Alive, Dead int
	// Credits by kind of account, in credits (an export: balances
	// themselves stay integers of micro-credits).
	Circulating, Held, Minted, Burned float64
	Cycle                             int64
	PendingBids                       int
	Running                           int
}

// Options configure New.
type Options struct {
	// Snapshot reads the population and money figures; it is called on
	// every scrape with a bounded context.
	Snapshot func(ctx context.Context) (Snapshot, error)
	// Reasons are the termination reasons to report (at zero) before any
	// execution ended with them, so dashboards see every series.
	Reasons []string
	Log     *slog.Logger
}

// Metrics is the set of instruments.
type Metrics struct {
	reg             *prometheus.Registry
	executions      *prometheus.CounterVec
	cycle           prometheus.Histogram
	clearingPending prometheus.Histogram
	clearingWinners prometheus.Histogram
	sandboxStart    *prometheus.HistogramVec
	requests        *prometheus.HistogramVec
}

// New registers every instrument in a fresh registry.
func New(opt Options) *Metrics {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	sizes := []float64{0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 10000, 100000}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bpagents_executions_total",
			Help: "Executions recorded since start, by termination reason."}, []string{"reason"}),
		cycle: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bpagents_cycle_duration_seconds",
			Help:    "Wall time of one market cycle's clearing transaction.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}),
		clearingPending: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bpagents_clearing_pending_bids",
			Help: "Pending bids considered by one clearing.", Buckets: sizes}),
		clearingWinners: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bpagents_clearing_winners",
			Help: "Winning bids of one clearing (executions it queued).", Buckets: sizes}),
		sandboxStart: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "bpagents_sandbox_start_seconds",
			Help:    "Time from asking the sandbox to start an execution until the agent's process runs.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}, []string{"backend"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "bpagents_http_request_duration_seconds",
			Help:    "API and dashboard latency by route pattern (never the raw path) and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}}, []string{"route", "code"}),
	}
	for _, r := range opt.Reasons {
		m.executions.WithLabelValues(r)
	}
	m.reg.MustRegister(m.executions, m.cycle, m.clearingPending, m.clearingWinners, m.sandboxStart, m.requests,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if opt.Snapshot != nil {
		m.reg.MustRegister(&stateCollector{read: opt.Snapshot, log: opt.Log})
	}
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Registry is the registry (tests, extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveCycle records one clearing: its duration and its size.
func (m *Metrics) ObserveCycle(took time.Duration, pending, winners int) {
	m.cycle.Observe(took.Seconds())
	m.clearingPending.Observe(float64(pending))
	m.clearingWinners.Observe(float64(winners))
}

// ExecutionFinished counts an execution that ended with reason.
func (m *Metrics) ExecutionFinished(reason string) {
	m.executions.WithLabelValues(reason).Inc()
}

// SandboxStarted records how long backend took to start an execution.
func (m *Metrics) SandboxStarted(backend string, took time.Duration) {
	m.sandboxStart.WithLabelValues(backend).Observe(took.Seconds())
}

// ObserveRequest records one HTTP request under its route pattern.
func (m *Metrics) ObserveRequest(route string, status int, took time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Observe(took.Seconds())
}

// stateCollector turns a Snapshot into gauges at scrape time.
type stateCollector struct {
	read func(ctx context.Context) (Snapshot, error)
	log  *slog.Logger
}

var (
	agentsDesc  = prometheus.NewDesc("bpagents_agents", "Agents by status.", []string{"status"}, nil)
	creditsDesc = prometheus.NewDesc("bpagents_credits",
		"Credits by kind: circulating (agents' available balances), held (pending bids), minted and burned (totals ever).",
		[]string{"kind"}, nil)
	cycleDesc   = prometheus.NewDesc("bpagents_cycle", "The current market cycle.", nil, nil)
	pendingDesc = prometheus.NewDesc("bpagents_pending_bids", "Bids waiting to win.", nil, nil)
	runningDesc = prometheus.NewDesc("bpagents_executions_running", "Executions in a sandbox now.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{agentsDesc, creditsDesc, cycleDesc, pendingDesc, runningDesc} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.read(ctx)
	if err != nil {
		c.log.Warn("metrics snapshot failed", "err", err)
		ch <- prometheus.NewInvalidMetric(agentsDesc, err)
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(agentsDesc, float64(s.Alive), "alive")
	gauge(agentsDesc, float64(s.Dead), "dead")
	gauge(creditsDesc, s.Circulating, "circulating")
	gauge(creditsDesc, s.Held, "held")
	gauge(creditsDesc, s.Minted, "minted")
	gauge(creditsDesc, s.Burned, "burned")
	gauge(cycleDesc, float64(s.Cycle))
	gauge(pendingDesc, float64(s.PendingBids))
	gauge(runningDesc, float64(s.Running))
}
