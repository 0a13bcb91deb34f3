package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/app"
	"github.com/bpagents/bpagents/internal/client"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
)

// clientFlags are the flags every client command shares.
type clientFlags struct {
	server  *string
	home    *string
	cfgPath *string
	json    *bool
}

// clientCommand makes the flag set of a client command: its usage text and
// the flags every client command takes.
func clientCommand(name string) (*flag.FlagSet, clientFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	setUsage(fs, name)
	return fs, addClientFlags(fs)
}

func addClientFlags(fs *flag.FlagSet) clientFlags {
	return clientFlags{
		server:  fs.String("server", "", "API base URL (default: from the configuration, http://127.0.0.1:8000)"),
		home:    fs.String("home", ".", "home directory whose data/operator.token authenticates the operator"),
		cfgPath: fs.String("config", "", "YAML configuration file"),
		json:    fs.Bool("json", false, "print JSON instead of a table"),
	}
}

// client builds an API client: the server from --server or the
// configuration, the operator token from BPAGENTS_TOKEN or --home.
func (f clientFlags) client() (*client.Client, error) {
	cfg, err := config.Load(*f.cfgPath, os.Environ())
	if err != nil {
		return nil, err
	}
	server := *f.server
	if server == "" {
		server = cfg.ServiceURL()
	}
	if u, err := url.Parse(server); err != nil || u.Host == "" {
		return nil, fmt.Errorf("--server %q is not a URL", server)
	}
	token := os.Getenv("BPAGENTS_TOKEN")
	if token == "" {
		tok, err := app.ReadOperatorToken(filepath.Join(*f.home, "data", app.OperatorTokenFile))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		token = tok
	}
	return client.New(server, token), nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdStatus(ctx context.Context, args []string) error {
	fs, cf := clientCommand("status")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var st api.StatusView
	if err := c.Get(ctx, "/status", &st); err != nil {
		return err
	}
	if *cf.json {
		return printJSON(st)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "cycle\t%d\n", st.Cycle)
	fmt.Fprintf(w, "agents\t%d alive, %d dead\n", st.Alive, st.Dead)
	fmt.Fprintf(w, "credits\t%s circulating, %s held, %s minted, %s burned\n",
		st.Money.Circulating, st.Money.Held, st.Money.Minted, st.Money.Burned)
	fmt.Fprintf(w, "bids\t%d pending\n", st.PendingBids)
	fmt.Fprintf(w, "sandbox\t%s (%d running)\n", st.Runtime.Sandbox, st.Runtime.Running)
	for _, r := range st.Runtime.Runners {
		fmt.Fprintf(w, "runner %s\t%s pid %d, %s, %d running, heartbeat %s\n", r.ID, r.Host, r.PID, r.Sandbox, r.Running, r.Heartbeat)
	}
	if st.Runtime.Leader != "" {
		fmt.Fprintf(w, "scheduler\tleader %s\n", st.Runtime.Leader)
	}
	for _, r := range market.Resources {
		m := st.Markets[string(r)]
		fmt.Fprintf(w, "market %s\tprice %s, utilization %.0f%%, capacity %g\n", r, m.Price, m.Utilization*100, m.Capacity)
	}
	return w.Flush()
}

func cmdAudit(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	cf := addClientFlags(fs)
	setUsage(fs, "audit")
	replay := fs.Bool("replay", false, "also rebuild every balance from the event log alone and compare")
	database := fs.String("database", "", "the store to read: sqlite:<path> or postgres://user@host:port/db?sslmode=disable (default: the configuration's, else <home>/data/bpagents.db)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var rep ledger.Report
	var rr *ledger.ReplayReport
	if *cf.server == "" {
		cfg, err := config.Load(*cf.cfgPath, os.Environ())
		if err != nil {
			return err
		}
		cfg.Home = *cf.home
		if *database != "" {
			cfg.Database = *database
		}
		if err := cfg.Validate(); err != nil {
			return err
		}
		if !cfg.IsPostgres() {
			path := cfg.DatabasePath()
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("no database at %s (use --home, --database or --server): %w", path, err)
			}
		}
		db, err := app.OpenStore(ctx, cfg)
		if err != nil {
			return err
		}
		defer db.Close()
		if rep, err = ledger.Audit(ctx, db); err != nil {
			return err
		}
		if *replay {
			r, err := ledger.Replay(ctx, db)
			if err != nil {
				return err
			}
			rr = &r
		}
	} else {
		c, err := cf.client()
		if err != nil {
			return err
		}
		if err := c.Get(ctx, "/admin/audit", &rep); err != nil {
			return err
		}
		if *replay {
			rr = &ledger.ReplayReport{}
			if err := c.Get(ctx, "/admin/replay", rr); err != nil {
				return err
			}
		}
	}
	if *cf.json {
		if err := printJSON(map[string]any{"audit": rep, "replay": rr}); err != nil {
			return err
		}
	} else {
		fmt.Printf("accounts %d, transfers %d, pending bids %d\n", rep.Accounts, rep.Transfers, rep.PendingBids)
		fmt.Printf("minted %s = circulating %s + held %s + burned %s; sum of balances %s\n",
			rep.Minted, rep.Circulating, rep.Held, rep.Burned, rep.Sum)
		for _, v := range rep.Violations {
			fmt.Println("VIOLATION:", v)
		}
		if rep.OK {
			fmt.Println("audit: OK")
		} else {
			fmt.Printf("audit: FAILED (%d violations)\n", len(rep.Violations))
		}
		if rr != nil {
			for _, v := range rr.Violations {
				fmt.Println("REPLAY VIOLATION:", v)
			}
			if rr.OK {
				fmt.Printf("replay: OK (%d ledger events rebuild all %d balances exactly)\n", rr.Events, rr.Accounts)
			} else {
				fmt.Printf("replay: FAILED (%d violations)\n", len(rr.Violations))
			}
		}
	}
	if !rep.OK || (rr != nil && !rr.OK) {
		return exitError(1)
	}
	return nil
}

func cmdAgents(ctx context.Context, args []string) error {
	fs, cf := clientCommand("agents")
	status := fs.String("status", "", "alive or dead")
	tree := fs.Bool("tree", false, "show the lineage tree")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var list api.AgentList
	path := "/agents"
	if *status != "" {
		path += "?status=" + url.QueryEscape(*status)
	}
	if err := c.Get(ctx, path, &list); err != nil {
		return err
	}
	if *cf.json {
		return printJSON(list)
	}
	if *tree {
		printTree(os.Stdout, list.Agents)
		return nil
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tSTATUS\tBALANCE\tHELD\tEXECUTIONS\tPARENT\tDEATH")
	for _, a := range list.Agents {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", a.ID, a.Status, a.Balance, a.Held, a.ExecutionCount, a.ParentID, a.DeathReason)
	}
	return w.Flush()
}

func cmdAgent(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "create" {
		return cmdAgentShow(ctx, args)
	}
	fs := flag.NewFlagSet("agent create", flag.ContinueOnError)
	setUsage(fs, "agent")
	cf := addClientFlags(fs)
	from := fs.String("from", "", "project directory to copy into the new workspace (required)")
	id := fs.String("id", "", "agent id (default: generated)")
	credits := fs.String("credits", "0", "credits minted to the agent")
	bid := fs.String("bid", "", "first bid amount, so the agent wakes (optional)")
	cpu := fs.String("cpu", "0.5", "bid bundle: cores")
	mem := fs.Int64("memory-mb", 256, "bid bundle: memory in MB")
	dur := fs.Int64("duration", 10, "bid bundle: seconds")
	attention := fs.Bool("attention", false, "bid bundle: also the operator's attention, so the first execution may write a prompt")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *from == "" {
		return errors.New("agent create: --from DIR is required")
	}
	abs, err := filepath.Abs(*from)
	if err != nil {
		return err
	}
	req := economy.CreateAgentRequest{ID: *id, FromDir: abs}
	if req.Credits, err = money.Parse(*credits); err != nil {
		return fmt.Errorf("--credits: %w", err)
	}
	if *bid != "" {
		amount, err := money.Parse(*bid)
		if err != nil {
			return fmt.Errorf("--bid: %w", err)
		}
		millis, err := market.ParseCores(*cpu)
		if err != nil {
			return fmt.Errorf("--cpu: %w", err)
		}
		req.Bid = &economy.BidSpec{Amount: amount, Bundle: market.Bundle{CPUMillis: millis, MemoryMB: *mem, DurationSeconds: *dur}}
		if *attention {
			req.Bid.Bundle.Attention = 1
		}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var v economy.AgentView
	if err := c.Post(ctx, "/admin/agents", req, &v); err != nil {
		return err
	}
	if *cf.json {
		return printJSON(v)
	}
	fmt.Printf("created agent %s (balance %s, held %s)\n", v.ID, v.Balance, v.Held)
	return nil
}

func compact(raw json.RawMessage) string {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return string(raw)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		b, _ := json.Marshal(m[k])
		parts = append(parts, k+"="+string(b))
	}
	return strings.Join(parts, " ")
}

func cmdLogs(ctx context.Context, args []string) error {
	fs, cf := clientCommand("logs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: bpagents logs EXECUTION_ID")
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var logs api.ExecutionLogs
	if err := c.Get(ctx, "/executions/"+url.PathEscape(fs.Arg(0))+"/logs", &logs); err != nil {
		return err
	}
	if *cf.json {
		return printJSON(logs)
	}
	out := logs.Output
	if isTerminal(os.Stdout) {
		// Agent output is untrusted: no escape sequences reach a terminal.
		out = safeText(out)
	}
	fmt.Print(out)
	if logs.DroppedBytes > 0 {
		fmt.Fprintf(os.Stderr, "(%d bytes were cut from the middle)\n", logs.DroppedBytes)
	}
	return nil
}

// printTree prints agents as a lineage tree, children under their parent.
func printTree(w io.Writer, agents []economy.AgentView) {
	children := map[string][]economy.AgentView{}
	known := map[string]bool{}
	for _, a := range agents {
		known[a.ID] = true
	}
	var roots []economy.AgentView
	for _, a := range agents {
		if a.ParentID == "" || !known[a.ParentID] {
			roots = append(roots, a)
		} else {
			children[a.ParentID] = append(children[a.ParentID], a)
		}
	}
	var walk func(a economy.AgentView, prefix string, last, root bool)
	walk = func(a economy.AgentView, prefix string, last, root bool) {
		branch, next := "├── ", prefix+"│   "
		if last {
			branch, next = "└── ", prefix+"    "
		}
		if root {
			branch, next = "", ""
		}
		mark := ""
		if a.Status != "alive" {
			mark = " †" + a.DeathReason
		}
		fmt.Fprintf(w, "%s%s%s  %s credits, %d executions%s\n", prefix, branch, a.ID, a.Balance, a.ExecutionCount, mark)
		kids := children[a.ID]
		for i, c := range kids {
			walk(c, next, i == len(kids)-1, false)
		}
	}
	for _, r := range roots {
		walk(r, "", true, true)
	}
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
