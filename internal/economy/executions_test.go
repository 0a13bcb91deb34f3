package economy_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/store"
)

// queued wins a bid for agent and returns its queued execution id.
func (w *world) queued(agent string, amount money.Micro) string {
	w.t.Helper()
	v := w.bid(agent, amount)
	w.clear()
	b := w.getBid(v.ID)
	if b.Status != store.BidWon {
		w.t.Fatalf("bid of %s did not win", agent)
	}
	return b.ExecutionID
}

func TestExecutionLifecycle(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	w.agent("a", money.Credits(100))
	w.agent("b", money.Credits(100))
	if _, err := w.eco.SendMessage(ctx, "b", economy.MessageRequest{ToID: "a", Content: "wake up"}, nil); err != nil {
		t.Fatal(err)
	}
	exID := w.queued("a", money.Credits(5))

	_, err := w.eco.Authenticate(ctx, "bpt_not_a_token")
	if e := wantCode(t, "unknown token", err, economy.CodeUnauthorized); !strings.Contains(e.Detail, "unknown") {
		t.Fatalf("detail %q", e.Detail)
	}

	started, err := w.eco.StartExecution(ctx, exID, "fake", "http://127.0.0.1:8000")
	if err != nil {
		t.Fatal(err)
	}
	env := started.Env
	if started.Token == "" || env.Token != started.Token || env.AgentID != "a" || env.ExecutionID != exID ||
		env.SchemaVersion != 1 || env.ServiceURL != "http://127.0.0.1:8000" || env.Credits != money.Credits(95) ||
		env.Held != 0 || env.Cycle != 1 || env.ExecutionCount != 1 || len(env.Lineage) != 0 || env.Lineage == nil {
		t.Fatalf("env %+v", env)
	}
	if env.ExecutionContext.CPU != 0.5 || env.ExecutionContext.CPUSeconds != 5 || env.ExecutionContext.MemoryMB != 256 ||
		env.ExecutionContext.DurationSeconds != 10 {
		t.Fatalf("execution context %+v", env.ExecutionContext)
	}
	if len(env.Inbox) != 1 || env.Inbox[0].From != "b" || env.Inbox[0].Content != "wake up" {
		t.Fatalf("env inbox %+v", env.Inbox)
	}
	if len(env.Markets) != 4 || env.Markets["cpu"].Capacity != 2 {
		t.Fatalf("env markets %+v", env.Markets)
	}
	if started.Execution.Status != store.ExecRunning || started.Execution.Sandbox != "fake" ||
		!started.Execution.Deadline.Equal(w.clock.Now().Add(10*time.Second)) {
		t.Fatalf("started execution %+v", started.Execution)
	}
	// Messages delivered in env.json are read.
	if inbox, _ := w.eco.Inbox(ctx, "a", 0); len(inbox) != 1 || !inbox[0].Read {
		t.Fatalf("inbox after env delivery %+v", inbox)
	}
	if _, err := w.eco.StartExecution(ctx, exID, "fake", "http://x"); err == nil {
		t.Fatal("started a running execution twice")
	} else {
		wantCode(t, "second start", err, economy.CodeConflict)
	}

	p, err := w.eco.Authenticate(ctx, started.Token)
	if err != nil || p.AgentID != "a" || p.ExecutionID != exID || p.Operator {
		t.Fatalf("Authenticate during the execution = %+v, %v", p, err)
	}
	// The agent keeps itself alive by bidding again before it ends.
	next := w.bid("a", money.Credits(3))

	out := []byte("hello\x00world\n")
	fin, err := w.eco.FinishExecution(ctx, exID, sandbox.Result{ExitCode: 0, Reason: sandbox.ReasonExited,
		CPUSeconds: 0.25, PeakMemory: 1 << 20, Output: out, OutputDropped: 3, EndedAt: w.clock.Now().Add(2 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if fin.Status != store.ExecFinished || fin.Reason != "exited" || fin.OutputSize != int64(len(out)) || fin.Dropped != 3 ||
		fin.CPUSeconds != 0.25 {
		t.Fatalf("finished execution %+v", fin)
	}
	var saved []byte
	if err := w.st.Read(ctx, func(tx store.Tx) error {
		var err error
		saved, err = tx.GetOutput(ctx, exID)
		return err
	}); err != nil || !bytes.Equal(saved, out) {
		t.Fatalf("saved output %q, %v", saved, err)
	}
	_, err = w.eco.Authenticate(ctx, started.Token)
	if e := wantCode(t, "token after the execution", err, economy.CodeUnauthorized); !strings.Contains(e.Detail, "expired") {
		t.Fatalf("detail %q, want it to say the token expired", e.Detail)
	}
	if a := w.balance("a"); a.Status != store.AgentAlive || a.Held != money.Credits(3) {
		t.Fatalf("agent that left a bid: %+v", a)
	}
	if w.getBid(next.ID).Status != store.BidPending {
		t.Fatal("the agent's new bid did not survive its execution")
	}
	_, err = w.eco.FinishExecution(ctx, exID, sandbox.Result{Reason: sandbox.ReasonExited})
	wantCode(t, "second finish", err, economy.CodeConflict)
	if ag, _ := w.eco.Agent(ctx, "a"); ag.ExecutionCount != 1 {
		t.Fatalf("execution count %d", ag.ExecutionCount)
	}
	w.audit()
}

func TestDeathWithoutBid(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	w.agent("a", money.Credits(100))
	w.agent("b", money.Credits(10))
	exID := w.queued("a", money.Credits(5))
	st, err := w.eco.StartExecution(ctx, exID, "fake", "http://x")
	if err != nil {
		t.Fatal(err)
	}
	// A bid a pays for b does not keep a alive.
	if _, err := w.eco.PlaceBid(ctx, "a", economy.BidRequest{Amount: money.Credits(2), Bundle: small, ForAgent: "b"}, nil); err != nil {
		t.Fatal(err)
	}
	burned := w.totals().Burned
	if _, err := w.eco.FinishExecution(ctx, exID, sandbox.Result{Reason: sandbox.ReasonExited}); err != nil {
		t.Fatal(err)
	}
	ag, err := w.eco.Agent(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if ag.Status != store.AgentDead || ag.DeathReason != economy.DeathNoBid || ag.Balance != 0 || ag.Held != 0 || ag.DiedAt == "" {
		t.Fatalf("agent without a bid after its execution: %+v", ag)
	}
	// Its 93 credits are burned and its bid for b is void, the hold released then burned.
	if got := w.totals().Burned - burned; got != money.Credits(95) {
		t.Fatalf("burned %s at death, want 95", got)
	}
	bids, _ := w.eco.Bids(ctx, "b", "", 0)
	if len(bids) != 1 || bids[0].Status != store.BidVoid {
		t.Fatalf("bid paid by the dead agent: %+v", bids)
	}
	_, err = w.eco.Authenticate(ctx, st.Token)
	wantCode(t, "dead agent's token", err, economy.CodeUnauthorized)
	_, err = w.eco.Transfer(ctx, "b", economy.TransferRequest{ToID: "a", Amount: 1}, nil)
	wantCode(t, "paying a dead agent", err, economy.CodeConflict)
	// The workspace is kept for inspection.
	if ws := w.workspaces(); !slices.Contains(ws, "agent-a") {
		t.Fatalf("workspace of the dead agent removed: %v", ws)
	}
	w.audit()
}

func TestTokenDeadlineAndRevocation(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	w.agent("a", money.Credits(100))
	w.agent("b", money.Credits(100))
	exA := w.queued("a", money.Credits(5))
	stA, err := w.eco.StartExecution(ctx, exA, "fake", "http://x")
	if err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(10 * time.Second) // exactly at the deadline: still valid
	if _, err := w.eco.Authenticate(ctx, stA.Token); err != nil {
		t.Fatalf("token at its deadline: %v", err)
	}
	w.clock.Advance(time.Millisecond)
	_, err = w.eco.Authenticate(ctx, stA.Token)
	if e := wantCode(t, "token past its deadline", err, economy.CodeUnauthorized); !strings.Contains(e.Detail, "deadline") {
		t.Fatalf("detail %q", e.Detail)
	}

	exB := w.queued("b", money.Credits(5))
	stB, err := w.eco.StartExecution(ctx, exB, "fake", "http://x")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.eco.Kill(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	_, err = w.eco.Authenticate(ctx, stB.Token)
	if e := wantCode(t, "killed agent's token", err, economy.CodeUnauthorized); !strings.Contains(e.Detail, "dead") {
		t.Fatalf("detail %q", e.Detail)
	}
	if stA.Token == stB.Token {
		t.Fatal("two executions share a token")
	}
	w.audit()
}

func TestRecoverExecutions(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	w.agent("a", money.Credits(100))
	w.agent("b", money.Credits(100))
	exA := w.queued("a", money.Credits(5))
	if _, err := w.eco.StartExecution(ctx, exA, "fake", "http://x"); err != nil {
		t.Fatal(err)
	}
	exB := w.queued("b", money.Credits(5))
	burned := w.totals().Burned

	closed, err := w.eco.RecoverExecutions(ctx, "process restarted")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(closed, []string{exA}) {
		t.Fatalf("closed %v, want only the running %s", closed, exA)
	}
	a := w.getExecution(exA)
	if a.Status != store.ExecFinished || a.Reason != string(sandbox.ReasonKilled) || a.Detail != "process restarted" ||
		a.ExitCode != -1 || a.Ended.IsZero() {
		t.Fatalf("recovered execution %+v", a)
	}
	if b := w.getExecution(exB); b.Status != store.ExecQueued {
		t.Fatalf("queued execution touched: %+v", b)
	}
	queued, err := w.eco.QueuedExecutions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, q := range queued {
		ids = append(ids, q.ID)
	}
	if !slices.Contains(ids, exB) || slices.Contains(ids, exA) {
		t.Fatalf("queued after recovery: %v", ids)
	}
	// The system interrupted a, so a is not charged: its payment comes back
	// from burn into a new pending bid for the same bundle, and a lives.
	bal := w.balance("a")
	if bal.Status != store.AgentAlive || bal.Held != money.Credits(5) || bal.Balance != money.Credits(95) {
		t.Fatalf("interrupted agent after recovery: %+v", bal)
	}
	if got := burned - w.totals().Burned; got != money.Credits(5) {
		t.Fatalf("refunded %s from burn, want 5", got)
	}
	reinstated := mustPendingBid(t, w, "a")
	if rb := w.getBid(reinstated); rb.Amount != money.Credits(5) || rb.Bundle != small || rb.PayerID != "a" {
		t.Fatalf("reinstated bid %+v", rb)
	}
	// Nothing left to recover.
	if again, err := w.eco.RecoverExecutions(ctx, "again"); err != nil || len(again) != 0 {
		t.Fatalf("second recovery closed %v, %v", again, err)
	}
	// Its capacity is free again: the reinstated bid can win.
	w.clear()
	if b := w.getBid(reinstated); b.Status != store.BidWon {
		t.Fatalf("reinstated bid did not win: %+v", b)
	}
	w.audit()
}
