package economy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// MaxMemoBytes bounds a transfer memo.
const MaxMemoBytes = 1024

// TransferRequest pays another agent.
type TransferRequest struct {
	ToID   string      `json:"to_id"`
	Amount money.Micro `json:"amount"`
	Memo   string      `json:"memo,omitempty"`
	// FromID may name the caller; naming anyone else is refused.
	FromID string `json:"from_id,omitempty"`
}

// TransferResult is a completed payment.
type TransferResult struct {
	TransferID int64       `json:"transfer_id"`
	FromID     string      `json:"from_id"`
	ToID       string      `json:"to_id"`
	Amount     money.Micro `json:"amount"`
	Memo       string      `json:"memo,omitempty"`
	// Balance is the payer's available balance afterwards.
	Balance money.Micro `json:"balance"`
}

// Transfer moves credits from the calling agent to another live agent.
func (e *Economy) Transfer(ctx context.Context, actor string, req TransferRequest, idem *Idem) (TransferResult, error) {
	if req.FromID != "" && req.FromID != actor {
		return TransferResult{}, fail(CodeForbidden, "from_id %q is not the calling agent %q: agents can only spend their own credits", req.FromID, actor)
	}
	if err := checkAmount("amount", req.Amount); err != nil {
		return TransferResult{}, err
	}
	if req.ToID == "" {
		return TransferResult{}, invalid("to_id", "is required")
	}
	if req.ToID == actor {
		return TransferResult{}, invalid("to_id", "cannot pay yourself")
	}
	if len(req.Memo) > MaxMemoBytes || !storableText(req.Memo) {
		return TransferResult{}, invalid("memo", "must be valid UTF-8 without NUL characters, at most %d bytes", MaxMemoBytes)
	}
	var res TransferResult
	err := e.write(ctx, func(tx store.Tx) error {
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		res, err = idempotent(ctx, tx, idem, s.now, func() (TransferResult, error) {
			if _, err := e.liveAgent(ctx, tx, actor); err != nil {
				return TransferResult{}, err
			}
			if _, err := e.liveAgent(ctx, tx, req.ToID); err != nil {
				return TransferResult{}, err
			}
			t, err := post(ctx, tx, s, ledger.Posting{Kind: ledger.KindTransfer, From: actor, To: req.ToID,
				Amount: req.Amount, Memo: req.Memo, Ref: req.ToID, AgentID: actor})
			if err != nil {
				return TransferResult{}, fundsError(err)
			}
			acct, err := tx.GetAccount(ctx, actor)
			if err != nil {
				return TransferResult{}, err
			}
			return TransferResult{TransferID: t.ID, FromID: actor, ToID: req.ToID, Amount: req.Amount,
				Memo: req.Memo, Balance: acct.Balance}, nil
		})
		return err
	})
	return res, err
}

// Mint creates credits for an agent: an operator action.
func (e *Economy) Mint(ctx context.Context, agentID string, amount money.Micro, memo string, idem *Idem) (TransferResult, error) {
	if err := checkAmount("amount", amount); err != nil {
		return TransferResult{}, err
	}
	if len(memo) > MaxMemoBytes || !storableText(memo) {
		return TransferResult{}, invalid("memo", "must be valid UTF-8 without NUL characters, at most %d bytes", MaxMemoBytes)
	}
	var res TransferResult
	err := e.write(ctx, func(tx store.Tx) error {
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		res, err = idempotent(ctx, tx, idem, s.now, func() (TransferResult, error) {
			if _, err := e.liveAgent(ctx, tx, agentID); err != nil {
				return TransferResult{}, err
			}
			t, err := post(ctx, tx, s, ledger.Posting{Kind: ledger.KindMint, From: ledger.MintAccount, To: agentID,
				Amount: amount, Memo: memo, Ref: agentID, AgentID: agentID})
			if err != nil {
				return TransferResult{}, err
			}
			acct, err := tx.GetAccount(ctx, agentID)
			if err != nil {
				return TransferResult{}, err
			}
			return TransferResult{TransferID: t.ID, FromID: ledger.MintAccount, ToID: agentID, Amount: amount,
				Memo: memo, Balance: acct.Balance}, nil
		})
		return err
	})
	return res, err
}

// checkAmount refuses zero, negative and over-large amounts.
func checkAmount(field string, m money.Micro) error {
	if m <= 0 {
		return invalid(field, "must be greater than 0, got %s", m)
	}
	if m > money.Max {
		return invalid(field, "must be at most %s", money.Max)
	}
	return nil
}

// fundsError turns a ledger shortfall into an agent-readable refusal.
func fundsError(err error) error {
	var ife *ledger.InsufficientFundsError
	if errors.As(err, &ife) {
		return &Error{Code: CodeInsufficientFunds, Err: err,
			Detail: fmt.Sprintf("amount %s exceeds the available balance %s", ife.Need, ife.Have),
			Extra:  map[string]any{"need": ife.Need, "available": ife.Have}}
	}
	return err
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
