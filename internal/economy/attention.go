package economy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// Human attention (SPEC §9): an execution whose bundle won the attention
// resource may write one prompt for the operator. Prompts wait in a queue
// (highest bid first, then oldest) until the operator rates them, which
// mints Σ score × reward weight credits to the agent, or until they expire.

// Score bounds.
const (
	MinScore = 0
	MaxScore = 10
)

// MaxReasonBytes bounds the operator's reason for a rating.
const MaxReasonBytes = 4096

// PromptRequest is an agent's prompt for the operator.
type PromptRequest struct {
	Content string `json:"content"`
	// BidAmount, optional, is paid by the agent and burned; it ranks the
	// prompt higher in the operator's queue.
	BidAmount money.Micro `json:"bid_amount,omitempty"`
	// AgentID may name the caller; naming anyone else is refused.
	AgentID string `json:"agent_id,omitempty"`
}

// Scores are the operator's three ratings of a prompt, each 0–10.
type Scores struct {
	Interesting    int `json:"interesting"`
	Useful         int `json:"useful"`
	Understandable int `json:"understandable"`
}

// Points is the sum of the three scores.
func (s Scores) Points() int { return s.Interesting + s.Useful + s.Understandable }

// PromptView is a prompt as the operator (and its author) sees it.
type PromptView struct {
	ID          string      `json:"id"`
	AgentID     string      `json:"agent_id"`
	ExecutionID string      `json:"execution_id"`
	Content     string      `json:"content"`
	BidAmount   money.Micro `json:"bid_amount"`
	Status      string      `json:"status"`
	Cycle       int64       `json:"cycle"`
	CreatedAt   string      `json:"created_at"`
	ExpiresAt   string      `json:"expires_at"`
	// Scores, Reason and RatedAt are set once the prompt is rated.
	Scores  *Scores     `json:"scores,omitempty"`
	Reason  string      `json:"reason,omitempty"`
	Reward  money.Micro `json:"reward"`
	RatedAt string      `json:"rated_at,omitempty"`
}

func promptView(p store.Prompt) PromptView {
	v := PromptView{ID: p.ID, AgentID: p.AgentID, ExecutionID: p.ExecutionID, Content: p.Content,
		BidAmount: p.BidAmount, Status: p.Status, Cycle: p.Cycle, CreatedAt: rfc3339(p.Created),
		ExpiresAt: rfc3339(p.ExpiresAt), Reason: p.Reason, Reward: p.Reward, RatedAt: rfc3339(p.RatedAt)}
	if p.Status == store.PromptRated {
		v.Scores = &Scores{Interesting: p.Interesting, Useful: p.Useful, Understandable: p.Understandable}
	}
	return v
}

// SubmitPrompt queues a prompt for the operator. Only an execution whose
// bundle holds attention may submit, and only once; the optional bid is
// paid by the agent and burned.
func (e *Economy) SubmitPrompt(ctx context.Context, who Principal, req PromptRequest, idem *Idem) (PromptView, error) {
	actor := who.AgentID
	if req.AgentID != "" && req.AgentID != actor {
		return PromptView{}, fail(CodeForbidden, "agent_id %q is not the calling agent %q", req.AgentID, actor)
	}
	if strings.TrimSpace(req.Content) == "" {
		return PromptView{}, invalid("content", "is required: write the prompt for the operator to read")
	}
	if len(req.Content) > e.set.MaxPromptBytes {
		return PromptView{}, invalid("content", "is %d bytes, at most %d allowed", len(req.Content), e.set.MaxPromptBytes)
	}
	if !storableText(req.Content) {
		return PromptView{}, invalid("content", "must be valid UTF-8 without NUL characters")
	}
	if req.BidAmount < 0 || req.BidAmount > money.Max {
		return PromptView{}, invalid("bid_amount", "must be between 0 and %s, got %s", money.Max, req.BidAmount)
	}
	if actor == "" || who.ExecutionID == "" {
		return PromptView{}, fail(CodeForbidden, "prompts are accepted only from inside an execution that holds attention")
	}
	var view PromptView
	err := e.write(ctx, func(tx store.Tx) error {
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		view, err = idempotent(ctx, tx, idem, s.now, func() (PromptView, error) {
			return e.submitPromptTx(ctx, tx, s, actor, who.ExecutionID, req)
		})
		return err
	})
	return view, err
}

func (e *Economy) submitPromptTx(ctx context.Context, tx store.Tx, s stamp, actor, execID string, req PromptRequest) (PromptView, error) {
	if _, err := e.liveAgent(ctx, tx, actor); err != nil {
		return PromptView{}, err
	}
	ex, err := tx.GetExecution(ctx, execID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && ex.AgentID != actor) {
		return PromptView{}, fail(CodeForbidden, "execution %s is not an execution of agent %s", execID, actor)
	}
	if err != nil {
		return PromptView{}, err
	}
	if ex.Status != store.ExecRunning {
		return PromptView{}, fail(CodeConflict, "execution %s is %s: prompts are accepted only while it runs", ex.ID, ex.Status)
	}
	if ex.Bundle.Attention < 1 {
		return PromptView{}, &Error{Code: CodeForbidden,
			Detail: fmt.Sprintf("execution %s did not win attention: its bundle has attention %d; to write a prompt, "+
				"bid for a bundle with attention 1 and submit from the execution it wins", ex.ID, ex.Bundle.Attention),
			Extra: map[string]any{"execution_id": ex.ID, "attention": ex.Bundle.Attention}}
	}
	prior, err := tx.PromptOfExecution(ctx, ex.ID)
	if err == nil {
		return PromptView{}, &Error{Code: CodeConflict,
			Detail: fmt.Sprintf("execution %s already submitted prompt %s: one prompt per execution", ex.ID, prior.ID),
			Extra:  map[string]any{"prompt_id": prior.ID}}
	}
	if !errors.Is(err, store.ErrNotFound) {
		return PromptView{}, err
	}
	p := store.Prompt{ID: newID("pr"), AgentID: actor, ExecutionID: ex.ID, Content: req.Content,
		BidAmount: req.BidAmount, Status: store.PromptPending, Created: s.now, Cycle: s.cycle,
		ExpiresAt: s.now.Add(e.set.PromptTTL)}
	if p.BidAmount > 0 {
		if _, err := post(ctx, tx, s, ledger.Posting{Kind: ledger.KindPromptBid, From: actor, To: ledger.BurnAccount,
			Amount: p.BidAmount, Ref: p.ID, Memo: "prompt queue bid", AgentID: actor}); err != nil {
			return PromptView{}, fundsError(err)
		}
	}
	if err := tx.InsertPrompt(ctx, &p); errors.Is(err, store.ErrConflict) {
		// The unique index on the execution backs the check above.
		return PromptView{}, &Error{Code: CodeConflict, Err: err,
			Detail: fmt.Sprintf("execution %s already submitted a prompt: one prompt per execution", ex.ID)}
	} else if err != nil {
		return PromptView{}, err
	}
	if err := emit(ctx, tx, s, "prompt.submitted", actor, p.ID, map[string]any{"prompt_id": p.ID,
		"execution_id": ex.ID, "bid_amount": p.BidAmount, "bytes": len(p.Content), "expires_at": rfc3339(p.ExpiresAt)}); err != nil {
		return PromptView{}, err
	}
	// Answer with the row as stored (times at the store's precision), so the
	// answer and later reads agree.
	p, err = tx.GetPrompt(ctx, p.ID)
	return promptView(p), err
}

// promptStatuses are the statuses a listing may ask for.
var promptStatuses = []string{store.PromptPending, store.PromptRated, store.PromptExpired}

// Prompts lists prompts with a status (default pending), optionally of one
// agent. Pending prompts come in the operator's queue order: highest bid
// first, then oldest; ones whose time ran out (to be expired at the next
// clearing) are left out. Rated and expired prompts come newest first.
func (e *Economy) Prompts(ctx context.Context, status, agentID string, limit int) ([]PromptView, error) {
	if status == "" {
		status = store.PromptPending
	}
	known := false
	for _, s := range promptStatuses {
		known = known || s == status
	}
	if !known {
		return nil, invalid("status", "must be pending, rated or expired, got %q", status)
	}
	if limit <= 0 || limit > 500 {
		limit = 100
	}
	now := e.now()
	out := []PromptView{}
	err := e.st.Read(ctx, func(tx store.Tx) error {
		list, err := tx.ListPrompts(ctx, store.PromptFilter{Status: status, AgentID: agentID,
			Queue: status == store.PromptPending, Limit: limit})
		for _, p := range list {
			if p.Status == store.PromptPending && !now.Before(p.ExpiresAt) {
				continue
			}
			out = append(out, promptView(p))
		}
		return err
	})
	return out, err
}

// Prompt returns one prompt.
func (e *Economy) Prompt(ctx context.Context, id string) (PromptView, error) {
	var v PromptView
	err := e.st.Read(ctx, func(tx store.Tx) error {
		p, err := getPrompt(ctx, tx, id)
		v = promptView(p)
		return err
	})
	return v, err
}

func getPrompt(ctx context.Context, tx store.Tx, id string) (store.Prompt, error) {
	p, err := tx.GetPrompt(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return p, &Error{Code: CodeNotFound, Detail: fmt.Sprintf("prompt %q does not exist", id), Err: err}
	}
	return p, err
}

// RatingRequest is the operator's rating of a prompt. Every score is
// required.
type RatingRequest struct {
	PromptID       string `json:"prompt_id"`
	Interesting    *int   `json:"interesting"`
	Useful         *int   `json:"useful"`
	Understandable *int   `json:"understandable"`
	Reason         string `json:"reason,omitempty"`
}

// RatingResult is a recorded rating and what it minted.
type RatingResult struct {
	Prompt PromptView `json:"prompt"`
	// Points is the sum of the scores; Reward = Points × Weight, or 0 when
	// the agent died before the rating.
	Points     int         `json:"points"`
	Weight     money.Micro `json:"weight"`
	Reward     money.Micro `json:"reward"`
	TransferID int64       `json:"transfer_id,omitempty"`
	// Detail says in words what was minted, or why nothing was.
	Detail string `json:"detail"`
}

// checkRating validates a rating request and returns its scores.
func checkRating(req RatingRequest) (Scores, error) {
	if req.PromptID == "" {
		return Scores{}, invalid("prompt_id", "is required")
	}
	var sc Scores
	for _, f := range []struct {
		name string
		v    *int
		dst  *int
	}{{"interesting", req.Interesting, &sc.Interesting}, {"useful", req.Useful, &sc.Useful},
		{"understandable", req.Understandable, &sc.Understandable}} {
		if f.v == nil {
			return Scores{}, invalid(f.name, "is required: a whole number from %d to %d", MinScore, MaxScore)
		}
		if *f.v < MinScore || *f.v > MaxScore {
			return Scores{}, invalid(f.name, "must be a whole number from %d to %d, got %d", MinScore, MaxScore, *f.v)
		}
		*f.dst = *f.v
	}
	if len(req.Reason) > MaxReasonBytes || !storableText(req.Reason) {
		return Scores{}, invalid("reason", "must be valid UTF-8 without NUL characters, at most %d bytes", MaxReasonBytes)
	}
	return sc, nil
}

// RatePrompt records the operator's rating of a pending prompt and mints
// Σ score × reward weight credits from system:mint to its agent. If the
// agent died meanwhile, the rating is recorded and nothing is minted.
func (e *Economy) RatePrompt(ctx context.Context, req RatingRequest, idem *Idem) (RatingResult, error) {
	sc, err := checkRating(req)
	if err != nil {
		return RatingResult{}, err
	}
	var res RatingResult
	err = e.write(ctx, func(tx store.Tx) error {
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		res, err = idempotent(ctx, tx, idem, s.now, func() (RatingResult, error) {
			return e.ratePromptTx(ctx, tx, s, req.PromptID, sc, req.Reason)
		})
		return err
	})
	return res, err
}

func (e *Economy) ratePromptTx(ctx context.Context, tx store.Tx, s stamp, id string, sc Scores, reason string) (RatingResult, error) {
	p, err := getPrompt(ctx, tx, id)
	if err != nil {
		return RatingResult{}, err
	}
	switch {
	case p.Status == store.PromptRated:
		return RatingResult{}, fail(CodeConflict, "prompt %s was already rated at %s (reward %s): a prompt is rated once",
			p.ID, rfc3339(p.RatedAt), p.Reward)
	case p.Status == store.PromptExpired:
		return RatingResult{}, fail(CodeConflict, "prompt %s expired unrated at %s", p.ID, rfc3339(p.ExpiresAt))
	case p.Status != store.PromptPending:
		return RatingResult{}, fail(CodeConflict, "prompt %s is %s, only pending prompts can be rated", p.ID, p.Status)
	case !s.now.Before(p.ExpiresAt):
		return RatingResult{}, fail(CodeConflict, "prompt %s expired at %s: prompts wait %s for a rating",
			p.ID, rfc3339(p.ExpiresAt), e.set.PromptTTL)
	}
	res := RatingResult{Points: sc.Points(), Weight: e.set.RewardWeight}
	agent, err := tx.GetAgent(ctx, p.AgentID)
	if err != nil {
		return RatingResult{}, err
	}
	switch {
	case agent.Status != store.AgentAlive:
		res.Detail = fmt.Sprintf("agent %s died (%s) before the rating: the rating is recorded, nothing was minted",
			agent.ID, agent.DeathReason)
	default:
		res.Reward = money.Micro(res.Points) * res.Weight
		if res.Reward == 0 {
			res.Detail = fmt.Sprintf("%d points × %s: nothing was minted", res.Points, res.Weight)
			break
		}
		t, err := post(ctx, tx, s, ledger.Posting{Kind: ledger.KindReward, From: ledger.MintAccount, To: agent.ID,
			Amount: res.Reward, Ref: p.ID, AgentID: agent.ID,
			Memo: fmt.Sprintf("prompt rated %d/%d/%d", sc.Interesting, sc.Useful, sc.Understandable)})
		if err != nil {
			return RatingResult{}, err
		}
		res.TransferID = t.ID
		res.Detail = fmt.Sprintf("minted %s credits to %s: %d points × %s", res.Reward, agent.ID, res.Points, res.Weight)
	}
	p.Status, p.Reason, p.Reward, p.RatedAt = store.PromptRated, reason, res.Reward, s.now
	p.Interesting, p.Useful, p.Understandable = sc.Interesting, sc.Useful, sc.Understandable
	if err := tx.ClosePrompt(ctx, p); err != nil {
		return RatingResult{}, err
	}
	if err := emit(ctx, tx, s, "prompt.rated", p.AgentID, p.ID, map[string]any{"prompt_id": p.ID,
		"interesting": sc.Interesting, "useful": sc.Useful, "understandable": sc.Understandable,
		"points": res.Points, "weight": res.Weight, "reward": res.Reward, "reason": reason,
		"agent_alive": agent.Status == store.AgentAlive}); err != nil {
		return RatingResult{}, err
	}
	p, err = tx.GetPrompt(ctx, p.ID)
	res.Prompt = promptView(p)
	return res, err
}

// expirePrompts closes pending prompts whose time ran out; Clear calls it in
// its transaction. A prompt's bid stays burned.
func (e *Economy) expirePrompts(ctx context.Context, tx store.Tx, s stamp) (int, error) {
	due, err := tx.DuePrompts(ctx, s.now)
	if err != nil {
		return 0, err
	}
	for _, p := range due {
		p.Status = store.PromptExpired
		if err := tx.ClosePrompt(ctx, p); err != nil {
			return 0, err
		}
		if err := emit(ctx, tx, s, "prompt.expired", p.AgentID, p.ID, map[string]any{"prompt_id": p.ID,
			"execution_id": p.ExecutionID, "bid_amount": p.BidAmount, "expires_at": rfc3339(p.ExpiresAt)}); err != nil {
			return 0, err
		}
	}
	return len(due), nil
}

// MessagePage is a page of messages, newest first.
type MessagePage struct {
	Messages []MessageView `json:"messages"`
	// NextBefore continues the listing with ?before= (0 when there is nothing older).
	NextBefore int64 `json:"next_before"`
}

// HumanMessages lists the messages agents sent to the operator ("human"),
// newest first, below the message sequence number before when it is set.
// Reading them marks nothing.
func (e *Economy) HumanMessages(ctx context.Context, before int64, limit int) (MessagePage, error) {
	if limit <= 0 || limit > 500 {
		limit = 100
	}
	page := MessagePage{Messages: []MessageView{}}
	err := e.st.Read(ctx, func(tx store.Tx) error {
		msgs, err := tx.ListMessages(ctx, store.MessageFilter{To: HumanID, BeforeSeq: before, Limit: limit})
		for _, m := range msgs {
			page.Messages = append(page.Messages, messageView(m))
		}
		if len(msgs) == limit {
			page.NextBefore = msgs[len(msgs)-1].Seq
		}
		return err
	})
	return page, err
}
