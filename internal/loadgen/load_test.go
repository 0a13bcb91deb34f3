package loadgen_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/loadgen"
)

// TestLoad runs the whole system (app.Open with a fake sandbox whose agents
// block until their deadline) on SQLite and on PostgreSQL, and drives its API
// over loopback with concurrent clients, each an executing agent with its
// token, doing transfers, bids, cancels, messages, spawns and balance reads,
// with idempotent retries mixed in (the same request sent again with the same
// Idempotency-Key, one after the other or 2–3 copies at once). It must show:
// no 5xx and no unanswered request; every retry answered like the first; each
// accepted request exactly one ledger effect and each refused one none (no
// retried request moved money twice); the audit and the event-log replay
// pass. It logs p50 and p99 latency per operation.
//
// CI runs 200 clients for 10 s; the full size is
//
//	BPAGENTS_LOAD_CLIENTS=1000 BPAGENTS_LOAD_DURATION=60s go test -run TestLoad -v -timeout 30m ./internal/loadgen/
//
// (BPAGENTS_LOAD_REQUESTS bounds the count as well; BPAGENTS_LOAD_BACKENDS
// picks "sqlite", "postgres" or both, comma separated.)
func TestLoad(t *testing.T) {
	clients := envInt(t, "BPAGENTS_LOAD_CLIENTS", 200)
	duration := envDuration(t, "BPAGENTS_LOAD_DURATION", 10*time.Second)
	requests := envInt(t, "BPAGENTS_LOAD_REQUESTS", 5_000_000)
	backends := []string{"sqlite", "postgres"}
	if v := strings.TrimSpace(envString("BPAGENTS_LOAD_BACKENDS")); v != "" {
		backends = strings.Split(v, ",")
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			runLoad(t, backend, clients, duration, int64(requests))
		})
	}
}

func runLoad(t *testing.T, backend string, clients int, duration time.Duration, requests int64) {
	started := time.Now()
	e := startEconomy(t, economyOptions{backend: backend, agents: clients})
	t.Logf("%s: %d agents executing after %s", backend, clients, time.Since(started).Round(time.Millisecond))
	ctx := context.Background()
	mark, err := loadgen.MarkNow(ctx, e.url, e.app.OperatorToken)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := loadgen.Run(ctx, loadgen.Config{URL: e.url, Agents: e.agents, Duration: duration, Requests: requests,
		RetryPercent: 20, ConcurrentPercent: 50, Seed: uint64(time.Now().UnixNano())})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rep.Write(&out)
	t.Logf("%s load:\n%s", backend, out.String())
	if rep.ServerErrors > 0 || rep.TransportErrors > 0 {
		t.Errorf("%d answers were 5xx and %d requests got no answer", rep.ServerErrors, rep.TransportErrors)
	}
	if len(rep.Violations) > 0 {
		t.Errorf("%d keys broke the idempotency promise", len(rep.Violations))
	}
	if rep.Retried == 0 || rep.ConcurrentRetried == 0 {
		t.Errorf("the load retried %d keys, %d concurrently: too few to show anything", rep.Retried, rep.ConcurrentRetried)
	}
	for _, op := range []loadgen.Op{loadgen.OpTransfer, loadgen.OpBid, loadgen.OpCancel, loadgen.OpMessage, loadgen.OpSpawn} {
		if rep.Op(op).OK == 0 {
			t.Errorf("no %s was accepted", op)
		}
	}

	v, err := loadgen.Verify(ctx, e.url, e.app.OperatorToken, mark, rep)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	v.Write(&out)
	t.Logf("%s ledger check: %s", backend, out.String())
	if len(v.Violations) > 0 {
		t.Errorf("%d ledger violations", len(v.Violations))
	}
	audit, replay := e.audit(t)
	t.Logf("%s: audit ok=%v (%d accounts, %d transfers), replay ok=%v (%d events)", backend, audit.OK, audit.Accounts,
		audit.Transfers, replay.OK, replay.Events)
	if errs := e.serverErrors(); len(errs) > 0 {
		t.Errorf("the server logged %d errors, the first: %s", len(errs), errs[0])
	}
}
