package economy

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// metaTokensUsed counts model tokens consumed since the last clearing; the
// clearing reads and resets it so the tokens market's utilization reflects
// real use, not reservations.
const metaTokensUsed = "tokens_used_since_clearing"

// Allowance is what an execution may still spend on model tokens.
type Allowance struct {
	ExecutionID string
	AgentID     string
	Tokens      int64 // won by the bundle
	Used        int64 // consumed so far
	Available   money.Micro
}

// Remaining is the tokens left, never negative.
func (a Allowance) Remaining() int64 { return max(a.Tokens-a.Used, 0) }

// InferenceAllowance returns the calling execution's token allowance. The
// execution must be running.
func (e *Economy) InferenceAllowance(ctx context.Context, who Principal) (Allowance, error) {
	var out Allowance
	err := e.st.Read(ctx, func(tx store.Tx) error {
		ex, err := tx.GetExecution(ctx, who.ExecutionID)
		if err != nil {
			return err
		}
		if ex.Status != store.ExecRunning || ex.AgentID != who.AgentID {
			return fail(CodeConflict, "execution %s is not running", ex.ID)
		}
		bal, err := ledger.AgentBalances(ctx, tx, who.AgentID)
		if err != nil {
			return err
		}
		out = Allowance{ExecutionID: ex.ID, AgentID: ex.AgentID, Tokens: ex.Bundle.Tokens, Used: ex.TokensUsed,
			Available: bal.Available}
		return nil
	})
	return out, err
}

// Inference is one completed (or abandoned) model call.
type Inference struct {
	Model            string `json:"model"`
	PromptTokens     int64  `json:"prompt_tokens"`
	CompletionTokens int64  `json:"completion_tokens"`
	// Estimated is set when the upstream sent no usage and the counts were
	// estimated from the text.
	Estimated bool `json:"estimated"`
	Stream    bool `json:"stream"`
	// Aborted is set when the client went away before the answer ended.
	Aborted bool `json:"aborted"`
	// Status is the upstream's HTTP status.
	Status int `json:"status"`
}

// Total is the tokens the call consumed.
func (i Inference) Total() int64 { return i.PromptTokens + i.CompletionTokens }

// InferenceRecord is what recording a call did.
type InferenceRecord struct {
	TokensUsed int64       `json:"tokens_used"`
	Allowance  int64       `json:"allowance"`
	Charged    money.Micro `json:"charged"`
}

// RecordInference adds a call's tokens to its execution (the execution may
// have ended meanwhile: tokens consumed are counted anyway), charges
// pricePerToken × tokens to the agent on top of its bundle — at most what
// it has available, since a balance never goes negative — and writes an
// inference.completed event, all in one transaction.
func (e *Economy) RecordInference(ctx context.Context, who Principal, inf Inference, pricePerToken money.Micro) (InferenceRecord, error) {
	if inf.PromptTokens < 0 || inf.CompletionTokens < 0 {
		return InferenceRecord{}, fmt.Errorf("record inference: negative token counts %+v", inf)
	}
	var rec InferenceRecord
	err := e.write(ctx, func(tx store.Tx) error {
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		ex, err := tx.GetExecution(ctx, who.ExecutionID)
		if err != nil {
			return err
		}
		rec.Allowance = ex.Bundle.Tokens
		if rec.TokensUsed, err = tx.AddTokensUsed(ctx, ex.ID, inf.Total()); err != nil {
			return err
		}
		if err := addTokensSinceClearing(ctx, tx, inf.Total()); err != nil {
			return err
		}
		if pricePerToken > 0 && inf.Total() > 0 {
			if rec.Charged, err = chargeInference(ctx, tx, s, who.AgentID, ex.ID, pricePerToken, inf.Total()); err != nil {
				return err
			}
		}
		return emit(ctx, tx, s, "inference.completed", who.AgentID, ex.ID, map[string]any{"execution_id": ex.ID,
			"model": inf.Model, "prompt_tokens": inf.PromptTokens, "completion_tokens": inf.CompletionTokens,
			"total_tokens": inf.Total(), "tokens_used": rec.TokensUsed, "allowance": rec.Allowance,
			"estimated": inf.Estimated, "stream": inf.Stream, "aborted": inf.Aborted, "status": inf.Status,
			"charged": rec.Charged})
	})
	return rec, err
}

// chargeInference burns the per-token price, capped at the agent's balance.
func chargeInference(ctx context.Context, tx store.Tx, s stamp, agentID, execID string, price money.Micro, tokens int64) (money.Micro, error) {
	cost := price * money.Micro(tokens)
	if tokens > 0 && cost/money.Micro(tokens) != price || cost > money.Max {
		cost = money.Max
	}
	acct, err := tx.GetAccount(ctx, agentID)
	if err != nil {
		return 0, err
	}
	cost = min(cost, acct.Balance)
	if cost <= 0 {
		return 0, nil
	}
	_, err = post(ctx, tx, s, ledger.Posting{Kind: ledger.KindInference, From: agentID, To: ledger.BurnAccount,
		Amount: cost, Ref: execID, Memo: fmt.Sprintf("%d model tokens", tokens), AgentID: agentID})
	return cost, err
}

func addTokensSinceClearing(ctx context.Context, tx store.Tx, n int64) error {
	cur, err := tokensSinceClearing(ctx, tx)
	if err != nil {
		return err
	}
	return tx.SetMeta(ctx, metaTokensUsed, strconv.FormatInt(cur+n, 10))
}

func tokensSinceClearing(ctx context.Context, tx store.Tx) (int64, error) {
	v, err := tx.GetMeta(ctx, metaTokensUsed)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}
