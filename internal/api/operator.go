package api

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// EventView is one audit event.
type EventView struct {
	Seq     int64           `json:"seq"`
	Time    string          `json:"time"`
	Cycle   int64           `json:"cycle"`
	Type    string          `json:"type"`
	AgentID string          `json:"agent_id,omitempty"`
	Ref     string          `json:"ref,omitempty"`
	Data    json.RawMessage `json:"data"`
}

// EventPage is a page of events.
type EventPage struct {
	Events []EventView `json:"events"`
	// LastSeq is the highest seq in the log, to resume with ?after= (on
	// PostgreSQL, the highest below which no event can still appear).
	LastSeq int64 `json:"last_seq"`
}

func eventView(e store.Event) EventView {
	return EventView{Seq: e.Seq, Time: e.Time.UTC().Format(time.RFC3339Nano), Cycle: e.Cycle, Type: e.Type,
		AgentID: e.AgentID, Ref: e.Ref, Data: json.RawMessage(e.Data)}
}

func (s *Server) events(ctx context.Context, c *Call[NoBody]) (EventPage, error) {
	after, err := c.IntQuery("after", 0)
	if err != nil {
		return EventPage{}, err
	}
	before, err := c.IntQuery("before", 0)
	if err != nil {
		return EventPage{}, err
	}
	limit, err := c.IntQuery("limit", 100)
	if err != nil {
		return EventPage{}, err
	}
	if after > 0 && before > 0 {
		return EventPage{}, refuse(economy.CodeInvalid, "give at most one of after and before")
	}
	f := store.EventFilter{AfterSeq: after, BeforeSeq: before, AgentID: c.Query("agent"), Type: c.Query("type"),
		Limit: clampLimit(limit)}
	// Paging forward stops at the settled horizon, so that the next page,
	// after the last seq of this one, misses nothing (see stream.go); and
	// LastSeq, where a follower starts, is never past it.
	h, err := store.SettledOf(ctx, s.eco.Store())
	if err != nil {
		return EventPage{}, err
	}
	var out EventPage
	err = s.eco.Store().Read(ctx, func(tx store.Tx) error {
		list, err := tx.ListEvents(ctx, f)
		if err != nil {
			return err
		}
		out.Events = make([]EventView, 0, len(list))
		for _, e := range list {
			if before == 0 && e.Seq > h.EventSeq {
				break
			}
			out.Events = append(out.Events, eventView(e))
		}
		last, err := tx.LastEventSeq(ctx)
		out.LastSeq = min(last, h.EventSeq)
		return err
	})
	return out, err
}

// ExecutionView is an execution record.
type ExecutionView struct {
	ID          string        `json:"id"`
	AgentID     string        `json:"agent_id"`
	BidID       string        `json:"bid_id"`
	Status      string        `json:"status"`
	Cycle       int64         `json:"cycle"`
	Bundle      market.Bundle `json:"bundle"`
	Paid        money.Micro   `json:"paid"`
	Sandbox     string        `json:"sandbox,omitempty"`
	Created     string        `json:"created"`
	Started     string        `json:"started,omitempty"`
	Deadline    string        `json:"deadline,omitempty"`
	Ended       string        `json:"ended,omitempty"`
	ExitCode    int           `json:"exit_code"`
	Reason      string        `json:"reason,omitempty"`
	Detail      string        `json:"detail,omitempty"`
	CPUSeconds  float64       `json:"cpu_seconds"`
	PeakMemory  int64         `json:"peak_memory_bytes"`
	OutputBytes int64         `json:"output_bytes"`
	OutputCut   int64         `json:"output_dropped_bytes"`
	WallSeconds float64       `json:"wall_seconds"`
	TokensUsed  int64         `json:"tokens_used"`
	// RunnerID is the runner that claimed it (empty until one did).
	RunnerID string `json:"runner_id,omitempty"`
}

func executionView(e store.Execution) ExecutionView {
	f := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	v := ExecutionView{ID: e.ID, AgentID: e.AgentID, BidID: e.BidID, Status: e.Status, Cycle: e.Cycle, Bundle: e.Bundle,
		Paid: e.Paid, Sandbox: e.Sandbox, Created: f(e.Created), Started: f(e.Started), Deadline: f(e.Deadline),
		Ended: f(e.Ended), ExitCode: e.ExitCode, Reason: e.Reason, Detail: e.Detail, CPUSeconds: e.CPUSeconds,
		PeakMemory: e.PeakMemory, OutputBytes: e.OutputSize, OutputCut: e.Dropped, TokensUsed: e.TokensUsed,
		RunnerID: e.RunnerID}
	if !e.Ended.IsZero() && !e.Started.IsZero() {
		v.WallSeconds = e.Ended.Sub(e.Started).Seconds()
	}
	return v
}

// ExecutionList is a page of executions.
type ExecutionList struct {
	Executions []ExecutionView `json:"executions"`
}

func (s *Server) listExecutions(ctx context.Context, c *Call[NoBody]) (ExecutionList, error) {
	limit, err := c.IntQuery("limit", 100)
	if err != nil {
		return ExecutionList{}, err
	}
	f := store.ExecutionFilter{AgentID: c.Query("agent"), Limit: clampLimit(limit)}
	if st := c.Query("status"); st != "" {
		if st != store.ExecQueued && st != store.ExecRunning && st != store.ExecFinished {
			return ExecutionList{}, refuse(economy.CodeInvalid, "query parameter status: must be queued, running or finished, got %q", st)
		}
		f.Statuses = []string{st}
	}
	var out ExecutionList
	err = s.eco.Store().Read(ctx, func(tx store.Tx) error {
		list, err := tx.ListExecutions(ctx, f)
		out.Executions = make([]ExecutionView, 0, len(list))
		for _, e := range list {
			out.Executions = append(out.Executions, executionView(e))
		}
		return err
	})
	return out, err
}

func (s *Server) lookupExecution(ctx context.Context, id string) (store.Execution, error) {
	var ex store.Execution
	err := s.eco.Store().Read(ctx, func(tx store.Tx) error {
		var err error
		ex, err = tx.GetExecution(ctx, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return ex, refuse(economy.CodeNotFound, "execution %q does not exist", id)
	}
	return ex, err
}

func (s *Server) getExecution(ctx context.Context, c *Call[NoBody]) (ExecutionView, error) {
	ex, err := s.lookupExecution(ctx, c.R.PathValue("id"))
	return executionView(ex), err
}

// ExecutionLogs is an execution's captured output (stdout and stderr
// interleaved). When the output was longer than the cap, the middle was cut
// and DroppedBytes says how much.
type ExecutionLogs struct {
	ExecutionID  string `json:"execution_id"`
	Output       string `json:"output"`
	Bytes        int    `json:"bytes"`
	DroppedBytes int64  `json:"dropped_bytes"`
}

func (s *Server) executionLogs(ctx context.Context, c *Call[NoBody]) (ExecutionLogs, error) {
	ex, err := s.lookupExecution(ctx, c.R.PathValue("id"))
	if err != nil {
		return ExecutionLogs{}, err
	}
	if ex.Status != store.ExecFinished {
		return ExecutionLogs{}, refuse(economy.CodeConflict, "execution %s is %s: its output is kept when it finishes", ex.ID, ex.Status)
	}
	var out []byte
	err = s.eco.Store().Read(ctx, func(tx store.Tx) error {
		out, err = tx.GetOutput(ctx, ex.ID)
		if errors.Is(err, store.ErrNotFound) {
			out, err = nil, nil
		}
		return err
	})
	text := string(out)
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	return ExecutionLogs{ExecutionID: ex.ID, Output: text, Bytes: len(out), DroppedBytes: ex.Dropped}, err
}
