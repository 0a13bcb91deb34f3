package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/app"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/economy/economytest"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/sqlite"
)

// opServer is a real economy behind the real API with live event streams,
// and a home holding its operator token.
type opServer struct {
	t    *testing.T
	eco  *economy.Economy
	st   *sqlite.DB
	url  string
	home string
}

func newOpServer(t *testing.T) *opServer {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ch := api.NewChanges()
	e := economytest.Open(t, economytest.Options{Log: log, Economy: economy.Options{Changed: ch.Notify}})
	eco, st, dir := e.Economy, e.Store, e.Home
	const token = "operator-secret"
	a := api.New(eco, log, api.Options{OperatorToken: token, Changes: ch, StreamPoll: time.Hour})
	srv := httptest.NewServer(a)
	t.Cleanup(func() { a.CloseStreams(); srv.Close() })
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", app.OperatorTokenFile), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &opServer{t: t, eco: eco, st: st, url: srv.URL, home: dir}
}

func (s *opServer) args(extra ...string) []string {
	return append([]string{"--server", s.url, "--home", s.home}, extra...)
}

// busy makes some history: agents, mints, clearings.
func (s *opServer) busy(agentsN int) {
	s.t.Helper()
	ctx := s.t.Context()
	for i := 0; i < agentsN; i++ {
		id := fmt.Sprintf("a%03d", i)
		if _, err := s.eco.CreateAgent(ctx, economy.CreateAgentRequest{ID: id, Credits: money.Credits(10),
			Files: map[string]string{"main.py": "print(1)\n"}}); err != nil {
			s.t.Fatal(err)
		}
		if _, err := s.eco.Mint(ctx, id, money.MustParse("0.25"), "memo, with \"quotes\"\nand a newline", nil); err != nil {
			s.t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		if _, err := s.eco.Clear(ctx); err != nil {
			s.t.Fatal(err)
		}
	}
}

func (s *opServer) countEvents() (events, transfers int) {
	s.t.Helper()
	err := s.st.Read(s.t.Context(), func(tx store.Tx) error {
		last, err := tx.LastEventSeq(s.t.Context())
		events = int(last)
		if err != nil {
			return err
		}
		n, err := tx.CountTransfers(s.t.Context())
		transfers = int(n)
		return err
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return
}

// The exports load in a standard CSV reader and line by line as JSON, with
// every row exactly once, across several API pages.
func TestExportLoads(t *testing.T) {
	t.Parallel()
	s := newOpServer(t)
	s.busy(260) // > exportPage events and transfers
	events, transfers := s.countEvents()
	if events <= exportPage || transfers <= exportPage {
		t.Fatalf("only %d events, %d transfers: the test must span pages", events, transfers)
	}
	for _, tc := range []struct {
		what, format string
		rows         int
		key          string
	}{
		{"events", "jsonl", events, "seq"},
		{"events", "csv", events, "seq"},
		{"ledger", "jsonl", transfers, "id"},
		{"ledger", "csv", transfers, "id"},
	} {
		t.Run(tc.what+"."+tc.format, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "export."+tc.format)
			var stdout, stderr bytes.Buffer
			err := runExport(t.Context(), s.args("--what", tc.what, "--format", tc.format, "--out", out), &stdout, &stderr)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(stderr.String(), "exported") {
				t.Errorf("no summary on stderr: %q", stderr.String())
			}
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var ids []string
			if tc.format == "csv" {
				recs, err := csv.NewReader(f).ReadAll()
				if err != nil {
					t.Fatalf("encoding/csv: %v", err)
				}
				header := recs[0]
				if header[0] != tc.key {
					t.Fatalf("header %v", header)
				}
				for _, r := range recs[1:] {
					if len(r) != len(header) {
						t.Fatalf("row %v has %d fields, the header %d", r, len(r), len(header))
					}
					ids = append(ids, r[0])
					if tc.what == "events" && !json.Valid([]byte(r[len(r)-1])) {
						t.Fatalf("data column is not JSON: %q", r[len(r)-1])
					}
				}
			} else {
				sc := bufio.NewScanner(f)
				sc.Buffer(nil, 1<<20)
				for sc.Scan() {
					var m map[string]any
					if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
						t.Fatalf("line %d is not JSON: %v", len(ids)+1, err)
					}
					n, _ := m[tc.key].(float64)
					ids = append(ids, strconv.Itoa(int(n)))
				}
			}
			if len(ids) != tc.rows {
				t.Fatalf("%d rows, want %d", len(ids), tc.rows)
			}
			if ids[0] != "1" || ids[len(ids)-1] != strconv.Itoa(tc.rows) {
				t.Errorf("rows run from %s to %s, want 1 to %d", ids[0], ids[len(ids)-1], tc.rows)
			}
		})
	}
	if jq, err := exec.LookPath("jq"); err == nil {
		out := filepath.Join(t.TempDir(), "events.jsonl")
		if err := runExport(t.Context(), s.args("--what", "events", "--out", out), io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
		got, err := exec.Command(jq, "-s", "length", out).Output()
		if err != nil || strings.TrimSpace(string(got)) != strconv.Itoa(events) {
			t.Errorf("jq -s length: %q %v, want %d", got, err, events)
		}
	}
	// A failed export leaves no file behind.
	bad := filepath.Join(t.TempDir(), "never.csv")
	err := runExport(t.Context(), []string{"--server", s.url, "--home", t.TempDir(), "--what", "ledger", "--out", bad}, io.Discard, io.Discard)
	if err == nil {
		t.Fatal("an export without the operator token succeeded")
	}
	if _, statErr := os.Stat(bad); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("a failed export left %s", bad)
	}
}

// lineWriter hands each written line to a channel.
type lineWriter struct{ lines chan string }

func (w *lineWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.lines <- l
	}
	return len(p), nil
}

// `events --follow` prints recent events, then new ones as they commit.
func TestEventsFollow(t *testing.T) {
	t.Parallel()
	s := newOpServer(t)
	s.busy(2)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &lineWriter{lines: make(chan string, 100)}
	done := make(chan error, 1)
	go func() { done <- runEvents(ctx, s.args("--follow", "--limit", "3", "--json"), out) }()
	next := func() api.EventView {
		t.Helper()
		select {
		case l := <-out.lines:
			var e api.EventView
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			return e
		case err := <-done:
			t.Fatalf("events --follow ended: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("no line within 5s")
		}
		return api.EventView{}
	}
	events, _ := s.countEvents()
	for i := 3; i > 0; i-- {
		if e := next(); e.Seq != int64(events-i+1) {
			t.Fatalf("recent event seq %d, want %d", e.Seq, events-i+1)
		}
	}
	if _, err := s.eco.Mint(t.Context(), "a000", money.Credits(1), "live", nil); err != nil {
		t.Fatal(err)
	}
	if e := next(); e.Seq != int64(events+1) || e.Type != "ledger.transfer" || e.AgentID != "a000" {
		t.Fatalf("live event %+v", e)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("events --follow after interrupt: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("events --follow did not stop when interrupted")
	}
}

func TestMintAgentMarkets(t *testing.T) {
	t.Parallel()
	s := newOpServer(t)
	var out bytes.Buffer
	if err := runMint(t.Context(), s.args("genesis", "12.5", "--memo", "cli"), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "minted 12.5 credits to genesis") {
		t.Errorf("mint printed %q", out.String())
	}
	if err := runMint(t.Context(), s.args("genesis", "0"), io.Discard); err == nil || !strings.Contains(err.Error(), "amount") {
		t.Errorf("minting nothing: %v", err)
	}
	if err := runMint(t.Context(), s.args("genesis"), io.Discard); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("mint without an amount: %v", err)
	}
	out.Reset()
	if err := runAgentShow(t.Context(), s.args("genesis"), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"genesis (alive)", "1007.5 available, 5 held", "Recent executions", "Bids (1)", "pending"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("agent genesis lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := runAgentShow(t.Context(), s.args("genesis", "--json"), &out); err != nil {
		t.Fatal(err)
	}
	var d AgentDetails
	if err := json.Unmarshal(out.Bytes(), &d); err != nil || d.Agent.ID != "genesis" || len(d.Bids) != 1 {
		t.Fatalf("agent --json: %v %+v", err, d)
	}
	// Without the operator token the public part still shows.
	out.Reset()
	if err := runAgentShow(t.Context(), []string{"--server", s.url, "--home", t.TempDir(), "genesis"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "need the operator token") {
		t.Errorf("no note about the token:\n%s", out.String())
	}
	s.busy(1)
	out.Reset()
	if err := runMarkets(t.Context(), s.args("--history", "2"), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"RESOURCE", "cpu", "attention", "Last 2 clearings"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("markets lacks %q:\n%s", want, out.String())
		}
	}
}

// Every command has --help with examples, and completion offers exactly
// the flags each command's FlagSet defines.
func TestHelpAndCompletion(t *testing.T) {
	for _, c := range commands {
		if len(c.Examples) == 0 || c.About == "" || c.Synopsis == "" {
			t.Errorf("%s: help lacks examples, description or synopsis", c.Name)
		}
	}
	flags := commandFlags(context.Background())
	for _, name := range []string{"status", "agents", "agent", "markets", "events", "prompts", "rate", "messages", "mint", "export", "audit", "up"} {
		if len(flags[name]) == 0 {
			t.Errorf("%s: no flags captured", name)
		}
		var b bytes.Buffer
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		fs.String("x", "", "")
		printHelp(&b, name, fs)
		if !strings.Contains(b.String(), "Examples:") {
			t.Errorf("%s --help has no examples", name)
		}
	}
	has := func(cmd, f string) bool {
		return slices.ContainsFunc(flags[cmd], func(fi flagInfo) bool { return fi.Name == f })
	}
	for cmd, f := range map[string]string{"events": "follow", "export": "format", "agent": "attention", "mint": "memo", "up": "sandbox", "agents": "tree"} {
		if !has(cmd, f) {
			t.Errorf("completion for %s lacks --%s", cmd, f)
		}
	}
	var b bytes.Buffer
	if err := runCompletion(context.Background(), []string{"bash"}, &b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "complete -o default -F _bpagents bpagents") || !strings.Contains(b.String(), "--follow") {
		t.Fatalf("bash completion:\n%s", b.String())
	}
	if bash, err := exec.LookPath("bash"); err == nil {
		cmd := exec.Command(bash, "-c", `source /dev/stdin; COMP_WORDS=(bpagents export --fo); COMP_CWORD=2; _bpagents; echo "${COMPREPLY[@]}"
COMP_WORDS=(bpagents export --what ""); COMP_CWORD=3; _bpagents; echo "${COMPREPLY[@]}"
COMP_WORDS=(bpagents ev); COMP_CWORD=1; _bpagents; echo "${COMPREPLY[@]}"`)
		cmd.Stdin = bytes.NewReader(b.Bytes())
		got, err := cmd.CombinedOutput()
		if err != nil || string(got) != "--format\nevents ledger\nevents\n" {
			t.Errorf("bash completion answered %q (%v)", got, err)
		}
	}
	b.Reset()
	if err := runCompletion(context.Background(), []string{"zsh"}, &b); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "#compdef bpagents") || !strings.Contains(b.String(), "'--what[events or ledger]:what:(events ledger)'") {
		t.Fatalf("zsh completion:\n%s", b.String())
	}
	if err := runCompletion(context.Background(), []string{"fish"}, io.Discard); err == nil {
		t.Error("completion for an unknown shell succeeded")
	}
}
