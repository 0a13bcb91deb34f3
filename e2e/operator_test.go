package e2e

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestOperatorCLI drives the operator's commands against a real server:
// `events --follow` streams live, `export` writes files that load in a CSV
// reader and as JSON lines, and the read commands print their tables.
func TestOperatorCLI(t *testing.T) {
	home := t.TempDir()
	s := startServer(t, home, "--cycle", "300ms")
	flags := []string{"--server", s.url, "--home", home}

	// events --follow: a real subprocess, read line by line as it prints.
	follow := exec.Command(binary, append([]string{"events", "--follow", "--limit", "2"}, flags...)...)
	follow.Env = append(os.Environ(), "BPAGENTS_TOKEN=")
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { follow.Process.Kill(); follow.Wait() })
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitLine := func(what string, match func(string) bool) {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("events --follow ended before %s", what)
				}
				if match(l) {
					return
				}
			case <-deadline:
				t.Fatalf("events --follow printed no %s within 15s", what)
			}
		}
	}
	waitLine("market.cleared event", func(l string) bool { return strings.Contains(l, "market.cleared") })
	if out, code := s.cli(append([]string{"mint", "genesis", "3.25", "--memo", "e2e-follow"}, flags...)...); code != 0 ||
		!strings.Contains(out, "minted 3.25 credits to genesis") {
		t.Fatalf("mint (%d): %s", code, out)
	}
	start := time.Now()
	waitLine("line for the mint", func(l string) bool { return strings.Contains(l, `memo="e2e-follow"`) })
	t.Logf("events --follow printed the mint %s after the command returned", time.Since(start).Round(time.Millisecond))
	follow.Process.Signal(syscall.SIGINT)
	if err := follow.Wait(); err != nil {
		t.Errorf("events --follow after SIGINT: %v", err)
	}

	dir := t.TempDir()
	csvPath, jsonlPath := filepath.Join(dir, "ledger.csv"), filepath.Join(dir, "events.jsonl")
	if out, code := s.cli(append([]string{"export", "--what", "ledger", "--format", "csv", "--out", csvPath}, flags...)...); code != 0 ||
		!strings.Contains(out, "exported") {
		t.Fatalf("export ledger (%d): %s", code, out)
	}
	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatalf("the ledger CSV does not load: %v", err)
	}
	minted := false
	for _, r := range recs[1:] {
		minted = minted || (r[3] == "mint" && r[5] == "genesis" && r[6] == "3.25" && r[8] == "e2e-follow")
	}
	if recs[0][0] != "id" || !minted {
		t.Errorf("the ledger CSV (%d rows) lacks the mint; header %v", len(recs), recs[0])
	}
	if out, code := s.cli(append([]string{"export", "--what", "events", "--format", "jsonl", "--out", jsonlPath}, flags...)...); code != 0 {
		t.Fatalf("export events (%d): %s", code, out)
	}
	raw, err := os.ReadFile(jsonlPath)
	if err != nil {
		t.Fatal(err)
	}
	var prev float64
	for i, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("events.jsonl line %d: %v", i+1, err)
		}
		if seq, _ := e["seq"].(float64); seq != prev+1 {
			t.Fatalf("events.jsonl line %d has seq %v after %v", i+1, e["seq"], prev)
		} else {
			prev = seq
		}
	}
	if jq, err := exec.LookPath("jq"); err == nil {
		out, err := exec.Command(jq, "-r", `select(.type=="ledger.transfer" and .data.memo=="e2e-follow") | .data.amount`, jsonlPath).Output()
		if err != nil || strings.TrimSpace(string(out)) != "3.25" {
			t.Errorf("jq over events.jsonl: %q %v", out, err)
		}
	}

	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"status"}, []string{"cycle", "agents", "market cpu"}},
		{[]string{"agents", "--tree"}, []string{"genesis"}},
		{[]string{"agent", "genesis"}, []string{"genesis (alive)", "Recent executions", "Bids"}},
		{[]string{"markets", "--history", "3"}, []string{"RESOURCE", "attention", "clearings (prices per unit)"}},
		{[]string{"help", "export"}, []string{"Examples:", "--format"}},
	} {
		out, code := s.cli(append(c.args, flags...)...)
		if c.args[0] == "help" {
			out, code = s.cli(c.args...)
		}
		if code != 0 {
			t.Errorf("%v exited %d: %s", c.args, code, out)
		}
		for _, w := range c.want {
			if !strings.Contains(out, strings.TrimPrefix(w, "-")) {
				t.Errorf("%v lacks %q:\n%s", c.args, w, out)
			}
		}
	}
	s.finished("genesis", 30*time.Second) // an execution was started and recorded
	checkMetrics(t, s.url)

	// An open event stream does not hold up a clean shutdown.
	req, _ := http.NewRequest("GET", s.url+"/events/stream", nil)
	req.Header.Set("Authorization", "Bearer "+s.client.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("open stream: %v %v", err, resp)
	}
	defer resp.Body.Close()
	stopAt := time.Now()
	s.stop()
	if took := time.Since(stopAt); took > 4*time.Second {
		t.Errorf("shutting down with an open event stream took %s", took)
	}
	audit(t, home)
}

// checkMetrics scrapes a real server's /metrics and parses it with the
// Prometheus text-format parser: the runtime's and the API's observations
// are wired in, and routes are labelled by pattern.
func checkMetrics(t *testing.T, base string) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse as the Prometheus text format: %v", err)
	}
	sum := func(name string, match func(labels map[string]string) bool) (total float64, samples uint64) {
		f, ok := fams[name]
		if !ok {
			t.Fatalf("/metrics has no %s", name)
		}
		for _, m := range f.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if match != nil && !match(labels) {
				continue
			}
			total += m.GetGauge().GetValue() + m.GetCounter().GetValue()
			samples += m.GetHistogram().GetSampleCount()
		}
		return total, samples
	}
	all := func(map[string]string) bool { return true }
	if alive, _ := sum("bpagents_agents", func(l map[string]string) bool { return l["status"] == "alive" }); alive < 1 {
		t.Errorf("bpagents_agents{status=alive} = %v", alive)
	}
	if c, _ := sum("bpagents_credits", func(l map[string]string) bool { return l["kind"] == "minted" }); c < 1000 {
		t.Errorf("bpagents_credits{kind=minted} = %v", c)
	}
	if n, _ := sum("bpagents_executions_total", all); n < 1 {
		t.Errorf("bpagents_executions_total sums to %v", n)
	}
	for _, h := range []string{"bpagents_cycle_duration_seconds", "bpagents_clearing_pending_bids", "bpagents_sandbox_start_seconds"} {
		if _, n := sum(h, all); n < 1 {
			t.Errorf("%s has no observations", h)
		}
	}
	if _, n := sum("bpagents_http_request_duration_seconds", func(l map[string]string) bool { return l["route"] == "GET /agents/{id}" }); n < 1 {
		t.Errorf("no API latency observed for the route pattern GET /agents/{id}")
	}
	if _, n := sum("bpagents_http_request_duration_seconds", func(l map[string]string) bool { return strings.Contains(l["route"], "genesis") }); n > 0 {
		t.Errorf("a raw path leaked into the route label")
	}
}
