package store

import (
	"context"
	"time"

	"github.com/bpagents/bpagents/internal/money"
)

// Prompt statuses.
const (
	PromptPending = "pending" // waiting in the operator's queue
	PromptRated   = "rated"   // the operator scored it
	PromptExpired = "expired" // nobody rated it before ExpiresAt
)

// Prompt is a message an execution holding the operator's attention wrote
// for the operator, and, once rated, its scores and reward. An execution
// writes at most one prompt.
type Prompt struct {
	Seq         int64 // submission order, assigned by the store
	ID          string
	AgentID     string
	ExecutionID string
	Content     string
	// BidAmount is what the agent paid (burned) to rank higher in the queue.
	BidAmount money.Micro
	Status    string
	Created   time.Time
	Cycle     int64
	ExpiresAt time.Time
	// Scores (0–10 each), the operator's reason, the credits minted and the
	// rating time; zero until rated.
	Interesting    int
	Useful         int
	Understandable int
	Reason         string
	Reward         money.Micro
	RatedAt        time.Time
}

// PromptFilter selects prompts.
type PromptFilter struct {
	Status  string // empty: all
	AgentID string // empty: every agent's
	// Queue orders the operator's way: highest BidAmount first, then oldest
	// first. Otherwise the newest come first.
	Queue bool
	Limit int // 0: no limit
}

// Prompts stores prompts to the operator.
type Prompts interface {
	// InsertPrompt sets Seq. It fails with ErrConflict if the id is taken or
	// the execution already has a prompt.
	InsertPrompt(ctx context.Context, p *Prompt) error
	GetPrompt(ctx context.Context, id string) (Prompt, error)
	// PromptOfExecution returns the execution's prompt, or ErrNotFound.
	PromptOfExecution(ctx context.Context, executionID string) (Prompt, error)
	ListPrompts(ctx context.Context, f PromptFilter) ([]Prompt, error)
	// ClosePrompt moves a pending prompt to p.Status (rated or expired),
	// writing its scores, reason, reward and RatedAt. It fails with
	// ErrConflict if the prompt is no longer pending, ErrNotFound if it does
	// not exist.
	ClosePrompt(ctx context.Context, p Prompt) error
	// DuePrompts lists pending prompts whose ExpiresAt is at or before now,
	// oldest first.
	DuePrompts(ctx context.Context, now time.Time) ([]Prompt, error)
}

// MessageFilter selects messages, newest first.
type MessageFilter struct {
	To        string // only messages to this recipient; empty: all
	Party     string // only messages from or to this agent; empty: all
	BeforeSeq int64  // only messages with Seq below this (0: from the newest)
	Limit     int    // 0: no limit
}
