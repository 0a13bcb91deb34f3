package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/bpagents/bpagents/internal/metrics"
)

// scrape serves the registry over HTTP and parses the answer with the
// Prometheus text-format parser, as a Prometheus server would.
func scrape(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q, want the text format", ct)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("the exposition does not parse: %v\n%s", err, body)
	}
	return fams
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric family %s", name)
	}
	for _, m := range f.Metric {
		match := true
		for k, v := range labels {
			found := false
			for _, lp := range m.Label {
				found = found || (lp.GetName() == k && lp.GetValue() == v)
			}
			match = match && found
		}
		if match {
			return m
		}
	}
	t.Fatalf("%s has no series with labels %v", name, labels)
	return nil
}

func TestExposition(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{
		Snapshot: func(ctx context.Context) (metrics.Snapshot, error) {
			return metrics.Snapshot{Alive: 7, Dead: 3, Circulating: 812.5, Held: 4, Minted: 1000, Burned: 183.5,
				Cycle: 42, PendingBids: 5, Running: 2}, nil
		},
		Reasons: []string{"exited", "timeout", "oom"},
	})
	m.ObserveCycle(3*time.Millisecond, 12, 4)
	m.ObserveCycle(40*time.Millisecond, 100, 9)
	m.ExecutionFinished("exited")
	m.ExecutionFinished("exited")
	m.ExecutionFinished("timeout")
	m.SandboxStarted("process", 4*time.Millisecond)
	m.ObserveRequest("GET /agents/{id}", 200, 2*time.Millisecond)
	m.ObserveRequest("GET /agents/{id}", 404, time.Millisecond)

	fams := scrape(t, m)
	gauges := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"bpagents_agents", map[string]string{"status": "alive"}, 7},
		{"bpagents_agents", map[string]string{"status": "dead"}, 3},
		{"bpagents_credits", map[string]string{"kind": "circulating"}, 812.5},
		{"bpagents_credits", map[string]string{"kind": "minted"}, 1000},
		{"bpagents_credits", map[string]string{"kind": "burned"}, 183.5},
		{"bpagents_credits", map[string]string{"kind": "held"}, 4},
		{"bpagents_cycle", nil, 42},
		{"bpagents_pending_bids", nil, 5},
		{"bpagents_executions_running", nil, 2},
	}
	for _, g := range gauges {
		if got := value(t, fams, g.name, g.labels).GetGauge().GetValue(); got != g.want {
			t.Errorf("%s%v = %v, want %v", g.name, g.labels, got, g.want)
		}
	}
	for reason, want := range map[string]float64{"exited": 2, "timeout": 1, "oom": 0} {
		if got := value(t, fams, "bpagents_executions_total", map[string]string{"reason": reason}).GetCounter().GetValue(); got != want {
			t.Errorf("executions_total{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	hist := func(name string, labels map[string]string) *dto.Histogram {
		h := value(t, fams, name, labels).GetHistogram()
		if h == nil {
			t.Fatalf("%s is not a histogram", name)
		}
		return h
	}
	if h := hist("bpagents_cycle_duration_seconds", nil); h.GetSampleCount() != 2 || h.GetSampleSum() < 0.042 {
		t.Errorf("cycle histogram: count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
	if h := hist("bpagents_clearing_pending_bids", nil); h.GetSampleSum() != 112 {
		t.Errorf("clearing size sum %v, want 112", h.GetSampleSum())
	}
	if h := hist("bpagents_clearing_winners", nil); h.GetSampleSum() != 13 {
		t.Errorf("winners sum %v, want 13", h.GetSampleSum())
	}
	if h := hist("bpagents_sandbox_start_seconds", map[string]string{"backend": "process"}); h.GetSampleCount() != 1 {
		t.Errorf("sandbox start count %d", h.GetSampleCount())
	}
	if h := hist("bpagents_http_request_duration_seconds", map[string]string{"route": "GET /agents/{id}", "code": "404"}); h.GetSampleCount() != 1 {
		t.Errorf("request histogram count %d", h.GetSampleCount())
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
}

// A failing snapshot leaves the other metrics scrapable.
func TestSnapshotError(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{Snapshot: func(ctx context.Context) (metrics.Snapshot, error) {
		return metrics.Snapshot{}, errors.New("database locked")
	}})
	m.ExecutionFinished("exited")
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `bpagents_executions_total{reason="exited"} 1`) {
		t.Fatalf("the counters are gone when the snapshot fails:\n%s", body)
	}
}
