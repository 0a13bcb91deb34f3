package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/sandbox/docker"
	"github.com/bpagents/bpagents/internal/testutil"
)

// BenchmarkTrivialDockerExecutions measures complete executions end to end
// on the docker sandbox, in containers of the runner image: clear →
// env.json → container → python agent → one API call (a bid, over the
// sandbox network) → record → container removed. Each iteration is one
// cycle running `agents` executions at once.
//
//	go test -run '^$' -bench TrivialDockerExecutions -benchtime 5x ./internal/app/
func BenchmarkTrivialDockerExecutions(b *testing.B) {
	testutil.Need(b, "root", os.Geteuid() == 0, "the docker sandbox's firewall needs root")
	ctx := context.Background()
	err := docker.Probe(ctx, "", docker.DefaultImage)
	testutil.Need(b, "docker", err == nil, fmt.Sprint(err))
	const agents = 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cfg := config.Default()
	cfg.Home = b.TempDir()
	cfg.Addr = ln.Addr().String()
	cfg.Sandbox = "docker"
	cfg.LogLevel = "error"
	res := cfg.Market.Resources
	cpu, mem := res["cpu"], res["memory_mb"]
	cpu.Capacity, mem.Capacity = 8, 8192
	res["cpu"], res["memory_mb"] = cpu, mem
	cfg.Market.BidTTLCycles = 1000
	a, err := Open(ctx, cfg, discardLogger(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: a.API}
	go srv.Serve(ln)
	agentSrv := &http.Server{Handler: a.API}
	go agentSrv.Serve(a.AgentListener)
	b.Cleanup(func() {
		srv.Close()
		agentSrv.Close()
		a.Runtime.Wait()
		a.Close()
	})
	// Ten-second bundles: a burst of container starts on a small machine
	// takes seconds, which the wall-clock budget of each execution includes.
	agent := strings.Replace(trivialAgent, `"duration_seconds": 5`, `"duration_seconds": 10`, 1)
	runTrivialCycles(b, a, agents, agent, market.Bundle{CPUMillis: 100, MemoryMB: 64, DurationSeconds: 10}, "docker")
}
