// Package store owns the persistence contract: the rows the system keeps, the
// transactional interface every database backend implements, and the errors
// callers check. Backends live in sub-packages (sqlite, postgres) and share
// their SQL through sqlstore; storetest is the conformance suite they all pass.
//
// Text the store keeps is valid UTF-8 without NUL characters (PostgreSQL
// cannot hold NUL in text); callers refuse other input before it gets here.
//
// The store never decides anything: it does not check balances, rank bids or
// judge deaths. Domain packages make those decisions inside a transaction the
// store provides, so every change and its audit event commit together.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
)

// Errors returned by every backend.
var (
	// ErrNotFound means the row asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a uniqueness rule was violated (an id already taken).
	ErrConflict = errors.New("conflict")
)

// Store is a database holding one economy.
type Store interface {
	// Write runs fn in a read-write transaction. If fn returns an error (or
	// panics) the transaction is rolled back and nothing it did is kept.
	// Write transactions are serializable: they behave as if they ran one at
	// a time, whatever the number of processes writing.
	//
	// fn may run more than once: a backend that lets writers run
	// concurrently (postgres) runs it again from the start, on a fresh
	// snapshot, when the database aborts the transaction to keep writers
	// serializable. So fn must only act through tx and must reset, not
	// accumulate, anything it reports to its caller (assign results; do not
	// append to an outer slice). Side effects outside the database (files,
	// messages, metrics) belong after Write returns, and fn must never call
	// Write or Read itself: a store may let one writer in at a time.
	Write(ctx context.Context, fn func(tx Tx) error) error
	// Read runs fn once in a read-only snapshot: every read in fn sees the
	// same committed state. A backend may refuse writes in it; none keeps
	// them.
	Read(ctx context.Context, fn func(tx Tx) error) error
	// Backend names the database kind ("sqlite", "postgres").
	Backend() string
	Close() error
}

// Tx is one transaction. Methods take the transaction's context first.
type Tx interface {
	Meta
	Accounts
	Transfers
	Events
	Agents
	Bids
	Executions
	Messages
	Markets
	Idempotency
	Prompts
	Runners
	Balances
}

// Meta holds small named values: the instance id, the cycle counter.
type Meta interface {
	GetMeta(ctx context.Context, key string) (string, error) // ErrNotFound if unset
	SetMeta(ctx context.Context, key, value string) error
}

// Account kinds.
const (
	AccountAgent  = "agent"
	AccountHold   = "hold"
	AccountSystem = "system"
)

// Account is one ledger account. Agent accounts are named by the agent id,
// hold accounts "hold:<agent>", system accounts "system:mint", "system:burn".
type Account struct {
	ID      string
	Kind    string
	AgentID string
	Balance money.Micro
	Created time.Time
}

// Accounts reads and writes ledger accounts. Only package ledger changes balances.
type Accounts interface {
	CreateAccount(ctx context.Context, a Account) error // ErrConflict if it exists
	GetAccount(ctx context.Context, id string) (Account, error)
	// AddToBalance changes a balance by delta and returns the new balance.
	AddToBalance(ctx context.Context, id string, delta money.Micro) (money.Micro, error)
	ListAccounts(ctx context.Context) ([]Account, error)
}

// Transfer is one double-entry movement: amount leaves From and enters To.
type Transfer struct {
	ID      int64
	Kind    string
	From    string
	To      string
	Amount  money.Micro
	Ref     string // the bid, execution, prompt or agent it belongs to
	Memo    string
	Cycle   int64
	Created time.Time
}

// TransferFilter selects transfers, newest first unless Ascending.
type TransferFilter struct {
	Account   string // only transfers touching this account; empty: all
	BeforeID  int64  // descending: ids below this (0: from the newest)
	AfterID   int64  // ascending: ids above this
	Ascending bool
	Limit     int // 0: no limit
}

// Transfers stores ledger movements.
type Transfers interface {
	InsertTransfer(ctx context.Context, t *Transfer) error // sets ID
	ListTransfers(ctx context.Context, f TransferFilter) ([]Transfer, error)
	// EntrySums returns, per account, Σ incoming − Σ outgoing over all transfers.
	EntrySums(ctx context.Context) (map[string]money.Micro, error)
	CountTransfers(ctx context.Context) (int64, error)
}

// Event is one audit log entry.
type Event struct {
	Seq     int64
	Time    time.Time
	Cycle   int64
	Type    string
	AgentID string
	Ref     string
	Data    []byte // JSON object
}

// EventFilter selects events in sequence order.
type EventFilter struct {
	AfterSeq  int64 // ascending from here
	BeforeSeq int64 // when set: descending from here
	AgentID   string
	Type      string // exact type, or a prefix ending in "." such as "bid."
	Limit     int
}

// Events is the append-only audit log.
type Events interface {
	AppendEvent(ctx context.Context, e *Event) error // sets Seq
	ListEvents(ctx context.Context, f EventFilter) ([]Event, error)
	LastEventSeq(ctx context.Context) (int64, error)
}

// Agent statuses.
const (
	AgentAlive = "alive"
	AgentDead  = "dead"
)

// Agent is one registered agent.
type Agent struct {
	Num            int64 // small stable number, assigned by the store
	ID             string
	Status         string
	ParentID       string
	Lineage        []string // parent first, then its ancestors
	Workspace      string
	Created        time.Time
	CreatedCycle   int64
	ExecutionCount int64
	Died           time.Time
	DeathReason    string
	DeathCycle     int64
}

// AgentFilter selects agents.
type AgentFilter struct {
	Status string // empty: all
	Limit  int
}

// Agents is the registry.
type Agents interface {
	InsertAgent(ctx context.Context, a *Agent) error // sets Num; ErrConflict if id taken
	GetAgent(ctx context.Context, id string) (Agent, error)
	ListAgents(ctx context.Context, f AgentFilter) ([]Agent, error)
	CountAgents(ctx context.Context) (alive, dead int64, err error)
	IncrementExecutionCount(ctx context.Context, id string) error
	MarkAgentDead(ctx context.Context, id, reason string, at time.Time, cycle int64) error
}

// Bid statuses.
const (
	BidPending   = "pending"
	BidWon       = "won"
	BidCancelled = "cancelled"
	BidExpired   = "expired"
	BidVoid      = "void" // closed because its agent or payer died
)

// Bid is an all-or-nothing bid for a bundle. PayerID's hold account holds Amount
// while it is pending; AgentID is the agent that wakes if it wins.
type Bid struct {
	Seq          int64 // placement order, assigned by the store
	ID           string
	AgentID      string
	PayerID      string
	Amount       money.Micro
	Bundle       market.Bundle
	Status       string
	Created      time.Time
	CreatedCycle int64
	ExpiresCycle int64
	Closed       time.Time
	ClosedCycle  int64
	Paid         money.Micro
	ExecutionID  string
}

// BidFilter selects bids, newest first.
type BidFilter struct {
	Party  string // bids where this agent pays or wakes
	Status string
	Limit  int
}

// Bids stores market bids.
type Bids interface {
	InsertBid(ctx context.Context, b *Bid) error // sets Seq
	GetBid(ctx context.Context, id string) (Bid, error)
	// PendingBids returns every pending bid in placement order.
	PendingBids(ctx context.Context) ([]Bid, error)
	ListBids(ctx context.Context, f BidFilter) ([]Bid, error)
	CountPendingBids(ctx context.Context, payerID string) (int64, error)
	// HasPendingBidFor reports whether any pending bid would wake agentID.
	HasPendingBidFor(ctx context.Context, agentID string) (bool, error)
	// CloseBid moves a pending bid to a final status. It fails with
	// ErrConflict if the bid is no longer pending.
	CloseBid(ctx context.Context, b Bid) error
}

// Execution statuses.
const (
	ExecQueued   = "queued"
	ExecRunning  = "running"
	ExecFinished = "finished"
)

// Execution is one run of an agent, created when its bid wins.
type Execution struct {
	Seq        int64
	ID         string
	AgentID    string
	BidID      string
	Status     string
	Cycle      int64
	Bundle     market.Bundle
	Paid       money.Micro
	TokenHash  string
	Sandbox    string
	Created    time.Time
	Started    time.Time
	Deadline   time.Time
	Ended      time.Time
	ExitCode   int
	Reason     string
	Detail     string
	CPUSeconds float64
	PeakMemory int64
	OutputSize int64
	Dropped    int64
	// TokensUsed counts model tokens consumed through the intelligence proxy.
	TokensUsed int64
	// RunnerID is the runner that claimed it (empty: unclaimed), Claimed
	// when. A claimed execution runs on that runner and on no other.
	RunnerID string
	Claimed  time.Time
	// KillRequested is when the operator asked to stop it (zero: never); its
	// runner stops it on its next heartbeat.
	KillRequested time.Time
}

// ExecutionFilter selects executions, newest first.
type ExecutionFilter struct {
	AgentID  string
	Statuses []string
	// RunnerID selects executions claimed by this runner; Unclaimed those
	// no runner claimed.
	RunnerID  string
	Unclaimed bool
	Limit     int
}

// Executions stores execution records and their captured output.
type Executions interface {
	InsertExecution(ctx context.Context, e *Execution) error
	GetExecution(ctx context.Context, id string) (Execution, error)
	ListExecutions(ctx context.Context, f ExecutionFilter) ([]Execution, error)
	// ExecutionByToken finds the execution whose token hashes to hash,
	// whatever its status: callers check that it is still running, and can
	// tell a token that expired from one that never existed.
	ExecutionByToken(ctx context.Context, hash string) (Execution, error)
	// UpdateExecution writes every mutable field of e (status, times,
	// result, claim, kill request).
	UpdateExecution(ctx context.Context, e Execution) error
	// AddTokensUsed adds n to an execution's consumed model tokens and
	// returns the new total.
	AddTokensUsed(ctx context.Context, executionID string, n int64) (int64, error)
	SaveOutput(ctx context.Context, executionID string, output []byte) error
	GetOutput(ctx context.Context, executionID string) ([]byte, error)
}

// Message is one message between agents (or to the human operator).
type Message struct {
	Seq     int64
	ID      string
	From    string
	To      string
	Content string
	Created time.Time
	Cycle   int64
	Read    time.Time
}

// Messages stores messages.
type Messages interface {
	InsertMessage(ctx context.Context, m *Message) error
	// Inbox lists messages to agentID, unread first, then newest first.
	Inbox(ctx context.Context, agentID string, limit int) ([]Message, error)
	// ListMessages lists messages newest first, without marking them read.
	ListMessages(ctx context.Context, f MessageFilter) ([]Message, error)
	MarkRead(ctx context.Context, ids []string, at time.Time) error
}

// ResourceState is one market's posted price and last utilization.
type ResourceState struct {
	Resource    market.Resource
	Price       money.Micro
	Capacity    int64
	Utilization float64
}

// Clearing records one cycle's market clearing.
type Clearing struct {
	Cycle       int64
	Time        time.Time
	Mechanism   string
	Pending     int64
	Winners     int64
	Expired     int64
	Revenue     money.Micro
	Allocated   map[market.Resource]int64
	Utilization map[market.Resource]float64
	Prices      map[market.Resource]money.Micro
	DurationUS  int64
}

// Markets stores posted prices and the clearing history.
type Markets interface {
	ListResourceStates(ctx context.Context) ([]ResourceState, error)
	SaveResourceState(ctx context.Context, s ResourceState) error
	InsertClearing(ctx context.Context, c Clearing) error
	ListClearings(ctx context.Context, beforeCycle int64, limit int) ([]Clearing, error)
}

// IdempotencyRecord is the first response to a request made with an
// Idempotency-Key, kept so that retries get the same answer.
type IdempotencyRecord struct {
	Principal   string
	Key         string
	RequestHash string
	Status      int
	Body        []byte
	Created     time.Time
}

// Idempotency stores first responses by (principal, key).
type Idempotency interface {
	GetIdempotency(ctx context.Context, principal, key string) (IdempotencyRecord, error)
	PutIdempotency(ctx context.Context, r IdempotencyRecord) error
}
