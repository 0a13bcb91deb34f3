// Command bpagents runs the agent economy (`bpagents up`) and is the
// operator's client of its API (status, audit, agent create, …).
package main

import (
	"context"
	"errors"
	"flag"
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
  bpagents up [flags]                 run API, scheduler, runner and the dashboard (http://ADDR/);
                                      --sandbox auto|docker|process (auto: docker when the
                                      engine answers and the image exists, else process)
  bpagents serve --role api|scheduler|runner|all [flags]
                                      one role of a deployment sharing a PostgreSQL database
                                      (--database postgres://…): API replicas, a leader-elected
                                      scheduler, runners on any number of hosts
  bpagents status [--json]            population, cycle, money, markets
  bpagents agents [--tree] [--json]   the agent directory, or its lineage tree
  bpagents agent ID [--json]          one agent: balances, lineage, recent executions, bids
  bpagents agent create --from DIR --credits N [--bid AMOUNT] [--attention]
                                      make an agent from a project directory
  bpagents markets [--history N]      prices, utilization, recent clearings
  bpagents events [--follow] [--agent ID] [--type T]
                                      the audit log; --follow streams new events live
  bpagents logs EXECUTION_ID          captured output of an execution
  bpagents prompts [--status S] [--json]
                                      prompts to the operator (pending: highest bid first)
  bpagents rate [PROMPT_ID] [--interesting N --useful N --understandable N --reason TEXT]
                                      rate prompts (interactive without score flags); mints credits
  bpagents messages [--json]          messages agents sent to "human", newest first
  bpagents mint AGENT AMOUNT [--memo TEXT]
                                      mint credits to an agent
  bpagents export --what events|ledger --format jsonl|csv [--out FILE]
                                      the audit log or the ledger as JSON lines or CSV
  bpagents audit [--server URL]       check every ledger invariant (exit 1 on a violation)
  bpagents image build [--force]      build the bp-agent-runner image for the docker sandbox
                                      without a registry (debootstrap + Docker Engine API)
  bpagents simulate [--cycles 200] [--mechanism first-price|critical]
                                      run N cycles as fast as possible, audit each, summarise
  bpagents completion bash|zsh        shell completion script
  bpagents version

Client commands take --server URL (default from --home's config or
http://127.0.0.1:8000) and read the operator token from --home
(<home>/data/operator.token) or BPAGENTS_TOKEN; most take --json.

Run 'bpagents help COMMAND' or 'bpagents COMMAND --help' for a command's flags and examples.
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
	case err == nil, errors.Is(err, flag.ErrHelp): // --help printed the command's help
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
	case "serve":
		return cmdServe(ctx, args)
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
	case "markets":
		return cmdMarkets(ctx, args)
	case "mint":
		return cmdMint(ctx, args)
	case "export":
		return cmdExport(ctx, args)
	case "completion":
		return cmdCompletion(ctx, args)
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
		if len(args) == 1 {
			if _, ok := findCommand(args[0]); ok {
				return run(ctx, args[0], []string{"-h"})
			}
		}
		fmt.Print(usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
