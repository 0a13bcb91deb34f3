package economy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/bpagents/bpagents/internal/agents"
	"github.com/bpagents/bpagents/internal/ids"
	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// Death reasons.
const (
	DeathNoBid    = "no_bid"   // its execution ended without a pending bid
	DeathBankrupt = "bankrupt" // no credits and no pending bid
	DeathKilled   = "killed"   // the operator ended it
)

// GenesisID is the first agent.
const GenesisID = "genesis"

// Bootstrap prepares a fresh or existing economy: system accounts, resource
// markets (prices kept, capacities from configuration), and on first start
// the genesis agent with its credits, workspace and first bid. It reports
// whether genesis was created now.
func (e *Economy) Bootstrap(ctx context.Context) (bool, error) {
	if err := e.ws.Prepare(); err != nil {
		return false, err
	}
	created := false
	err := e.write(ctx, func(tx store.Tx) error {
		created = false // the store may run fn again
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		if err := ledger.EnsureSystemAccounts(ctx, tx, s.now); err != nil {
			return err
		}
		if err := e.ensureMarkets(ctx, tx); err != nil {
			return err
		}
		alive, dead, err := tx.CountAgents(ctx)
		if err != nil {
			return err
		}
		if alive+dead > 0 {
			return nil
		}
		created = true
		return nil
	})
	if err != nil || !created {
		return false, err
	}
	if _, err := agents.Install(e.genesis, e.ws.Dir(GenesisID), e.set.SpawnLimits); err != nil {
		return false, err
	}
	_, err = e.createAgent(ctx, CreateAgentRequest{
		ID: GenesisID, Credits: e.set.GenesisCredits,
		Bid: &BidSpec{Amount: e.set.GenesisBid, Bundle: e.set.GenesisBundle},
	}, e.ws.Dir(GenesisID), "genesis")
	return err == nil, err
}

// ensureMarkets creates each resource's market row with its initial price,
// and updates capacities to the configured ones.
func (e *Economy) ensureMarkets(ctx context.Context, tx store.Tx) error {
	states, err := tx.ListResourceStates(ctx)
	if err != nil {
		return err
	}
	have := map[market.Resource]store.ResourceState{}
	for _, s := range states {
		have[s.Resource] = s
	}
	for _, r := range market.Resources {
		s, ok := have[r]
		if !ok {
			s = store.ResourceState{Resource: r, Price: e.set.InitialPrices.Of(r)}
		}
		s.Capacity = e.set.Capacity.Of(r)
		if err := tx.SaveResourceState(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// CreateAgentRequest is an operator's request for a new agent.
type CreateAgentRequest struct {
	// ID is the new agent's id; empty picks one.
	ID string `json:"id,omitempty"`
	// FromDir is a project directory on the server host to copy.
	FromDir string `json:"from_dir,omitempty"`
	// Files is a project given inline (relative path → content).
	Files map[string]string `json:"files,omitempty"`
	// Credits are minted to the new agent.
	Credits money.Micro `json:"credits"`
	// Bid, if set, is placed for the agent from its credits so it wakes.
	Bid *BidSpec `json:"bid,omitempty"`
}

// BidSpec is a bid's amount and bundle.
type BidSpec struct {
	Amount money.Micro   `json:"amount"`
	Bundle market.Bundle `json:"bundle"`
}

// CreateAgent makes an agent from a project directory or inline files, mints
// its credits and optionally places its first bid. It is an operator action.
func (e *Economy) CreateAgent(ctx context.Context, req CreateAgentRequest) (AgentView, error) {
	if req.ID == "" {
		req.ID = ids.Agent()
	}
	if !ids.ValidAgentID(req.ID) {
		return AgentView{}, invalid("id", "%q is not a valid agent id (1-63 of a-z, 0-9, '-', '_'; not reserved)", req.ID)
	}
	if req.Credits < 0 || req.Credits > money.Max {
		return AgentView{}, invalid("credits", "must be between 0 and %s", money.Max)
	}
	if (req.FromDir == "") == (len(req.Files) == 0) {
		return AgentView{}, invalid("from_dir", "give exactly one of from_dir and files")
	}
	if req.Bid != nil {
		if err := e.checkBidSpec(*req.Bid); err != nil {
			return AgentView{}, err
		}
	}
	dir := e.ws.Dir(req.ID)
	if empty, err := agents.IsEmpty(dir); err != nil {
		return AgentView{}, err
	} else if !empty {
		return AgentView{}, fail(CodeConflict, "workspace %s already exists and is not empty", dir)
	}
	if req.FromDir != "" {
		info, err := os.Stat(req.FromDir)
		if err != nil || !info.IsDir() {
			return AgentView{}, invalid("from_dir", "%q is not a readable directory", req.FromDir)
		}
		if err := agents.CopyWorkspace(req.FromDir, dir, e.set.SpawnLimits); err != nil {
			return AgentView{}, invalid("from_dir", "%v", err)
		}
	} else {
		if err := agents.ValidateFiles(req.Files, e.set.SpawnLimits); err != nil {
			return AgentView{}, invalid("files", "%v", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return AgentView{}, err
		}
		if err := agents.WriteFiles(dir, req.Files); err != nil {
			os.RemoveAll(dir)
			return AgentView{}, err
		}
	}
	v, err := e.createAgent(ctx, req, dir, "operator")
	if err != nil {
		os.RemoveAll(dir)
	}
	return v, err
}

// createAgent registers an agent whose workspace is ready.
func (e *Economy) createAgent(ctx context.Context, req CreateAgentRequest, dir, by string) (AgentView, error) {
	var view AgentView
	err := e.write(ctx, func(tx store.Tx) error {
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		a := store.Agent{ID: req.ID, Status: store.AgentAlive, Lineage: []string{}, Workspace: dir,
			Created: s.now, CreatedCycle: s.cycle}
		if err := tx.InsertAgent(ctx, &a); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return fail(CodeConflict, "agent %q already exists", req.ID)
			}
			return err
		}
		if err := ledger.OpenAgentAccounts(ctx, tx, a.ID, s.now); err != nil {
			return err
		}
		if err := emit(ctx, tx, s, "agent.created", a.ID, a.ID, map[string]any{
			"workspace": dir, "credits": req.Credits, "by": by}); err != nil {
			return err
		}
		if req.Credits > 0 {
			if _, err := post(ctx, tx, s, ledger.Posting{Kind: ledger.KindEndowment, From: ledger.MintAccount,
				To: a.ID, Amount: req.Credits, Ref: a.ID, Memo: "created by " + by, AgentID: a.ID}); err != nil {
				return err
			}
		}
		if req.Bid != nil {
			if _, err := e.placeBid(ctx, tx, s, a.ID, a.ID, *req.Bid); err != nil {
				return err
			}
		}
		view, err = agentView(ctx, tx, a)
		return err
	})
	return view, err
}

// SpawnRequest is an agent's request for a child.
type SpawnRequest struct {
	InitialCredits money.Micro       `json:"initial_credits"`
	Files          map[string]string `json:"files,omitempty"`
	// CopyWorkspace copies the parent's workspace (minus env.json) first;
	// files, if given, are written over the copy. It defaults to true when no
	// files are given and false otherwise.
	CopyWorkspace *bool    `json:"copy_workspace,omitempty"`
	Bid           *BidSpec `json:"bid,omitempty"`
	// ParentID may name the caller; naming anyone else is refused.
	ParentID string `json:"parent_id,omitempty"`
}

// SpawnResult describes a new child.
type SpawnResult struct {
	ChildID        string      `json:"child_id"`
	Workspace      string      `json:"workspace"`
	Lineage        []string    `json:"lineage"`
	Fee            money.Micro `json:"fee"`
	InitialCredits money.Micro `json:"initial_credits"`
	Bid            *BidView    `json:"bid,omitempty"`
}

// Spawn creates a child of parent: the parent pays the fee (burned) and the
// endowment (to the child); the child's workspace is a copy of the parent's
// and/or the given files; lineage is parent + parent's lineage.
func (e *Economy) Spawn(ctx context.Context, parent string, req SpawnRequest, idem *Idem) (SpawnResult, error) {
	if req.ParentID != "" && req.ParentID != parent {
		return SpawnResult{}, fail(CodeForbidden, "parent_id %q is not the calling agent %q", req.ParentID, parent)
	}
	if req.InitialCredits < 0 || req.InitialCredits > money.Max {
		return SpawnResult{}, invalid("initial_credits", "must be between 0 and %s", money.Max)
	}
	if err := agents.ValidateFiles(req.Files, e.set.SpawnLimits); err != nil {
		return SpawnResult{}, invalid("files", "%v", err)
	}
	if req.Bid != nil {
		if err := e.checkBidSpec(*req.Bid); err != nil {
			return SpawnResult{}, err
		}
		if req.Bid.Amount > req.InitialCredits {
			return SpawnResult{}, invalid("bid.amount", "%s exceeds initial_credits %s: the child's bid is paid from its endowment",
				req.Bid.Amount, req.InitialCredits)
		}
	}
	if idem != nil {
		// A retried spawn must not copy a second workspace: answer from the record.
		var prior SpawnResult
		found := false
		err := e.st.Read(ctx, func(tx store.Tx) error {
			rec, err := tx.GetIdempotency(ctx, idem.Principal, idem.Key)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			found = true
			if rec.RequestHash != idem.Hash {
				return fail(CodeIdempotencyReuse, "Idempotency-Key %q was already used for a different request", idem.Key)
			}
			return jsonUnmarshal(rec.Body, &prior)
		})
		if err != nil || found {
			return prior, err
		}
	}
	copyWS := len(req.Files) == 0
	if req.CopyWorkspace != nil {
		copyWS = *req.CopyWorkspace
	}
	childID := ids.Agent()
	dir := e.ws.Dir(childID)
	if err := e.prepareChildWorkspace(parent, dir, copyWS, req.Files); err != nil {
		return SpawnResult{}, err
	}
	var res SpawnResult
	err := e.write(ctx, func(tx store.Tx) error {
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		res, err = idempotent(ctx, tx, idem, s.now, func() (SpawnResult, error) {
			return e.spawnTx(ctx, tx, s, parent, childID, dir, req)
		})
		return err
	})
	if err != nil || res.ChildID != childID {
		os.RemoveAll(dir)
	}
	return res, err
}

func (e *Economy) prepareChildWorkspace(parent, dir string, copyWS bool, files map[string]string) error {
	if copyWS {
		if err := agents.CopyWorkspace(e.ws.Dir(parent), dir, e.set.SpawnLimits); err != nil {
			if errors.Is(err, agents.ErrTooLarge) {
				return fail(CodeLimit, "parent workspace is too large to copy: %v", err)
			}
			return fmt.Errorf("spawn: %w", err)
		}
	} else if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("spawn: %w", err)
	}
	if err := agents.WriteFiles(dir, files); err != nil {
		os.RemoveAll(dir)
		var fe *agents.FileError
		if errors.As(err, &fe) {
			return invalid("files", "%v", err)
		}
		return fmt.Errorf("spawn: %w", err)
	}
	return nil
}

func (e *Economy) spawnTx(ctx context.Context, tx store.Tx, s stamp, parentID, childID, dir string, req SpawnRequest) (SpawnResult, error) {
	parent, err := e.liveAgent(ctx, tx, parentID)
	if err != nil {
		return SpawnResult{}, err
	}
	bal, err := ledger.AgentBalances(ctx, tx, parentID)
	if err != nil {
		return SpawnResult{}, err
	}
	if need := e.set.SpawnFee + req.InitialCredits; need > bal.Available {
		return SpawnResult{}, &Error{Code: CodeInsufficientFunds,
			Detail: fmt.Sprintf("spawning costs %s (fee %s + initial_credits %s) but %s has %s available",
				need, e.set.SpawnFee, req.InitialCredits, parentID, bal.Available),
			Extra: map[string]any{"need": need, "available": bal.Available}}
	}
	lineage := append([]string{parentID}, parent.Lineage...)
	child := store.Agent{ID: childID, Status: store.AgentAlive, ParentID: parentID, Lineage: lineage,
		Workspace: dir, Created: s.now, CreatedCycle: s.cycle}
	if err := tx.InsertAgent(ctx, &child); err != nil {
		return SpawnResult{}, err
	}
	if err := ledger.OpenAgentAccounts(ctx, tx, childID, s.now); err != nil {
		return SpawnResult{}, err
	}
	if e.set.SpawnFee > 0 {
		if _, err := post(ctx, tx, s, ledger.Posting{Kind: ledger.KindSpawnFee, From: parentID, To: ledger.BurnAccount,
			Amount: e.set.SpawnFee, Ref: childID, AgentID: parentID}); err != nil {
			return SpawnResult{}, err
		}
	}
	if req.InitialCredits > 0 {
		if _, err := post(ctx, tx, s, ledger.Posting{Kind: ledger.KindEndowment, From: parentID, To: childID,
			Amount: req.InitialCredits, Ref: childID, AgentID: parentID}); err != nil {
			return SpawnResult{}, err
		}
	}
	if err := emit(ctx, tx, s, "agent.spawned", childID, parentID, map[string]any{
		"parent": parentID, "lineage": lineage, "initial_credits": req.InitialCredits, "fee": e.set.SpawnFee,
		"workspace": dir}); err != nil {
		return SpawnResult{}, err
	}
	res := SpawnResult{ChildID: childID, Workspace: dir, Lineage: lineage, Fee: e.set.SpawnFee, InitialCredits: req.InitialCredits}
	if req.Bid != nil {
		b, err := e.placeBid(ctx, tx, s, childID, childID, *req.Bid)
		if err != nil {
			return SpawnResult{}, err
		}
		v := bidView(b)
		res.Bid = &v
	} else if req.InitialCredits == 0 {
		if err := e.die(ctx, tx, s, childID, DeathBankrupt); err != nil {
			return SpawnResult{}, err
		}
	}
	return res, nil
}

// liveAgent returns an agent that must exist and be alive.
func (e *Economy) liveAgent(ctx context.Context, tx store.Tx, id string) (store.Agent, error) {
	a, err := tx.GetAgent(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return a, &Error{Code: CodeNotFound, Detail: fmt.Sprintf("agent %q does not exist", id), Err: err}
	}
	if err != nil {
		return a, err
	}
	if a.Status != store.AgentAlive {
		return a, fail(CodeConflict, "agent %q is dead (%s)", id, a.DeathReason)
	}
	return a, nil
}

// die ends an agent: its pending bids are voided (holds released to their
// payers), its remaining credits burned, its status recorded. Its workspace
// is kept for inspection; its tokens stop working because the agent is dead.
func (e *Economy) die(ctx context.Context, tx store.Tx, s stamp, agentID, reason string) error {
	e.tokens.forgetAgent(agentID) // its tokens stop working
	bids, err := tx.ListBids(ctx, store.BidFilter{Party: agentID, Status: store.BidPending})
	if err != nil {
		return err
	}
	for _, b := range bids {
		if err := e.closeBid(ctx, tx, s, b, store.BidVoid, "agent "+agentID+" died"); err != nil {
			return err
		}
	}
	if err := e.cancelQueued(ctx, tx, s, agentID); err != nil {
		return err
	}
	bal, err := ledger.AgentBalances(ctx, tx, agentID)
	if err != nil {
		return err
	}
	if bal.Available > 0 {
		if _, err := post(ctx, tx, s, ledger.Posting{Kind: ledger.KindDeath, From: agentID, To: ledger.BurnAccount,
			Amount: bal.Available, Ref: agentID, Memo: reason, AgentID: agentID}); err != nil {
			return err
		}
	}
	if err := tx.MarkAgentDead(ctx, agentID, reason, s.now, s.cycle); err != nil {
		return err
	}
	return emit(ctx, tx, s, "agent.died", agentID, agentID, map[string]any{"reason": reason, "burned": bal.Available})
}

// cancelQueued closes a dying agent's executions that have not started: a
// dead agent's code never runs. Their payment stays burned, like the rest of
// its credits.
func (e *Economy) cancelQueued(ctx context.Context, tx store.Tx, s stamp, agentID string) error {
	queued, err := tx.ListExecutions(ctx, store.ExecutionFilter{AgentID: agentID, Statuses: []string{store.ExecQueued}})
	if err != nil {
		return err
	}
	for _, ex := range queued {
		ex.Status, ex.Started, ex.Ended = store.ExecFinished, s.now, s.now
		ex.ExitCode, ex.Reason, ex.Detail = -1, "killed", "its agent died before it started"
		if err := tx.UpdateExecution(ctx, ex); err != nil {
			return err
		}
		if err := emit(ctx, tx, s, "execution.finished", agentID, ex.ID, map[string]any{"execution_id": ex.ID,
			"reason": ex.Reason, "exit_code": ex.ExitCode, "detail": ex.Detail}); err != nil {
			return err
		}
	}
	return nil
}

// checkStranded applies the death rule to an idle agent whose last chance to
// wake just went away (its bid expired or was cancelled by its payer): an
// agent that is not running, has no pending bid and no credits can never
// execute again, so it dies "bankrupt". An agent that still has credits
// stays, dormant: it costs nothing, and any agent may wake it with a bid
// for it (for_agent), as a parent may wake its child.
func (e *Economy) checkStranded(ctx context.Context, tx store.Tx, s stamp, agentID string) error {
	a, err := tx.GetAgent(ctx, agentID)
	if err != nil || a.Status != store.AgentAlive {
		return err
	}
	running, err := tx.ListExecutions(ctx, store.ExecutionFilter{AgentID: agentID,
		Statuses: []string{store.ExecQueued, store.ExecRunning}, Limit: 1})
	if err != nil || len(running) > 0 {
		return err
	}
	if has, err := tx.HasPendingBidFor(ctx, agentID); err != nil || has {
		return err
	}
	bal, err := ledger.AgentBalances(ctx, tx, agentID)
	if err != nil {
		return err
	}
	if bal.Available == 0 && bal.Held == 0 {
		return e.die(ctx, tx, s, agentID, DeathBankrupt)
	}
	return nil
}

// Kill ends an agent at the operator's request.
func (e *Economy) Kill(ctx context.Context, agentID string) error {
	return e.write(ctx, func(tx store.Tx) error {
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		if _, err := e.liveAgent(ctx, tx, agentID); err != nil {
			return err
		}
		return e.die(ctx, tx, s, agentID, DeathKilled)
	})
}

// GenesisProject exposes the embedded project for tools.
func (e *Economy) GenesisProject() fs.FS { return e.genesis }
