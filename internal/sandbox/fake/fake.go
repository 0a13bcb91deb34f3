// Package fake is a scriptable ExecutionSandbox for tests of the runtime, the
// API and the economy: instead of starting a process it runs a Go function
// (the "agent") that receives the Spec, may call the API with the token in
// its environment, and returns what it printed and how it ended.
//
// It enforces the deadline like a real backend (the agent's context ends and
// the result is a timeout) but it contains nothing: never use it to run
// untrusted code.
package fake

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/bpagents/bpagents/internal/sandbox"
)

// Agent is the behaviour of a fake execution. It should return when ctx ends.
type Agent func(ctx context.Context, spec sandbox.Spec) (output string, exitCode int)

// Sandbox runs Agent functions.
type Sandbox struct {
	agent Agent

	mu      sync.Mutex
	started []sandbox.Spec
}

// New returns a fake sandbox running agent for every execution.
func New(agent Agent) *Sandbox { return &Sandbox{agent: agent} }

// Started returns the specs of every execution started so far.
func (s *Sandbox) Started() []sandbox.Spec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sandbox.Spec(nil), s.started...)
}

func (s *Sandbox) Name() string { return "fake" }

func (s *Sandbox) Capabilities() sandbox.Capabilities {
	return sandbox.Capabilities{Description: "fake sandbox for tests: runs Go functions, contains nothing"}
}

func (s *Sandbox) ReapOrphans(ctx context.Context) ([]string, error) { return nil, nil }

func (s *Sandbox) Close() error { return nil }

// Start runs the agent function in a goroutine.
func (s *Sandbox) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Handle, error) {
	if len(spec.Command) == 0 {
		return nil, errors.New("fake: empty command")
	}
	s.mu.Lock()
	s.started = append(s.started, spec)
	s.mu.Unlock()
	runCtx, cancel := context.WithDeadline(context.Background(), spec.Deadline)
	h := &handle{cancel: cancel, done: make(chan struct{})}
	h.res.StartedAt = time.Now()
	go func() {
		out, code := s.agent(runCtx, spec)
		h.mu.Lock()
		h.res.EndedAt = time.Now()
		h.res.Output, h.res.ExitCode, h.res.Reason = []byte(out), code, sandbox.ReasonExited
		switch {
		case h.killed:
			h.res.Reason, h.res.Detail = sandbox.ReasonKilled, "stopped"
		case errors.Is(runCtx.Err(), context.DeadlineExceeded):
			h.res.Reason, h.res.Detail = sandbox.ReasonTimeout, "deadline passed"
		}
		h.mu.Unlock()
		cancel()
		close(h.done)
	}()
	return h, nil
}

type handle struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	killed bool
	res    sandbox.Result
}

func (h *handle) Wait(ctx context.Context) (sandbox.Result, error) {
	select {
	case <-h.done:
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.res, nil
	case <-ctx.Done():
		return sandbox.Result{}, ctx.Err()
	}
}

func (h *handle) Stop(ctx context.Context, grace time.Duration) error { return h.Kill(ctx) }

func (h *handle) Kill(ctx context.Context) error {
	h.mu.Lock()
	h.killed = true
	h.mu.Unlock()
	h.cancel()
	return nil
}

func (h *handle) Inspect(ctx context.Context) (sandbox.Status, error) {
	select {
	case <-h.done:
		return sandbox.Status{}, nil
	default:
		return sandbox.Status{Running: true}, nil
	}
}
