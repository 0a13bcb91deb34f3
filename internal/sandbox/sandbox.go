// Package sandbox owns the contract between the runtime and the things that run
// untrusted agent code: the ExecutionSandbox driver interface, the limits a run
// gets, the result it reports, and the entrypoint rules of the agent contract.
//
// Backends live in sub-packages (process, docker, fake). This package must never
// import a backend, touch the database or know about credits: a sandbox runs a
// command under limits and reports what happened, nothing more.
package sandbox

import (
	"context"
	"errors"
	"time"
)

// Reason says why an execution ended.
type Reason string

const (
	ReasonExited       Reason = "exited"        // the agent process ended by itself
	ReasonTimeout      Reason = "timeout"       // the deadline passed and the sandbox was killed
	ReasonOOM          Reason = "oom"           // the kernel killed it for exceeding its memory
	ReasonKilled       Reason = "killed"        // stopped by the operator, a shutdown or a crash
	ReasonError        Reason = "error"         // the sandbox could not run it
	ReasonNoEntrypoint Reason = "no_entrypoint" // the workspace names nothing to run
)

// Limits are the resources of the won bundle, enforced by the OS.
type Limits struct {
	CPUMillis   int64         // CPU in thousandths of a core
	MemoryBytes int64         // hard memory limit, no swap
	Duration    time.Duration // wall clock, then SIGKILL
	MaxProcs    int64         // process (and thread) count
}

// Spec is everything a backend needs to start one execution.
type Spec struct {
	ExecutionID string
	AgentID     string
	// AgentNum is a small stable number unique to the agent; backends that run
	// each agent under its own user id derive the uid from it.
	AgentNum int64
	// Workspace is the absolute host path of the agent's workspace. It is the
	// working directory and the only place the agent may keep files.
	Workspace string
	// Command is the resolved entrypoint (see ResolveEntrypoint), relative to
	// the workspace when it names a file there.
	Command []string
	// Env holds the contract's variables (AGENT_ID, EXECUTION_ID, AGENT_TOKEN,
	// SYSTEM_SERVICE_URL, ENV_JSON_PATH). Backends add PATH, HOME and LANG and
	// nothing else. Backends rewrite ENV_JSON_PATH when the workspace is seen
	// at another path inside the sandbox.
	Env    map[string]string
	Limits Limits
	// Deadline is the hard kill time; the backend enforces it even if nobody
	// calls Stop.
	Deadline time.Time
	// OutputLimit caps captured output; head and tail are kept.
	OutputLimit int
}

// Result is what an execution left behind.
type Result struct {
	ExitCode   int
	Reason     Reason
	Detail     string // human-readable cause for error, oom, killed
	CPUSeconds float64
	PeakMemory int64 // bytes
	Output     []byte
	// OutputDropped is how many bytes were cut from the middle of the output.
	OutputDropped int64
	StartedAt     time.Time
	EndedAt       time.Time
}

// Status is a running execution's state as seen by Inspect.
type Status struct {
	Running    bool
	CPUSeconds float64
	Memory     int64
}

// Capabilities says what a backend enforces on this host, so callers and
// operators can tell containment from best effort.
type Capabilities struct {
	Namespaces       bool // PID/mount/IPC/UTS isolation
	CgroupLimits     bool // memory, CPU and pids enforced by cgroups
	Rlimits          bool // rlimit fallbacks applied
	UserIsolation    bool // each agent runs under its own non-root identity
	NetworkIsolation bool // only the system API is reachable
	Description      string
}

// ExecutionSandbox is a driver that runs executions. Implementations must be
// safe for concurrent use.
type ExecutionSandbox interface {
	// Name is the backend's configuration name ("process", "docker", …).
	Name() string
	// Capabilities reports what this backend enforces on this host.
	Capabilities() Capabilities
	// Start returns once the agent's process is running under its limits.
	// The execution is killed at spec.Deadline whatever else happens.
	Start(ctx context.Context, spec Spec) (Handle, error)
	// ReapOrphans kills and removes sandboxes left by an earlier run of this
	// system instance (after a crash) and returns the execution ids it found.
	ReapOrphans(ctx context.Context) ([]string, error)
	// Close releases backend resources; running handles are not touched.
	Close() error
}

// AgentNetwork is implemented by backends that put executions on a network
// of their own, from which the host's loopback is out of reach. The system
// API must then also listen at APIHost, and the backend must learn the port
// so that executions reach the API there and nothing else.
type AgentNetwork interface {
	// APIHost is the host's IP address on the sandbox network.
	APIHost() string
	// AllowAPI lets executions reach the system API at APIHost():port.
	AllowAPI(ctx context.Context, port int) error
}

// Handle is one started execution.
type Handle interface {
	// Wait blocks until the execution ends and returns its result. ctx only
	// bounds the wait; it does not stop the execution. Wait may be called
	// more than once and returns the same result.
	Wait(ctx context.Context) (Result, error)
	// Stop asks the agent to end (SIGTERM or equivalent) and kills it after
	// grace. The result's reason is ReasonKilled.
	Stop(ctx context.Context, grace time.Duration) error
	// Kill ends the execution at once. The result's reason is ReasonKilled.
	Kill(ctx context.Context) error
	// Inspect reports the execution's current state and usage.
	Inspect(ctx context.Context) (Status, error)
}

// ErrNoEntrypoint is returned by ResolveEntrypoint when a workspace names
// nothing to run.
var ErrNoEntrypoint = errors.New("no entrypoint: no agent.json command, no main.py and no executable main")
