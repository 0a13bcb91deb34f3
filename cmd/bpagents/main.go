// Command bpagents runs the agent economy (`bpagents up`) and is the
// operator's client of its API (status, audit, agent create, …).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/bpagents/bpagents/internal/sandbox/process"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `bpagents — a runtime for economies of autonomous agents

Usage:
  bpagents up [flags]                 run API, scheduler, runner (and later dashboard);
                                      --sandbox auto|docker|process (auto: docker when the
                                      engine answers and the image exists, else process)
  bpagents status [--json]            population, cycle, money, markets
  bpagents audit [--server URL]       check every ledger invariant (exit 1 on a violation)
  bpagents agents [--json]            the agent directory
  bpagents agent create --from DIR --credits N [--bid AMOUNT]
                                      make an agent from a project directory
  bpagents events [--after N] [--type T] [--agent ID]
  bpagents logs EXECUTION_ID          captured output of an execution
  bpagents prompts [--status S] [--json]
                                      prompts to the operator (pending: highest bid first)
  bpagents rate [PROMPT_ID] [--interesting N --useful N --understandable N --reason TEXT]
                                      rate prompts (interactive without score flags); mints credits
  bpagents messages [--json]          messages agents sent to "human", newest first
  bpagents image build [--force]      build the bp-agent-runner image for the docker sandbox
                                      without a registry (debootstrap + Docker Engine API)
  bpagents simulate [--cycles 200] [--mechanism first-price|critical]
                                      run N cycles as fast as possible, audit each, summarise
  bpagents version

Client commands take --server URL (default from --home's config or
http://127.0.0.1:8000) and read the operator token from --home
(<home>/data/operator.token) or BPAGENTS_TOKEN.

Run 'bpagents <command> --help' for a command's flags.
`

func main() {
	// The process sandbox re-executes this binary to set limits up before an
	// agent's code runs; that path never returns.
	process.MaybeRunInit()

	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1], os.Args[2:])
	var exit exitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		os.Exit(int(exit))
	default:
		fmt.Fprintln(os.Stderr, "bpagents:", err)
		os.Exit(1)
	}
}

// exitError ends the program with a status after output was already written.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func run(ctx context.Context, cmd string, args []string) error {
	switch cmd {
	case "up":
		return cmdUp(ctx, args)
	case "status":
		return cmdStatus(ctx, args)
	case "audit":
		return cmdAudit(ctx, args)
	case "agents":
		return cmdAgents(ctx, args)
	case "agent":
		return cmdAgent(ctx, args)
	case "events":
		return cmdEvents(ctx, args)
	case "logs":
		return cmdLogs(ctx, args)
	case "prompts":
		return cmdPrompts(ctx, args)
	case "rate":
		return cmdRate(ctx, args)
	case "messages":
		return cmdMessages(ctx, args)
	case "image":
		return cmdImage(ctx, args)
	case "simulate":
		return cmdSimulate(ctx, args)
	case "version":
		fmt.Println("bpagents", version)
		return nil
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
