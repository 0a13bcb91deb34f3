package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/client"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/money"
)

// BenchmarkDormantAgents measures what 10,000 dormant agents (alive, not
// executing, each with a workspace, accounts and an endowment) add to the
// memory of a running `bpagents up` (SQLite, the default): its resident set
// and Go heap in use, from /proc and its own /metrics, before and after the
// agents are created through the API, once the server has idled for a few
// cycles, served the whole directory once and collected its garbage. SPEC
// §13: < 50 MB. It takes a few minutes: an idle server collects every two.
//
//	go test -run '^$' -bench BenchmarkDormantAgents -benchtime 1x ./e2e/
func BenchmarkDormantAgents(b *testing.B) {
	const agents = 10_000
	home := b.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(binary, "up", "--home", home, "--addr", addr, "--sandbox", "process", "--cycle", "1s")
	cmd.Env = append(os.Environ(), "BPAGENTS_LOG_LEVEL=warn")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := "http://" + addr
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for client.New(url, "").Get(ctx, "/healthz", &api.Health{}) != nil {
		if time.Now().After(deadline) {
			b.Fatal("bpagents up did not become healthy")
		}
		time.Sleep(50 * time.Millisecond)
	}
	tok, err := os.ReadFile(filepath.Join(home, "data", "operator.token"))
	if err != nil {
		b.Fatal(err)
	}
	op := client.New(url, strings.TrimSpace(string(tok)))
	// settle measures the idle server: after a few cycles and one read of
	// the whole directory, it waits until the server's collector has run
	// twice since (an idle Go program collects at least every two minutes),
	// so that what is measured is what the server keeps, not garbage from
	// creating the agents, and gives the scavenger a few seconds to return
	// freed pages to the system.
	settle := func() memory {
		time.Sleep(3 * time.Second) // a few cycles; the runtime's background work settles
		var list api.AgentList
		if err := op.Get(ctx, "/agents", &list); err != nil {
			b.Fatal(err)
		}
		gcs := memoryOf(b, cmd.Process.Pid, op).gcs
		deadline := time.Now().Add(5 * time.Minute)
		for memoryOf(b, cmd.Process.Pid, op).gcs < gcs+2 {
			if time.Now().After(deadline) {
				b.Fatal("the server did not collect garbage in 5 minutes")
			}
			time.Sleep(time.Second)
		}
		time.Sleep(5 * time.Second)
		return memoryOf(b, cmd.Process.Pid, op)
	}
	before := settle()

	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				req := economy.CreateAgentRequest{ID: fmt.Sprintf("dormant-%05d", i), Credits: money.Credits(10),
					Files: map[string]string{"main.py": "print('asleep')\n"}}
				if err := op.Post(ctx, "/admin/agents", req, nil); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := range agents {
		select {
		case next <- i:
		case err := <-errs:
			b.Fatal(err)
		}
	}
	close(next)
	wg.Wait()
	took := time.Since(start)
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	after := settle()
	var st api.StatusView
	if err := op.Get(ctx, "/status", &st); err != nil {
		b.Fatal(err)
	}
	if st.Alive < agents {
		b.Fatalf("%d agents alive, want at least %d", st.Alive, agents)
	}
	mb := func(n int64) float64 { return float64(n) / (1 << 20) }
	b.ReportMetric(mb(after.rss-before.rss), "rss-MB-added")
	b.ReportMetric(mb(after.heap-before.heap), "heap-MB-added")
	b.ReportMetric(mb(after.rss), "rss-MB")
	b.ReportMetric(float64(agents)/took.Seconds(), "agents-created/s")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d agents alive; RSS %.1f → %.1f MB, Go heap in use %.1f → %.1f MB", st.Alive,
		mb(before.rss), mb(after.rss), mb(before.heap), mb(after.heap))
}

type memory struct{ rss, heap, gcs int64 }

// memoryOf reads a process's resident set from /proc and its Go heap in use
// and the number of its garbage collections from its /metrics.
func memoryOf(b *testing.B, pid int, op *client.Client) memory {
	b.Helper()
	var m memory
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			m.rss = kb << 10
		}
	}
	resp, err := op.HTTP.Get(op.BaseURL + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			m.heap = int64(f)
		}
		if v, ok := strings.CutPrefix(sc.Text(), "go_gc_duration_seconds_count "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			m.gcs = int64(f)
		}
	}
	return m
}
