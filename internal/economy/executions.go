package economy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bpagents/bpagents/internal/ids"
	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/store"
)

// EnvSchemaVersion is the version of env.json's layout.
const EnvSchemaVersion = 1

// maxEnvInbox bounds how many unread messages env.json delivers.
const maxEnvInbox = 100

// Env is the env.json handshake (schema version 1): the agent's whole view of
// its situation at the start of an execution.
type Env struct {
	SchemaVersion    int                   `json:"schema_version"`
	AgentID          string                `json:"agent_id"`
	ExecutionID      string                `json:"execution_id"`
	Token            string                `json:"token"`
	ServiceURL       string                `json:"service_url"`
	Credits          money.Micro           `json:"credits"`
	Held             money.Micro           `json:"held"`
	SystemTime       string                `json:"system_time"`
	Deadline         string                `json:"deadline"`
	Cycle            int64                 `json:"cycle"`
	Lineage          []string              `json:"lineage"`
	ExecutionCount   int64                 `json:"execution_count"`
	Markets          map[string]MarketView `json:"markets"`
	Inbox            []EnvMessage          `json:"inbox"`
	PendingBids      []BidView             `json:"pending_bids"`
	ExecutionContext ExecutionContext      `json:"execution_context"`
}

// EnvMessage is a message delivered in env.json.
type EnvMessage struct {
	ID        string `json:"id"`
	From      string `json:"from"`
	Content   string `json:"content"`
	Timestamp string `json:"timestamp"`
}

// ExecutionContext is the won bundle, as the agent sees it.
type ExecutionContext struct {
	CPU             float64 `json:"cpu"`
	CPUSeconds      float64 `json:"cpu_seconds"`
	MemoryMB        int64   `json:"memory_mb"`
	DurationSeconds int64   `json:"duration_seconds"`
	Tokens          int64   `json:"tokens"`
	Attention       int64   `json:"attention"`
}

// Started is an execution that has been opened: its record, the secret
// token (only its hash is stored) and the handshake to write.
type Started struct {
	Execution store.Execution
	Agent     store.Agent
	Token     string
	Env       Env
}

// StartExecution moves a queued execution that no runner claimed to
// running: it mints the execution's token, sets the deadline, counts the
// execution and builds env.json, all in one transaction. Unread messages
// delivered in env.json are marked read. Runners start the executions they
// claimed with StartClaimed.
func (e *Economy) StartExecution(ctx context.Context, id, sandboxName, serviceURL string) (Started, error) {
	return e.start(ctx, id, "", sandboxName, serviceURL)
}

// start opens execution id, which must be claimed by runnerID (or by no
// runner when runnerID is empty).
func (e *Economy) start(ctx context.Context, id, runnerID, sandboxName, serviceURL string) (Started, error) {
	var out Started
	err := e.writeExecution(ctx, id, func(tx store.Tx, s stamp, ex store.Execution) error {
		if ex.Status != store.ExecQueued {
			return fail(CodeConflict, "execution %s is %s, not queued", id, ex.Status)
		}
		if ex.RunnerID != runnerID {
			return fail(CodeConflict, "execution %s is claimed by runner %q, not %q", id, ex.RunnerID, runnerID)
		}
		if runnerID != "" {
			if err := activeRunner(ctx, tx, runnerID); err != nil {
				return &Error{Code: CodeConflict, Detail: err.Error(), Err: err}
			}
		}
		token := ids.Token()
		ex.Status, ex.TokenHash, ex.Sandbox = store.ExecRunning, ids.HashToken(token), sandboxName
		ex.Started = s.now
		ex.Deadline = s.now.Add(time.Duration(ex.Bundle.DurationSeconds) * time.Second)
		if err := tx.UpdateExecution(ctx, ex); err != nil {
			return err
		}
		if err := tx.IncrementExecutionCount(ctx, ex.AgentID); err != nil {
			return err
		}
		agent, err := tx.GetAgent(ctx, ex.AgentID)
		if err != nil {
			return err
		}
		if err := emit(ctx, tx, s, "execution.started", ex.AgentID, ex.ID, map[string]any{"execution_id": ex.ID,
			"sandbox": sandboxName, "deadline": rfc3339(ex.Deadline), "execution_count": agent.ExecutionCount,
			"runner_id": runnerID}); err != nil {
			return err
		}
		env, err := e.buildEnv(ctx, tx, s, ex, agent, token, serviceURL)
		if err != nil {
			return err
		}
		out = Started{Execution: ex, Agent: agent, Token: token, Env: env}
		return nil
	})
	return out, err
}

func (e *Economy) buildEnv(ctx context.Context, tx store.Tx, s stamp, ex store.Execution, a store.Agent, token, url string) (Env, error) {
	bal, err := ledger.AgentBalances(ctx, tx, a.ID)
	if err != nil {
		return Env{}, err
	}
	mk, err := e.marketViews(ctx, tx)
	if err != nil {
		return Env{}, err
	}
	msgs, err := tx.Inbox(ctx, a.ID, maxEnvInbox)
	if err != nil {
		return Env{}, err
	}
	inbox := []EnvMessage{}
	var unread []string
	for _, m := range msgs {
		if !m.Read.IsZero() {
			continue
		}
		inbox = append(inbox, EnvMessage{ID: m.ID, From: m.From, Content: m.Content, Timestamp: rfc3339(m.Created)})
		unread = append(unread, m.ID)
	}
	if err := e.markRead(ctx, tx, a.ID, unread); err != nil {
		return Env{}, err
	}
	bids, err := tx.ListBids(ctx, store.BidFilter{Party: a.ID, Status: store.BidPending})
	if err != nil {
		return Env{}, err
	}
	pending := make([]BidView, 0, len(bids))
	for _, b := range bids {
		pending = append(pending, bidView(b))
	}
	lineage := a.Lineage
	if lineage == nil {
		lineage = []string{}
	}
	cores := float64(ex.Bundle.CPUMillis) / 1000
	return Env{
		SchemaVersion: EnvSchemaVersion, AgentID: a.ID, ExecutionID: ex.ID, Token: token, ServiceURL: url,
		Credits: bal.Available, Held: bal.Held, SystemTime: rfc3339(s.now), Deadline: rfc3339(ex.Deadline),
		Cycle: s.cycle, Lineage: lineage, ExecutionCount: a.ExecutionCount, Markets: mk, Inbox: inbox,
		PendingBids: pending,
		ExecutionContext: ExecutionContext{CPU: cores, CPUSeconds: cores * float64(ex.Bundle.DurationSeconds),
			MemoryMB: ex.Bundle.MemoryMB, DurationSeconds: ex.Bundle.DurationSeconds, Tokens: ex.Bundle.Tokens,
			Attention: ex.Bundle.Attention},
	}, nil
}

// ExtendDeadline moves a running execution's deadline later (never earlier),
// when its sandbox started late: the agent gets the running time its bundle
// bought, and its token stays valid until the sandbox is killed.
func (e *Economy) ExtendDeadline(ctx context.Context, id string, deadline time.Time) error {
	return e.writeExecution(ctx, id, func(tx store.Tx, s stamp, ex store.Execution) error {
		if ex.Status != store.ExecRunning {
			return fail(CodeConflict, "execution %s is %s, not running", id, ex.Status)
		}
		deadline = deadline.UTC().Truncate(time.Microsecond)
		if !deadline.After(ex.Deadline) {
			return nil
		}
		old := ex.Deadline
		ex.Deadline = deadline
		if err := tx.UpdateExecution(ctx, ex); err != nil {
			return err
		}
		return emit(ctx, tx, s, "execution.deadline_moved", ex.AgentID, ex.ID, map[string]any{"execution_id": ex.ID,
			"from": rfc3339(old), "to": rfc3339(deadline)})
	})
}

// FinishExecution records how an execution ended, stores its output, makes
// its token invalid, and applies the death rule: an agent whose execution
// ended without leaving a pending bid dies.
func (e *Economy) FinishExecution(ctx context.Context, id string, r sandbox.Result) (store.Execution, error) {
	return e.closeExecution(ctx, id, r, e.finishTx)
}

// closeExecution runs close on an execution that has not finished yet.
func (e *Economy) closeExecution(ctx context.Context, id string, r sandbox.Result,
	close func(context.Context, store.Tx, stamp, store.Execution, sandbox.Result) (store.Execution, error)) (store.Execution, error) {
	var out store.Execution
	err := e.writeExecution(ctx, id, func(tx store.Tx, s stamp, ex store.Execution) error {
		if ex.Status == store.ExecFinished {
			return fail(CodeConflict, "execution %s already finished", id)
		}
		var err error
		out, err = close(ctx, tx, s, ex, r)
		return err
	})
	return out, err
}

func (e *Economy) finishTx(ctx context.Context, tx store.Tx, s stamp, ex store.Execution, r sandbox.Result) (store.Execution, error) {
	e.tokens.forgetExecution(ex.ID) // its token stops working
	ex.Status = store.ExecFinished
	if ex.Started.IsZero() {
		ex.Started = s.now
	}
	ex.Ended = r.EndedAt
	if ex.Ended.IsZero() {
		ex.Ended = s.now
	}
	ex.ExitCode, ex.Reason, ex.Detail = r.ExitCode, string(r.Reason), r.Detail
	ex.CPUSeconds, ex.PeakMemory = r.CPUSeconds, r.PeakMemory
	ex.OutputSize, ex.Dropped = int64(len(r.Output)), r.OutputDropped
	if err := tx.UpdateExecution(ctx, ex); err != nil {
		return ex, err
	}
	if err := tx.SaveOutput(ctx, ex.ID, r.Output); err != nil {
		return ex, err
	}
	if err := emit(ctx, tx, s, "execution.finished", ex.AgentID, ex.ID, map[string]any{"execution_id": ex.ID,
		"reason": ex.Reason, "exit_code": ex.ExitCode, "detail": ex.Detail, "cpu_seconds": ex.CPUSeconds,
		"peak_memory": ex.PeakMemory, "wall_seconds": ex.Ended.Sub(ex.Started).Seconds(),
		"output_bytes": ex.OutputSize}); err != nil {
		return ex, err
	}
	a, err := tx.GetAgent(ctx, ex.AgentID)
	if err != nil || a.Status != store.AgentAlive {
		return ex, err
	}
	has, err := tx.HasPendingBidFor(ctx, ex.AgentID)
	if err != nil || has {
		return ex, err
	}
	return ex, e.die(ctx, tx, s, ex.AgentID, DeathNoBid)
}

// InterruptExecution records an execution the system itself cut short (a
// shutdown or a crash of the referee, not the agent's doing). The agent is not
// charged for it: its payment is refunded from system:burn into a new pending
// bid for the same bundle, so it wakes again instead of dying for want of a
// bid. The interrupted execution itself never runs again.
func (e *Economy) InterruptExecution(ctx context.Context, id string, r sandbox.Result) (store.Execution, error) {
	return e.closeExecution(ctx, id, r, e.interruptTx)
}

func (e *Economy) interruptTx(ctx context.Context, tx store.Tx, s stamp, ex store.Execution, r sandbox.Result) (store.Execution, error) {
	if err := e.reinstateBid(ctx, tx, s, ex); err != nil {
		return ex, err
	}
	return e.finishTx(ctx, tx, s, ex, r)
}

// reinstateBid refunds an interrupted execution's payment into a new pending
// bid of its payer for the same agent and bundle.
func (e *Economy) reinstateBid(ctx context.Context, tx store.Tx, s stamp, ex store.Execution) error {
	if ex.Paid <= 0 {
		return nil
	}
	won, err := tx.GetBid(ctx, ex.BidID)
	if err != nil {
		return err
	}
	payer, err := tx.GetAgent(ctx, won.PayerID)
	if err != nil || payer.Status != store.AgentAlive {
		return err // a dead payer's credits are gone; nothing to restore
	}
	if agent, err := tx.GetAgent(ctx, ex.AgentID); err != nil || agent.Status != store.AgentAlive {
		return err // a dead agent cannot wake again; a bid for it would only burn the payer's credits
	}
	b := store.Bid{ID: newID("bid"), AgentID: ex.AgentID, PayerID: won.PayerID, Amount: ex.Paid, Bundle: ex.Bundle,
		Status: store.BidPending, Created: s.now, CreatedCycle: s.cycle, ExpiresCycle: s.cycle + e.set.BidTTLCycles}
	if _, err := post(ctx, tx, s, ledger.Posting{Kind: ledger.KindRefund, From: ledger.BurnAccount,
		To: ledger.HoldAccount(won.PayerID), Amount: ex.Paid, Ref: b.ID,
		Memo: "execution " + ex.ID + " was interrupted by the system", AgentID: won.PayerID}); err != nil {
		return err
	}
	if err := tx.InsertBid(ctx, &b); err != nil {
		return err
	}
	return emit(ctx, tx, s, "bid.reinstated", won.PayerID, b.ID, map[string]any{"bid_id": b.ID,
		"agent_id": b.AgentID, "payer_id": b.PayerID, "amount": b.Amount, "bundle": b.Bundle,
		"interrupted_execution": ex.ID, "expires_cycle": b.ExpiresCycle})
}

// RecoverExecutions closes executions left running by a previous process
// (a crash or kill -9) as killed, freeing their resources and reinstating
// their bids (see InterruptExecution). Queued executions never started, so
// they are kept and will run. It returns the closed ids.
func (e *Economy) RecoverExecutions(ctx context.Context, detail string) ([]string, error) {
	var closed []string
	err := e.write(ctx, func(tx store.Tx) error {
		closed = nil // the store may run fn again
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		running, err := tx.ListExecutions(ctx, store.ExecutionFilter{Statuses: []string{store.ExecRunning}})
		if err != nil {
			return err
		}
		for _, ex := range running {
			r := sandbox.Result{ExitCode: -1, Reason: sandbox.ReasonKilled, Detail: detail, EndedAt: s.now}
			if _, err := e.interruptTx(ctx, tx, s, ex, r); err != nil {
				return err
			}
			closed = append(closed, ex.ID)
		}
		return nil
	})
	return closed, err
}

// QueuedExecutions lists executions waiting to start, oldest first.
func (e *Economy) QueuedExecutions(ctx context.Context) ([]store.Execution, error) {
	var out []store.Execution
	err := e.st.Read(ctx, func(tx store.Tx) error {
		list, err := tx.ListExecutions(ctx, store.ExecutionFilter{Statuses: []string{store.ExecQueued}})
		for i := len(list) - 1; i >= 0; i-- {
			out = append(out, list[i])
		}
		return err
	})
	return out, err
}

// Principal is who is calling the API.
type Principal struct {
	AgentID     string
	ExecutionID string
	Operator    bool
}

// Authenticate resolves an execution token to its agent. The token is valid
// only while its execution runs and before its deadline, and only while the
// agent lives.
func (e *Economy) Authenticate(ctx context.Context, token string) (Principal, error) {
	hash := ids.HashToken(token)
	if p, ok := e.tokens.get(hash, e.now()); ok {
		return p, nil
	}
	var p Principal
	var deadline time.Time
	err := e.st.Read(ctx, func(tx store.Tx) error {
		ex, err := tx.ExecutionByToken(ctx, hash)
		if errors.Is(err, store.ErrNotFound) {
			return fail(CodeUnauthorized, "unknown token")
		}
		if err != nil {
			return err
		}
		if ex.Status != store.ExecRunning {
			return fail(CodeUnauthorized, "token expired: execution %s ended at %s", ex.ID, rfc3339(ex.Ended))
		}
		if now := e.now(); now.After(ex.Deadline) {
			return fail(CodeUnauthorized, "token expired: execution %s passed its deadline %s", ex.ID, rfc3339(ex.Deadline))
		}
		a, err := tx.GetAgent(ctx, ex.AgentID)
		if err != nil {
			return err
		}
		if a.Status != store.AgentAlive {
			return fail(CodeUnauthorized, "token revoked: agent %s is dead (%s)", a.ID, a.DeathReason)
		}
		p, deadline = Principal{AgentID: ex.AgentID, ExecutionID: ex.ID}, ex.Deadline
		return nil
	})
	if err != nil {
		return Principal{}, err
	}
	e.tokens.put(hash, p, deadline, e.now())
	return p, nil
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// unitOf names the unit a resource's price is quoted in.
func unitOf(r market.Resource) string {
	switch r {
	case market.CPU:
		return "credits per core-second"
	case market.Memory:
		return "credits per MB-second"
	case market.Tokens:
		return "credits per token"
	case market.Attention:
		return "credits per slot"
	}
	return fmt.Sprintf("credits per %s", r)
}

// writeExecution runs fn in a write transaction with the transaction's time
// stamp and execution id as it stands in it.
func (e *Economy) writeExecution(ctx context.Context, id string, fn func(tx store.Tx, s stamp, ex store.Execution) error) error {
	return e.write(ctx, func(tx store.Tx) error {
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		ex, err := tx.GetExecution(ctx, id)
		if err != nil {
			return err
		}
		return fn(tx, s, ex)
	})
}
