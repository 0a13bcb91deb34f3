package main

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// command describes one subcommand for --help and shell completion.
type command struct {
	Name     string
	Synopsis string // the usage line after "bpagents "
	About    string
	Examples []string
	// Flags lists the flags of commands whose FlagSet completion cannot
	// capture (those that do not call setUsage); the others are read from
	// the FlagSet itself.
	Flags []string
	// Values lists the fixed values some flags take (for completion).
	Values map[string][]string
}

// commands is every subcommand with its help text and examples.
var commands = []command{
	{Name: "up", Synopsis: "up [--home DIR] [--addr HOST:PORT] [--sandbox auto|docker|process] [--cycle 2s] [--database URL] [--config FILE]",
		About: "Runs the whole system in one process: API, scheduler, runner and the dashboard at http://ADDR/.\n" +
			"Every setting can also come from the YAML file or BPAGENTS_* variables.",
		Examples: []string{"bpagents up", "bpagents up --home /srv/econ --addr 0.0.0.0:8000 --cycle 1s",
			"BPAGENTS_LOG_FORMAT=json bpagents up --sandbox process"},
		Values: map[string][]string{"sandbox": {"auto", "docker", "process"}}},
	{Name: "serve", Synopsis: "serve --role api|scheduler|runner|all --database postgres://… [--home DIR] [--addr HOST:PORT] [--runner-id ID] [--runner-slots N] [--public-url URL] [--sandbox auto|docker|process] [--cycle 2s] [--config FILE]",
		About: "Runs one role of a deployment whose processes share one PostgreSQL database (and one home:\n" +
			"the workspaces directory must be the same directory for every runner, e.g. on NFS):\n" +
			"  api        the HTTP API and dashboard on --addr; stateless, run as many replicas as you like\n" +
			"  scheduler  clears the market every cycle while it holds the leader lock; standbys take over\n" +
			"             within seconds when the leader dies, and the leader closes the executions of runners\n" +
			"             whose heartbeats stopped (cluster.runner_timeout) as killed, reinstating their bids\n" +
			"  runner     claims queued executions (FOR UPDATE SKIP LOCKED) and runs them in its sandbox;\n" +
			"             agents reach the API at --public-url\n" +
			"  all        everything in one process, as bpagents up (the only role SQLite allows)",
		Examples: []string{
			"bpagents serve --role api --database \"$DB\" --home /srv/econ --addr 0.0.0.0:8000",
			"bpagents serve --role scheduler --database \"$DB\" --home /srv/econ",
			"bpagents serve --role runner --database \"$DB\" --home /srv/econ --public-url http://api.internal:8000 --runner-slots 8"},
		Values: map[string][]string{"role": {"api", "scheduler", "runner", "all"}, "sandbox": {"auto", "docker", "process"}}},
	{Name: "status", Synopsis: "status [--json]",
		About:    "Population, cycle, credits in circulation next to minted and burned, the sandbox and each market.",
		Examples: []string{"bpagents status", "bpagents status --json | jq .money"}},
	{Name: "agents", Synopsis: "agents [--status alive|dead] [--tree] [--json]",
		About:    "The agent directory: status, balance, executions and parent; --tree draws the lineage.",
		Examples: []string{"bpagents agents", "bpagents agents --tree", "bpagents agents --status dead --json"},
		Values:   map[string][]string{"status": {"alive", "dead"}}},
	{Name: "agent", Synopsis: "agent ID [--limit N] [--json]  |  agent create --from DIR --credits N [--bid AMOUNT] [--attention]",
		About: "agent ID shows one agent: its balances, lineage, children, recent executions and bids\n" +
			"(executions and bids need the operator token).\n" +
			"agent create makes an agent from a project directory on the server's host.",
		Examples: []string{"bpagents agent genesis", "bpagents agent genesis --limit 5 --json",
			"bpagents agent create --from ./my-agent --credits 100 --bid 5",
			"bpagents agent create --from ./asker --credits 50 --bid 10 --attention --duration 5"}},
	{Name: "markets", Synopsis: "markets [--history N] [--json]",
		About:    "Each resource's posted price, utilization and capacity, and the last N clearings.",
		Examples: []string{"bpagents markets", "bpagents markets --history 30", "bpagents markets --json | jq '.state.resources.cpu'"}},
	{Name: "events", Synopsis: "events [--follow] [--agent ID] [--type T] [--after N] [--limit N] [--json]",
		About: "The audit log. Without --follow: events in order from --after. With --follow: the last --limit\n" +
			"events, then new ones as they happen (Server-Sent Events from /events/stream), until interrupted.\n" +
			"--type takes an exact type or a prefix ending in '.'; with --json each event is one JSON line.",
		Examples: []string{"bpagents events --type bid. --limit 20", "bpagents events --follow",
			"bpagents events --follow --agent genesis --type execution.", "bpagents events --follow --json | jq -c 'select(.type==\"agent.spawned\")'"}},
	{Name: "logs", Synopsis: "logs EXECUTION_ID [--json]",
		About:    "The captured stdout and stderr of one finished execution.",
		Examples: []string{"bpagents logs ex_06h1…", "bpagents agent genesis --json | jq -r '.executions[0].id' | xargs bpagents logs"}},
	{Name: "prompts", Synopsis: "prompts [--status pending|rated|expired] [--agent ID] [--limit N] [--json]",
		About:    "Prompts agents wrote for the operator; pending ones in queue order (highest bid first).",
		Examples: []string{"bpagents prompts", "bpagents prompts --status rated --agent genesis"},
		Values:   map[string][]string{"status": {"pending", "rated", "expired"}}},
	{Name: "rate", Synopsis: "rate [PROMPT_ID] [--interesting N --useful N --understandable N --reason TEXT]",
		About: "Rates prompts. Without score flags it is interactive: it shows each pending prompt (or the given\n" +
			"one) in full and asks for the three scores and a reason. With PROMPT_ID and all three score flags it\n" +
			"rates at once. Scores are whole numbers from 0 to 10; a rating mints\n" +
			"(interesting + useful + understandable) × economy.reward_weight credits to the prompt's agent.",
		Examples: []string{"bpagents rate", "bpagents rate p_06h1… --interesting 7 --useful 8 --understandable 9 --reason \"clear\""}},
	{Name: "messages", Synopsis: "messages [--limit N] [--before SEQ] [--json]",
		About:    "Messages agents sent to \"human\", newest first.",
		Examples: []string{"bpagents messages", "bpagents messages --limit 10 --json"}},
	{Name: "mint", Synopsis: "mint AGENT AMOUNT [--memo TEXT] [--json]",
		About:    "Mints AMOUNT credits (a decimal, at most 6 places) from system:mint to a living agent.",
		Examples: []string{"bpagents mint genesis 100", "bpagents mint agent-7 12.5 --memo \"seed capital\""}},
	{Name: "export", Synopsis: "export --what events|ledger --format jsonl|csv [--out FILE] [--after N]",
		About: "Writes the whole audit log or ledger, paged through the API, as JSON lines or CSV (with a\n" +
			"header row). Progress goes to stderr; the file appears complete or not at all.",
		Examples: []string{"bpagents export --what events --format jsonl --out events.jsonl",
			"bpagents export --what ledger --format csv --out ledger.csv",
			"bpagents export --what events --format jsonl | jq -c 'select(.type==\"prompt.rated\")'"},
		Values: map[string][]string{"what": {"events", "ledger"}, "format": {"jsonl", "csv"}}},
	{Name: "audit", Synopsis: "audit [--replay] [--home DIR] [--database URL] [--server URL] [--json]",
		About: "Checks every ledger invariant, reading <home>/data/bpagents.db directly (the server may be running\n" +
			"or stopped), or asking a server with --server. Exits 1 when any invariant is violated.",
		Examples: []string{"bpagents audit --home /srv/econ", "bpagents audit --replay --server http://127.0.0.1:8000"}},
	{Name: "simulate", Flags: []string{"cycles", "mechanism", "every", "progress", "rate", "config", "home", "addr", "sandbox", "cycle", "database"}, Synopsis: "simulate [--cycles 200] [--mechanism first-price|critical] [--home DIR]",
		About:    "Runs genesis and its descendants for N cycles as fast as they execute and summarises.",
		Examples: []string{"bpagents simulate --cycles 200 --mechanism critical --home /tmp/sim1"},
		Values:   map[string][]string{"mechanism": {"first-price", "critical"}}},
	{Name: "image", Flags: []string{"config", "tag", "suite", "mirror", "workdir", "force", "no-install"}, Synopsis: "image build [--force]",
		About:    "Builds the bp-agent-runner image for the docker sandbox.",
		Examples: []string{"bpagents image build"}},
	{Name: "completion", Synopsis: "completion bash|zsh",
		About: "Prints a shell completion script.",
		Examples: []string{"source <(bpagents completion bash)",
			"bpagents completion zsh > \"${fpath[1]}/_bpagents\""}},
	{Name: "version", Synopsis: "version", About: "Prints the version.", Examples: []string{"bpagents version"}},
}

func findCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.Name == name {
			return c, true
		}
	}
	return command{}, false
}

// setUsage gives a FlagSet the command's help: synopsis, description,
// examples and flags.
func setUsage(fs *flag.FlagSet, name string) {
	fs.Usage = func() {
		if usageCapture != nil {
			usageCapture(fs)
			return
		}
		printHelp(fs.Output(), name, fs)
	}
}

// usageCapture, when set, receives the FlagSet of a command run with -h
// instead of printing its help (completion reads the flags this way).
var usageCapture func(fs *flag.FlagSet)

func printHelp(w io.Writer, name string, fs *flag.FlagSet) {
	c, ok := findCommand(name)
	if !ok {
		fmt.Fprintf(w, "Usage: bpagents %s [flags]\n", name)
	} else {
		fmt.Fprintf(w, "Usage: bpagents %s\n\n%s\n", c.Synopsis, c.About)
		if len(c.Examples) > 0 {
			fmt.Fprintln(w, "\nExamples:")
			for _, e := range c.Examples {
				fmt.Fprintln(w, "  "+e)
			}
		}
	}
	if fs != nil {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

// flagNames lists a FlagSet's flags, sorted.
func flagNames(fs *flag.FlagSet) []string {
	var out []string
	fs.VisitAll(func(f *flag.Flag) { out = append(out, f.Name) })
	sort.Strings(out)
	return out
}

func commandNames() []string {
	out := make([]string, 0, len(commands))
	for _, c := range commands {
		out = append(out, c.Name)
	}
	return out
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+prefix)
}
