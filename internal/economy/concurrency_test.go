package economy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/postgres"
	"github.com/bpagents/bpagents/internal/store/postgres/pgtest"
)

// population is the set of agent ids the workers know about.
type population struct {
	mu   sync.Mutex
	ids  []string
	bids []string // bid ids seen, for cancels (including others' bids)
}

func (p *population) pick(rng *rand.Rand) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ids[rng.IntN(len(p.ids))]
}

func (p *population) add(id string) {
	p.mu.Lock()
	p.ids = append(p.ids, id)
	p.mu.Unlock()
}

func (p *population) addBid(id string) {
	p.mu.Lock()
	p.bids = append(p.bids, id)
	p.mu.Unlock()
}

func (p *population) pickBid(rng *rand.Rand) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.bids) == 0 {
		return "bid_none"
	}
	return p.bids[rng.IntN(len(p.bids))]
}

// tally counts outcomes per operation.
type tally struct {
	mu sync.Mutex
	n  map[string]int
}

func (t *tally) add(op string, err error) {
	key := op + " ok"
	if e, ok := economy.AsError(err); ok {
		key = op + " " + string(e.Code)
	}
	t.mu.Lock()
	t.n[key]++
	t.mu.Unlock()
}

// TestConcurrentEconomy has many goroutines act as agents doing random
// transfers, bids, cancels, messages, spawns, mints and kills at once, with and
// without idempotency keys, while a scheduler clears the market and starts,
// finishes, interrupts and recovers executions. Refusals are expected; any
// error that is not a refusal fails the test. Afterwards the books must
// audit clean with minted = circulating + held + burned exactly, and the
// registry, bids, executions and workspaces must agree with each other.
func TestConcurrentEconomy(t *testing.T) {
	t.Parallel()
	opsEach := 200
	if raceEnabled {
		// The race detector slows the pure-Go SQLite about twentyfold; the
		// interleavings it checks do not need the full volume.
		opsEach = 60
	}
	runConcurrentEconomy(t, openSQLite, opsEach)
}

// TestConcurrentEconomyPostgres runs the same workload on PostgreSQL, where
// writers really run at once and the store retries the transactions the
// database aborts to keep them serializable. It is skipped without a server
// (see pgtest).
func TestConcurrentEconomyPostgres(t *testing.T) {
	t.Parallel()
	opsEach := 120
	if raceEnabled {
		opsEach = 60
	}
	runConcurrentEconomy(t, func(t *testing.T) store.Store { return pgtest.Open(t, postgres.Options{}) }, opsEach)
}

func runConcurrentEconomy(t *testing.T, open func(t *testing.T) store.Store, opsEach int) {
	const workers, seed = 16, 20261125
	w := newWorldOn(t, open, func(s *economy.Settings) {
		s.SpawnFee = money.Credits(2)
		s.MessageFee = money.MustParse("0.1")
		s.MaxPendingBids = 4
		s.BidTTLCycles = 3
		s.MaxMessageBytes = 64
	})
	ctx := t.Context()
	pop := &population{ids: []string{economy.GenesisID}}
	for i := range 6 {
		id := fmt.Sprintf("a%d", i)
		w.agent(id, money.Credits(300))
		pop.add(id)
	}
	tl := &tally{n: map[string]int{}}
	var unexpected atomic.Int64
	check := func(op string, err error) {
		tl.add(op, err)
		if err == nil {
			return
		}
		if _, ok := economy.AsError(err); !ok {
			if unexpected.Add(1) <= 10 {
				t.Errorf("%s: unexpected error %v (%T)", op, err, err)
			}
		}
	}

	var workersDone sync.WaitGroup
	for wi := range workers {
		rng := rand.New(rand.NewPCG(seed, uint64(wi)))
		workersDone.Go(func() {
			for op := range opsEach {
				actOnce(ctx, w, rng, pop, check, wi, op)
			}
		})
	}
	stop := make(chan struct{})
	var schedDone sync.WaitGroup
	schedDone.Go(func() {
		rng := rand.New(rand.NewPCG(seed, 999))
		var running []string
		for {
			select {
			case <-stop:
				finishAll(ctx, w, rng, running, check)
				return
			default:
			}
			running = scheduleOnce(ctx, w, rng, running, check)
		}
	})
	workersDone.Wait()
	close(stop)
	schedDone.Wait()
	if unexpected.Load() > 0 {
		t.Fatalf("%d unexpected errors", unexpected.Load())
	}
	// Drain: a last clearing and run of whatever it queued.
	rng := rand.New(rand.NewPCG(seed, 1000))
	finishAll(ctx, w, rng, scheduleOnce(ctx, w, rng, nil, check), check)

	r := w.audit()
	tot := w.totals()
	if tot.Minted != r.Minted || tot.Burned != r.Burned || tot.Circulating != r.Circulating || tot.Held != r.Held {
		t.Fatalf("Totals %+v disagree with the audit %+v", tot, r)
	}
	if tot.Minted != tot.Circulating+tot.Held+tot.Burned {
		t.Fatalf("minted %s != circulating %s + held %s + burned %s", tot.Minted, tot.Circulating, tot.Held, tot.Burned)
	}
	checkConsistency(t, w)

	keys := make([]string, 0, len(tl.n))
	for k := range tl.n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("%-28s %d", k, tl.n[k])
	}
	for _, op := range []string{"transfer", "bid", "cancel", "message", "spawn", "clear", "start", "finish"} {
		if tl.n[op+" ok"] == 0 {
			t.Errorf("no successful %s: the workload does not exercise it", op)
		}
	}
}

// actOnce performs one random agent action.
func actOnce(ctx context.Context, w *world, rng *rand.Rand, pop *population, check func(string, error), wi, op int) {
	actor := pop.pick(rng)
	var idem *economy.Idem
	keyed := rng.IntN(10) == 0
	key := func(body string) *economy.Idem {
		if !keyed {
			return nil
		}
		// A small key space makes replays and key reuse with a different body happen.
		return &economy.Idem{Principal: actor, Key: fmt.Sprintf("k%d", rng.IntN(20)), Hash: body}
	}
	amount := func(maxCredits int64) money.Micro {
		return money.Micro(rng.Int64N(int64(money.Credits(maxCredits)))) + 1
	}
	switch r := rng.IntN(100); {
	case r < 28:
		to := pop.pick(rng)
		a := amount(40)
		idem = key(fmt.Sprintf("transfer %s %s", to, a))
		_, err := w.eco.Transfer(ctx, actor, economy.TransferRequest{ToID: to, Amount: a, Memo: "gift"}, idem)
		check("transfer", err)
	case r < 53:
		b := market.Bundle{CPUMillis: 100 + rng.Int64N(1400), MemoryMB: 64 + rng.Int64N(960), DurationSeconds: 1 + rng.Int64N(20)}
		// Twice the starting reserve: prices move while the workers run.
		req := economy.BidRequest{Amount: 2*market.Reserve(b, w.set.InitialPrices) + amount(8), Bundle: b}
		if rng.IntN(5) == 0 {
			req.ForAgent = pop.pick(rng)
		}
		idem = key(fmt.Sprintf("bid %s %s %v", req.Amount, req.ForAgent, b))
		v, err := w.eco.PlaceBid(ctx, actor, req, idem)
		check("bid", err)
		if err == nil {
			pop.addBid(v.ID)
		}
	case r < 68:
		id := pop.pickBid(rng)
		if rng.IntN(2) == 0 { // prefer one's own pending bid
			if own, err := w.eco.Bids(ctx, actor, store.BidPending, 0); err == nil && len(own) > 0 {
				id = own[rng.IntN(len(own))].ID
			} else if err != nil {
				check("list bids", err)
			}
		}
		idem = key("cancel " + id)
		_, err := w.eco.CancelBid(ctx, actor, id, idem)
		check("cancel", err)
	case r < 86:
		to := pop.pick(rng)
		if rng.IntN(8) == 0 {
			to = economy.HumanID
		}
		content := fmt.Sprintf("hello from worker %d op %d", wi, op)
		idem = key("message " + to + content)
		_, err := w.eco.SendMessage(ctx, actor, economy.MessageRequest{ToID: to, Content: content}, idem)
		check("message", err)
		if rng.IntN(3) == 0 {
			_, err := w.eco.Inbox(ctx, actor, 0)
			check("inbox", err)
		}
	case r < 92:
		req := economy.SpawnRequest{InitialCredits: money.Credits(rng.Int64N(30))}
		switch rng.IntN(3) {
		case 0:
			req.Files = map[string]string{"main.py": fmt.Sprintf("print(%d)\n", op)}
		case 1:
			req.Files = map[string]string{"../escape.py": "x"} // refused
		}
		if rng.IntN(2) == 0 {
			req.Bid = &economy.BidSpec{Amount: money.Credits(5), Bundle: small}
		}
		idem = key(fmt.Sprintf("spawn %s %v %v", req.InitialCredits, req.Files, req.Bid != nil))
		res, err := w.eco.Spawn(ctx, actor, req, idem)
		check("spawn", err)
		if err == nil {
			pop.add(res.ChildID)
		}
	case r < 95:
		_, err := w.eco.Mint(ctx, actor, money.Credits(5+rng.Int64N(50)), "operator grant", nil)
		check("mint", err)
	case r < 96 && rng.IntN(2) == 0:
		check("kill", w.eco.Kill(ctx, actor)) // the operator ends an agent, perhaps mid-execution
	default:
		_, err := w.eco.Market(ctx)
		check("market", err)
		_, err = w.eco.History(ctx, actor, 0, 20)
		check("history", err)
	}
}

// scheduleOnce clears the market, finishes what ran since the last round and
// starts what is queued; it returns the executions left running.
func scheduleOnce(ctx context.Context, w *world, rng *rand.Rand, running []string, check func(string, error)) []string {
	_, err := w.eco.Clear(ctx)
	check("clear", err)
	finishAll(ctx, w, rng, running, check)
	queued, err := w.eco.QueuedExecutions(ctx)
	check("queued", err)
	var next []string
	for _, ex := range queued {
		st, err := w.eco.StartExecution(ctx, ex.ID, "test", "http://api")
		check("start", err)
		if err != nil {
			continue
		}
		// The agent acts during its execution: most bid again to stay alive.
		if rng.IntN(4) != 0 {
			_, err := w.eco.PlaceBid(ctx, st.Agent.ID, economy.BidRequest{Amount: money.Credits(5), Bundle: small}, nil)
			check("bid during execution", err)
		}
		next = append(next, ex.ID)
	}
	if rng.IntN(10) == 0 {
		// A crash: whatever is running is closed as killed and reinstated.
		_, err := w.eco.RecoverExecutions(ctx, "simulated restart")
		check("recover", err)
		return nil
	}
	return next
}

func finishAll(ctx context.Context, w *world, rng *rand.Rand, running []string, check func(string, error)) {
	reasons := []sandbox.Reason{sandbox.ReasonExited, sandbox.ReasonTimeout, sandbox.ReasonOOM, sandbox.ReasonError}
	for _, id := range running {
		res := sandbox.Result{ExitCode: rng.IntN(3), Reason: reasons[rng.IntN(len(reasons))],
			Output: []byte("some output\n"), EndedAt: time.Now()}
		var err error
		if rng.IntN(8) == 0 {
			_, err = w.eco.InterruptExecution(ctx, id, sandbox.Result{Reason: sandbox.ReasonKilled, Detail: "shutdown"})
		} else {
			_, err = w.eco.FinishExecution(ctx, id, res)
		}
		check("finish", err)
	}
}

// checkConsistency cross-checks the registry, bids, executions, balances and
// workspaces after the run.
func checkConsistency(t *testing.T, w *world) {
	t.Helper()
	ctx := t.Context()
	var (
		agents []store.Agent
		bids   []store.Bid
		execs  []store.Execution
		accts  []store.Account
		trs    []store.Transfer
		evs    []store.Event
	)
	err := w.st.Read(ctx, func(tx store.Tx) error {
		var err error
		if agents, err = tx.ListAgents(ctx, store.AgentFilter{}); err != nil {
			return err
		}
		if bids, err = tx.PendingBids(ctx); err != nil {
			return err
		}
		if execs, err = tx.ListExecutions(ctx, store.ExecutionFilter{Statuses: []string{store.ExecRunning}}); err != nil {
			return err
		}
		if accts, err = tx.ListAccounts(ctx); err != nil {
			return err
		}
		if trs, err = tx.ListTransfers(ctx, store.TransferFilter{}); err != nil {
			return err
		}
		evs, err = tx.ListEvents(ctx, store.EventFilter{Type: ledger.EventTransfer})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(trs) != len(evs) {
		t.Errorf("%d transfers but %d ledger.transfer events", len(trs), len(evs))
	}
	if len(execs) != 0 {
		t.Errorf("%d executions still running after the drain", len(execs))
	}
	status := map[string]string{}
	var dirs []string
	for _, a := range agents {
		status[a.ID] = a.Status
		dirs = append(dirs, filepath.Base(a.Workspace))
		if _, err := os.Stat(a.Workspace); err != nil {
			t.Errorf("agent %s has no workspace: %v", a.ID, err)
		}
	}
	slices.Sort(dirs)
	if got := w.workspaces(); !slices.Equal(got, dirs) {
		t.Errorf("workspaces on disk %d, agents %d: a failed spawn left a directory behind or one is missing",
			len(got), len(dirs))
	}
	for _, b := range bids {
		if status[b.PayerID] != store.AgentAlive || status[b.AgentID] != store.AgentAlive {
			t.Errorf("pending bid %s involves a dead agent (payer %s %s, agent %s %s)", b.ID, b.PayerID,
				status[b.PayerID], b.AgentID, status[b.AgentID])
		}
	}
	for _, a := range accts {
		if a.Kind != store.AccountSystem && status[a.AgentID] == store.AgentDead && a.Balance != 0 {
			t.Errorf("dead agent's account %s still holds %s", a.ID, a.Balance)
		}
	}
}
