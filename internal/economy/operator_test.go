package economy_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/store"
)

func TestCreateAgent(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	project := t.TempDir()
	if err := os.WriteFile(filepath.Join(project, "main.py"), []byte("print('p')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(project, "env.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := w.eco.CreateAgent(ctx, economy.CreateAgentRequest{ID: "from-dir", FromDir: project, Credits: money.Credits(20),
		Bid: &economy.BidSpec{Amount: money.Credits(3), Bundle: small}})
	if err != nil {
		t.Fatal(err)
	}
	if v.ID != "from-dir" || v.Status != store.AgentAlive || v.Balance != money.Credits(17) || v.Held != money.Credits(3) ||
		len(v.Lineage) != 0 {
		t.Fatalf("created agent %+v", v)
	}
	got := readTree(t, filepath.Join(w.root, "agent-from-dir"))
	if len(got) != 1 || got["main.py"] != "print('p')\n" {
		t.Fatalf("workspace copied from a directory: %v", got)
	}
	auto, err := w.eco.CreateAgent(ctx, economy.CreateAgentRequest{Files: map[string]string{"main": "#!/bin/sh\n"}})
	if err != nil || auto.ID == "" || auto.Balance != 0 {
		t.Fatalf("agent with a generated id: %+v, %v", auto, err)
	}

	cases := []struct {
		name string
		req  economy.CreateAgentRequest
		code economy.Code
	}{
		{"bad id", economy.CreateAgentRequest{ID: "Bad ID", Files: map[string]string{"m": "x"}}, economy.CodeInvalid},
		{"reserved id", economy.CreateAgentRequest{ID: "human", Files: map[string]string{"m": "x"}}, economy.CodeInvalid},
		{"system id", economy.CreateAgentRequest{ID: "system-x", Files: map[string]string{"m": "x"}}, economy.CodeInvalid},
		{"both sources", economy.CreateAgentRequest{ID: "x", FromDir: project, Files: map[string]string{"m": "x"}}, economy.CodeInvalid},
		{"no source", economy.CreateAgentRequest{ID: "x"}, economy.CodeInvalid},
		{"missing dir", economy.CreateAgentRequest{ID: "x", FromDir: filepath.Join(project, "nope")}, economy.CodeInvalid},
		{"bad file", economy.CreateAgentRequest{ID: "x", Files: map[string]string{"../x": "x"}}, economy.CodeInvalid},
		{"negative credits", economy.CreateAgentRequest{ID: "x", Credits: -1, Files: map[string]string{"m": "x"}}, economy.CodeInvalid},
		{"credits over max", economy.CreateAgentRequest{ID: "x", Credits: money.Max + 1, Files: map[string]string{"m": "x"}}, economy.CodeInvalid},
		{"taken id", economy.CreateAgentRequest{ID: "from-dir", Files: map[string]string{"m": "x"}}, economy.CodeConflict},
		{"bid above credits", economy.CreateAgentRequest{ID: "x", Credits: money.Credits(1), Files: map[string]string{"m": "x"},
			Bid: &economy.BidSpec{Amount: money.Credits(2), Bundle: small}}, economy.CodeInsufficientFunds},
		{"bid below reserve", economy.CreateAgentRequest{ID: "x", Credits: money.Credits(1), Files: map[string]string{"m": "x"},
			Bid: &economy.BidSpec{Amount: 1, Bundle: small}}, economy.CodeBelowReserve},
	}
	for _, tc := range cases {
		same := w.unchanged()
		_, err := w.eco.CreateAgent(ctx, tc.req)
		wantCode(t, tc.name, err, tc.code)
		same(tc.name)
	}
	w.audit()
}

func TestKillAndMint(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	w.agent("a", money.Credits(10))
	w.bid("a", money.Credits(4))
	r, err := w.eco.Mint(ctx, "a", money.MustParse("2.5"), "reward", nil)
	if err != nil || r.Balance != money.MustParse("8.5") || r.FromID != "system:mint" {
		t.Fatalf("Mint = %+v, %v", r, err)
	}
	_, err = w.eco.Mint(ctx, "a", 0, "", nil)
	wantCode(t, "mint zero", err, economy.CodeInvalid)
	_, err = w.eco.Mint(ctx, "ghost", 1, "", nil)
	wantCode(t, "mint to unknown", err, economy.CodeNotFound)

	burned := w.totals().Burned
	if err := w.eco.Kill(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	ag, _ := w.eco.Agent(ctx, "a")
	if ag.Status != store.AgentDead || ag.DeathReason != economy.DeathKilled || ag.Balance != 0 || ag.Held != 0 {
		t.Fatalf("killed agent %+v", ag)
	}
	if got := w.totals().Burned - burned; got != money.MustParse("12.5") {
		t.Fatalf("burned %s at death, want everything (12.5 including the released hold)", got)
	}
	wantCode(t, "kill twice", w.eco.Kill(ctx, "a"), economy.CodeConflict)
	wantCode(t, "kill unknown", w.eco.Kill(ctx, "ghost"), economy.CodeNotFound)
	_, err = w.eco.Mint(ctx, "a", 1, "", nil)
	wantCode(t, "mint to the dead", err, economy.CodeConflict)
	w.audit()
}

// TestSpawnFileAndDirectoryClash gives a file and a file below it with the
// same name: whatever order they are written in, the agent gets a clear
// refusal and nothing is left behind.
func TestSpawnFileAndDirectoryClash(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.agent("a", money.Credits(500))
	for i := range 20 { // map order varies between calls
		same := w.unchanged()
		_, err := w.eco.Spawn(t.Context(), "a", economy.SpawnRequest{InitialCredits: 1,
			Files: map[string]string{"lib": "a file", "lib/util.py": "below it", "z/y/x": "1", "z/y": "2"}}, nil)
		wantCode(t, "spawn with a file clashing with a directory", err, economy.CodeInvalid)
		same("a refused spawn " + string(rune('a'+i)))
	}
}

// TestInterruptedExecutionOfDeadAgent: a payer woke another agent, the
// operator killed that agent while it ran, then the system interrupted the
// execution. Nothing may be reinstated for the dead agent.
func TestInterruptedExecutionOfDeadAgent(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	w.agent("payer", money.Credits(100))
	w.agent("sleeper", money.Credits(1))
	v, err := w.eco.PlaceBid(ctx, "payer", economy.BidRequest{Amount: money.Credits(5), Bundle: small, ForAgent: "sleeper"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.clear()
	exID := w.getBid(v.ID).ExecutionID
	if _, err := w.eco.StartExecution(ctx, exID, "fake", "http://x"); err != nil {
		t.Fatal(err)
	}
	if err := w.eco.Kill(ctx, "sleeper"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.eco.InterruptExecution(ctx, exID, sandbox.Result{Reason: sandbox.ReasonKilled}); err != nil {
		t.Fatal(err)
	}
	bids, err := w.eco.Bids(ctx, "sleeper", store.BidPending, 0)
	if err != nil || len(bids) != 0 {
		t.Fatalf("pending bids for the dead agent after the interruption: %+v, %v", bids, err)
	}
	if p := w.balance("payer"); p.Held != 0 {
		t.Fatalf("payer holds %s for a dead agent", p.Held)
	}
	w.audit()

	// The same through crash recovery.
	w2 := newWorld(t, nil)
	w2.agent("payer", money.Credits(100))
	w2.agent("sleeper", money.Credits(1))
	v, err = w2.eco.PlaceBid(ctx, "payer", economy.BidRequest{Amount: money.Credits(5), Bundle: small, ForAgent: "sleeper"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w2.clear()
	exID = w2.getBid(v.ID).ExecutionID
	if _, err := w2.eco.StartExecution(ctx, exID, "fake", "http://x"); err != nil {
		t.Fatal(err)
	}
	if err := w2.eco.Kill(ctx, "sleeper"); err != nil {
		t.Fatal(err)
	}
	if closed, err := w2.eco.RecoverExecutions(ctx, "restart"); err != nil || !slices.Equal(closed, []string{exID}) {
		t.Fatalf("RecoverExecutions = %v, %v", closed, err)
	}
	if bids, _ := w2.eco.Bids(ctx, "sleeper", store.BidPending, 0); len(bids) != 0 {
		t.Fatalf("recovery reinstated a bid for a dead agent: %+v", bids)
	}
	w2.audit()
}

// TestInboxNotifiesWatchers: listing the inbox marks messages read and
// writes a message.read event, so watchers of the event stream must be told.
func TestInboxNotifiesWatchers(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	w.agent("a", money.Credits(10))
	w.agent("b", money.Credits(10))
	if _, err := w.eco.SendMessage(ctx, "a", economy.MessageRequest{ToID: "b", Content: "hi"}, nil); err != nil {
		t.Fatal(err)
	}
	before := w.changed.Load()
	if _, err := w.eco.Inbox(ctx, "b", 0); err != nil {
		t.Fatal(err)
	}
	if w.changed.Load() == before {
		t.Fatal("Inbox committed a change (messages marked read, an event) without notifying watchers")
	}
	var evs []store.Event
	if err := w.st.Read(ctx, func(tx store.Tx) error {
		var err error
		evs, err = tx.ListEvents(ctx, store.EventFilter{Type: "message.read"})
		return err
	}); err != nil || len(evs) != 1 || evs[0].AgentID != "b" {
		t.Fatalf("message.read events %+v, %v", evs, err)
	}
}

// Killing an agent whose execution is queued closes that execution: a dead
// agent's code never runs.
func TestKillClosesQueuedExecution(t *testing.T) {
	w := newWorld(t, nil)
	res := w.clear() // genesis's first bid wins: one queued execution
	if len(res.Queued) != 1 {
		t.Fatalf("queued = %d, want 1", len(res.Queued))
	}
	if err := w.eco.Kill(t.Context(), economy.GenesisID); err != nil {
		t.Fatal(err)
	}
	ex := w.getExecution(res.Queued[0].ID)
	if ex.Status != store.ExecFinished || ex.Reason != "killed" {
		t.Fatalf("queued execution of a killed agent is %s/%s", ex.Status, ex.Reason)
	}
	_, err := w.eco.StartExecution(t.Context(), ex.ID, "test", "http://x")
	wantCode(t, "start after death", err, economy.CodeConflict)
	w.audit()
}
