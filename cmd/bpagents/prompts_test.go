package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/app"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/economy/economytest"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
	"github.com/bpagents/bpagents/internal/store/sqlite"
)

// promptServer is a real economy on SQLite behind the real API, and a home
// directory holding its operator token, as `bpagents up` leaves it.
type promptServer struct {
	t    *testing.T
	eco  *economy.Economy
	st   *sqlite.DB
	url  string
	home string
}

func newPromptServer(t *testing.T) *promptServer {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	e := economytest.Open(t, economytest.Options{Log: log, Config: func(c *config.Config) {
		res := c.Market.Resources
		cpu := res["cpu"]
		cpu.Capacity = 8
		res["cpu"] = cpu
		att := res["attention"]
		att.Capacity = 4 // several prompts at once
		res["attention"] = att
	}})
	eco, st, dir := e.Economy, e.Store, e.Home
	const token = "operator-secret"
	srv := httptest.NewServer(api.New(eco, log, api.Options{OperatorToken: token}))
	t.Cleanup(srv.Close)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", app.OperatorTokenFile), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &promptServer{t: t, eco: eco, st: st, url: srv.URL, home: dir}
}

// prompts has each agent (created with 100 credits) win attention and submit
// a prompt with the given bid; it returns the prompt ids in the same order.
func (s *promptServer) prompts(items ...[3]string) []string {
	s.t.Helper()
	ctx := s.t.Context()
	bundle := market.Bundle{CPUMillis: 100, MemoryMB: 64, DurationSeconds: 60, Attention: 1}
	for _, it := range items {
		_, err := s.eco.CreateAgent(ctx, economy.CreateAgentRequest{ID: it[0], Credits: money.Credits(100),
			Files: map[string]string{"main.py": "print(1)\n"}, Bid: &economy.BidSpec{Amount: money.Credits(10), Bundle: bundle}})
		if err != nil {
			s.t.Fatal(err)
		}
	}
	res, err := s.eco.Clear(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	execs := map[string]string{}
	for _, ex := range res.Queued {
		if _, err := s.eco.StartExecution(ctx, ex.ID, "test", s.url); err != nil {
			s.t.Fatal(err)
		}
		execs[ex.AgentID] = ex.ID
	}
	var out []string
	for _, it := range items {
		p, err := s.eco.SubmitPrompt(ctx, economy.Principal{AgentID: it[0], ExecutionID: execs[it[0]]},
			economy.PromptRequest{Content: it[1], BidAmount: money.MustParse(it[2])}, nil)
		if err != nil {
			s.t.Fatal(err)
		}
		out = append(out, p.ID)
	}
	return out
}

func (s *promptServer) args(extra ...string) []string {
	return append([]string{"--server", s.url, "--home", s.home}, extra...)
}

func (s *promptServer) prompt(id string) economy.PromptView {
	s.t.Helper()
	p, err := s.eco.Prompt(s.t.Context(), id)
	if err != nil {
		s.t.Fatal(err)
	}
	return p
}

func (s *promptServer) balance(id string) money.Micro {
	s.t.Helper()
	b, err := s.eco.Balance(s.t.Context(), id)
	if err != nil {
		s.t.Fatal(err)
	}
	return b.Balance
}

func wantOutput(t *testing.T, out string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(out, p) {
			t.Errorf("output does not contain %q:\n%s", p, out)
		}
	}
}

func TestRateInteractive(t *testing.T) {
	t.Parallel()
	s := newPromptServer(t)
	ids := s.prompts(
		[3]string{"alice", "Low bid.\nA second line.", "0"},
		[3]string{"bob", "High bid: \x1b[2Jclear the screen?\u202e", "3"},
	)
	aliceBefore, bobBefore := s.balance("alice"), s.balance("bob")
	// bob's prompt comes first (higher bid). Invalid answers are asked again;
	// alice's prompt is skipped.
	script := "11\nseven\n\n7\n8\n-1\n9\nclear and novel\ns\n"
	var out bytes.Buffer
	if err := runRate(t.Context(), s.args(), strings.NewReader(script), &out); err != nil {
		t.Fatalf("rate: %v\n%s", err, out.String())
	}
	text := out.String()
	wantOutput(t, text,
		"2 prompt(s) await a rating",
		"prompt 1 of 2: "+ids[1], "from     bob", "bid      3 credits",
		`High bid: \x1b[2Jclear the screen?\u202e`, // shown, not obeyed
		`"11" is not a whole number from 0 to 10`, `"seven" is not a whole number`, `"" is not a whole number`,
		`"-1" is not a whole number`,
		"rated "+ids[1]+": 7+8+9 = 24 points; minted 1200 credits to bob",
		"prompt 2 of 2: "+ids[0], "Low bid.\nA second line.",
		"skipped "+ids[0],
		"rated 1, skipped 1; minted 1200 credits")
	if strings.Contains(text, "\x1b") || strings.Contains(text, "\u202e") {
		t.Fatalf("an agent's control characters reached the terminal:\n%q", text)
	}
	if p := s.prompt(ids[1]); p.Status != store.PromptRated || p.Scores == nil ||
		*p.Scores != (economy.Scores{Interesting: 7, Useful: 8, Understandable: 9}) || p.Reason != "clear and novel" {
		t.Fatalf("bob's prompt %+v", p)
	}
	if p := s.prompt(ids[0]); p.Status != store.PromptPending {
		t.Fatalf("the skipped prompt is %s", p.Status)
	}
	if got := s.balance("bob") - bobBefore; got != money.Credits(1200) {
		t.Fatalf("bob received %s, want 1200", got)
	}
	if s.balance("alice") != aliceBefore {
		t.Fatal("the skipped prompt's agent was paid")
	}

	// The remaining one, given by id; input ends in the middle: nothing is posted.
	out.Reset()
	err := runRate(t.Context(), s.args(ids[0]), strings.NewReader("5\n6\n"), &out)
	if err == nil || !strings.Contains(err.Error(), "input ended") || !strings.Contains(err.Error(), ids[0]+" was not rated") {
		t.Fatalf("rate with truncated input: err %v\n%s", err, out.String())
	}
	if p := s.prompt(ids[0]); p.Status != store.PromptPending {
		t.Fatalf("a half-answered rating was posted: %+v", p)
	}
	// q quits; a last line without a newline still counts.
	out.Reset()
	if err := runRate(t.Context(), s.args(), strings.NewReader("q"), &out); err != nil {
		t.Fatal(err)
	}
	wantOutput(t, out.String(), "rated 0, skipped 0")
	out.Reset()
	if err := runRate(t.Context(), s.args(ids[0]), strings.NewReader("0\n0\n1\nmeh"), &out); err != nil {
		t.Fatalf("rate: %v\n%s", err, out.String())
	}
	wantOutput(t, out.String(), "0+0+1 = 1 points; minted 50 credits to alice")
	if p := s.prompt(ids[0]); p.Status != store.PromptRated || p.Reason != "meh" {
		t.Fatalf("alice's prompt %+v", p)
	}
	// Nothing left; a rated prompt cannot be rated again.
	out.Reset()
	if err := runRate(t.Context(), s.args(), strings.NewReader(""), &out); err != nil {
		t.Fatal(err)
	}
	wantOutput(t, out.String(), "no prompts await a rating")
	if err := runRate(t.Context(), s.args(ids[0]), strings.NewReader("1\n1\n1\n\n"), &out); err == nil ||
		!strings.Contains(err.Error(), "is rated") {
		t.Fatalf("rating a rated prompt: %v", err)
	}
}

func TestRateWithFlags(t *testing.T) {
	t.Parallel()
	s := newPromptServer(t)
	ids := s.prompts([3]string{"alice", "question", "0"})
	var out bytes.Buffer
	cases := []struct {
		name string
		args []string
		err  string
	}{
		{"missing score", []string{ids[0], "--interesting", "1", "--useful", "2"}, "all of --interesting, --useful and --understandable"},
		{"no id", []string{"--interesting", "1", "--useful", "2", "--understandable", "3"}, "give PROMPT_ID"},
		{"out of range", []string{ids[0], "--interesting", "11", "--useful", "2", "--understandable", "3"},
			"interesting: must be a whole number from 0 to 10, got 11"},
		{"unknown prompt", []string{"pr_nope", "--interesting", "1", "--useful", "2", "--understandable", "3"}, "does not exist"},
		{"extra argument", []string{ids[0], "more"}, `unexpected argument "more"`},
	}
	for _, tc := range cases {
		err := runRate(t.Context(), s.args(tc.args...), strings.NewReader(""), &out)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
		}
	}
	if p := s.prompt(ids[0]); p.Status != store.PromptPending {
		t.Fatalf("a refused rating changed the prompt: %+v", p)
	}
	out.Reset()
	// Flags after the prompt id, as an operator types them.
	err := runRate(t.Context(), s.args(ids[0], "--interesting", "10", "--useful", "0", "--understandable", "5",
		"--reason", "bold"), strings.NewReader(""), &out)
	if err != nil {
		t.Fatal(err)
	}
	wantOutput(t, out.String(), "10+0+5 = 15 points; minted 750 credits to alice")
	out.Reset()
	err = runRate(t.Context(), s.args("--json", ids[0], "--interesting", "1", "--useful", "1", "--understandable", "1"),
		strings.NewReader(""), &out)
	if err == nil || !strings.Contains(err.Error(), "already rated") {
		t.Fatalf("second rating: %v", err)
	}
}

func TestPromptsAndMessagesCommands(t *testing.T) {
	t.Parallel()
	s := newPromptServer(t)
	ids := s.prompts([3]string{"alice", "First line of alice\nsecond", "1.5"}, [3]string{"bob", "bob asks", "0"})
	ctx := t.Context()
	if _, err := s.eco.SendMessage(ctx, "alice", economy.MessageRequest{ToID: economy.HumanID, Content: "hello human\x07"}, nil); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := runPrompts(ctx, s.args(), &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], ids[0]) ||
		!strings.Contains(lines[1], "1.5") || !strings.Contains(lines[1], "First line of alice…") ||
		!strings.HasPrefix(lines[2], ids[1]) {
		t.Fatalf("prompts table:\n%s", out.String())
	}
	out.Reset()
	if err := runPrompts(ctx, s.args("--json"), &out); err != nil {
		t.Fatal(err)
	}
	var list api.PromptList
	if err := json.Unmarshal(out.Bytes(), &list); err != nil || len(list.Prompts) != 2 || list.Prompts[0].Content != "First line of alice\nsecond" {
		t.Fatalf("prompts --json: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := runPrompts(ctx, s.args("--status", "rated"), &out); err != nil {
		t.Fatal(err)
	}
	wantOutput(t, out.String(), "no rated prompts")
	if err := runPrompts(ctx, s.args("--status", "done"), &out); err == nil || !strings.Contains(err.Error(), "status") {
		t.Fatalf("prompts --status done: %v", err)
	}

	out.Reset()
	if err := runMessages(ctx, s.args(), &out); err != nil {
		t.Fatal(err)
	}
	wantOutput(t, out.String(), "FROM", "alice", `hello human\x07`)
	if strings.Contains(out.String(), "\x07") {
		t.Fatal("a control character reached the terminal")
	}
	out.Reset()
	if err := runMessages(ctx, s.args("--json"), &out); err != nil {
		t.Fatal(err)
	}
	var page economy.MessagePage
	if err := json.Unmarshal(out.Bytes(), &page); err != nil || len(page.Messages) != 1 || page.Messages[0].Content != "hello human\x07" {
		t.Fatalf("messages --json: %v\n%s", err, out.String())
	}
}

func TestSafeText(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"plain\ttext\nok":       "plain\ttext\nok",
		"\x1b[31mred":           `\x1b[31mred`,
		"over\rwrite":           `over\x0dwrite`,
		"bad \xff utf8":         "bad \uFFFD utf8",
		"rtl \u202e reversed":   `rtl \u202e reversed`,
		"c1 \u009b control":     `c1 \u009b control`,
		"ünïcode ✓ stays as is": "ünïcode ✓ stays as is",
	}
	for in, want := range cases {
		if got := safeText(in); got != want {
			t.Errorf("safeText(%q) = %q, want %q", in, got, want)
		}
	}
}
