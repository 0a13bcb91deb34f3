package economy_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

func ptr[T any](v T) *T { return &v }

// readTree returns every regular file under dir (relative path → content)
// and fails on anything else that is not a directory.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			t.Fatalf("%s is not a regular file (%s)", p, d.Type())
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSpawnCopiesWorkspace(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	w.agent("a", money.Credits(500))
	ws := filepath.Join(w.root, "agent-a")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(ws, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(ws, "sub", "lib.py"), []byte("LIB\n"), 0o644))
	must(os.WriteFile(filepath.Join(ws, "env.json"), []byte(`{"token":"secret"}`), 0o644))
	must(os.Symlink("/etc/passwd", filepath.Join(ws, "passwd")))
	burned := w.totals().Burned

	res, err := w.eco.Spawn(ctx, "a", economy.SpawnRequest{InitialCredits: money.Credits(50)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.ChildID == "" || res.Workspace != filepath.Join(w.root, "agent-"+res.ChildID) || res.Fee != w.set.SpawnFee ||
		res.InitialCredits != money.Credits(50) || !slices.Equal(res.Lineage, []string{"a"}) || res.Bid != nil {
		t.Fatalf("spawn result %+v", res)
	}
	got := readTree(t, res.Workspace)
	want := map[string]string{"main.py": "print('a')\n", "sub/lib.py": "LIB\n"}
	if len(got) != len(want) || got["main.py"] != want["main.py"] || got["sub/lib.py"] != want["sub/lib.py"] {
		t.Fatalf("child workspace %v, want %v (no env.json, no links)", got, want)
	}
	if a := w.balance("a"); a.Balance != money.Credits(500)-w.set.SpawnFee-money.Credits(50) {
		t.Fatalf("parent paid wrong: %+v", a)
	}
	if c := w.balance(res.ChildID); c.Balance != money.Credits(50) || c.Status != store.AgentAlive {
		t.Fatalf("child %+v", c)
	}
	if got := w.totals().Burned - burned; got != w.set.SpawnFee {
		t.Fatalf("burned %s, want the fee %s", got, w.set.SpawnFee)
	}
	child, err := w.eco.Agent(ctx, res.ChildID)
	if err != nil || child.ParentID != "a" || !slices.Equal(child.Lineage, []string{"a"}) {
		t.Fatalf("child directory entry %+v, %v", child, err)
	}

	// A grandchild's lineage is its parent, then the parent's lineage. The
	// child's own bid is paid from its endowment.
	if _, err := w.eco.Mint(ctx, res.ChildID, money.Credits(200), "grant", nil); err != nil {
		t.Fatal(err)
	}
	gc, err := w.eco.Spawn(ctx, res.ChildID, economy.SpawnRequest{InitialCredits: money.Credits(20),
		Files: map[string]string{"main.py": "print('gc')\n", "data/x.txt": "x"},
		Bid:   &economy.BidSpec{Amount: money.Credits(5), Bundle: small}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gc.Lineage, []string{res.ChildID, "a"}) {
		t.Fatalf("grandchild lineage %v", gc.Lineage)
	}
	if gc.Bid == nil || gc.Bid.AgentID != gc.ChildID || gc.Bid.PayerID != gc.ChildID || gc.Bid.Amount != money.Credits(5) {
		t.Fatalf("grandchild bid %+v", gc.Bid)
	}
	if b := w.balance(gc.ChildID); b.Balance != money.Credits(15) || b.Held != money.Credits(5) {
		t.Fatalf("grandchild balance %+v", b)
	}
	if got := readTree(t, gc.Workspace); len(got) != 2 || got["data/x.txt"] != "x" {
		t.Fatalf("files given without copy_workspace: %v", got)
	}
	// Files written over a copy.
	both, err := w.eco.Spawn(ctx, "a", economy.SpawnRequest{InitialCredits: money.Credits(1), CopyWorkspace: ptr(true),
		Files: map[string]string{"main.py": "#!/bin/sh\necho new\n"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tree := readTree(t, both.Workspace)
	if tree["main.py"] != "#!/bin/sh\necho new\n" || tree["sub/lib.py"] != "LIB\n" {
		t.Fatalf("copy plus files: %v", tree)
	}
	// An empty child workspace when asked for neither.
	empty, err := w.eco.Spawn(ctx, "a", economy.SpawnRequest{InitialCredits: money.Credits(1), CopyWorkspace: ptr(false)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tree := readTree(t, empty.Workspace); len(tree) != 0 {
		t.Fatalf("empty spawn has files %v", tree)
	}
	w.audit()
}

func TestSpawnWithoutCreditsIsStillborn(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.agent("a", money.Credits(500))
	res, err := w.eco.Spawn(t.Context(), "a", economy.SpawnRequest{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := w.balance(res.ChildID); c.Status != store.AgentDead {
		t.Fatalf("child with no credits and no bid: %+v", c)
	}
	w.audit()
}

func TestSpawnRefusals(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(s *economy.Settings) {
		s.SpawnLimits.MaxBytes = 1000
		s.SpawnLimits.MaxFiles = 3
	})
	ctx := t.Context()
	w.agent("a", money.Credits(500))
	w.agent("poor", money.Credits(100))
	w.agent("dead", money.Credits(500))
	if err := w.eco.Kill(ctx, "dead"); err != nil {
		t.Fatal(err)
	}
	w.agent("bloated", money.Credits(500))
	for i := range 4 {
		name := filepath.Join(w.root, "agent-bloated", "f"+string(rune('0'+i)))
		if err := os.WriteFile(name, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ok := map[string]string{"main.py": "x"}
	tests := []struct {
		name   string
		parent string
		req    economy.SpawnRequest
		code   economy.Code
		field  string
	}{
		{"absolute path", "a", economy.SpawnRequest{InitialCredits: 1, Files: map[string]string{"/etc/cron.d/x": "x"}}, economy.CodeInvalid, "files"},
		{"dot dot", "a", economy.SpawnRequest{InitialCredits: 1, Files: map[string]string{"../agent-b/main.py": "x"}}, economy.CodeInvalid, "files"},
		{"dot dot inside", "a", economy.SpawnRequest{InitialCredits: 1, Files: map[string]string{"a/../../x": "x"}}, economy.CodeInvalid, "files"},
		{"env.json", "a", economy.SpawnRequest{InitialCredits: 1, Files: map[string]string{"env.json": "{}"}}, economy.CodeInvalid, "files"},
		{"oversized", "a", economy.SpawnRequest{InitialCredits: 1, Files: map[string]string{"big": strings.Repeat("x", 1001)}}, economy.CodeInvalid, "files"},
		{"too many files", "a", economy.SpawnRequest{InitialCredits: 1, Files: map[string]string{"1": "", "2": "", "3": "", "4": ""}}, economy.CodeInvalid, "files"},
		{"negative credits", "a", economy.SpawnRequest{InitialCredits: -1, Files: ok}, economy.CodeInvalid, "initial_credits"},
		{"bid above endowment", "a", economy.SpawnRequest{InitialCredits: money.Credits(1), Files: ok,
			Bid: &economy.BidSpec{Amount: money.Credits(2), Bundle: small}}, economy.CodeInvalid, "bid.amount"},
		{"child bid below reserve", "a", economy.SpawnRequest{InitialCredits: money.Credits(1), Files: ok,
			Bid: &economy.BidSpec{Amount: 1, Bundle: small}}, economy.CodeBelowReserve, ""},
		{"cannot afford fee and endowment", "poor", economy.SpawnRequest{InitialCredits: 1, Files: ok}, economy.CodeInsufficientFunds, ""},
		{"cannot afford with copy", "poor", economy.SpawnRequest{InitialCredits: 1}, economy.CodeInsufficientFunds, ""},
		{"parent_id of another", "a", economy.SpawnRequest{ParentID: "poor", Files: ok}, economy.CodeForbidden, ""},
		{"dead parent", "dead", economy.SpawnRequest{InitialCredits: 1, Files: ok}, economy.CodeConflict, ""},
		{"dead parent copying", "dead", economy.SpawnRequest{InitialCredits: 1}, economy.CodeConflict, ""},
		{"unknown parent", "ghost", economy.SpawnRequest{InitialCredits: 1, Files: ok}, economy.CodeNotFound, ""},
		{"parent workspace too big to copy", "bloated", economy.SpawnRequest{InitialCredits: 1}, economy.CodeLimit, ""},
	}
	for _, tc := range tests {
		same := w.unchanged()
		_, err := w.eco.Spawn(ctx, tc.parent, tc.req, nil)
		e := wantCode(t, tc.name, err, tc.code)
		if tc.field != "" && e.Extra["field"] != tc.field {
			t.Fatalf("%s: field %v, want %s (%s)", tc.name, e.Extra["field"], tc.field, e.Detail)
		}
		same(tc.name) // no money moved, no agent, and no workspace left behind
	}
}

func TestMessages(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(s *economy.Settings) { s.MaxMessageBytes = 16 })
	ctx := t.Context()
	w.agent("a", money.Credits(10))
	w.agent("b", money.Credits(10))
	w.agent("broke", money.MustParse("0.5"))
	w.agent("dead", money.Credits(1))
	if err := w.eco.Kill(ctx, "dead"); err != nil {
		t.Fatal(err)
	}
	burned := w.totals().Burned
	send := func(from, to, content string) economy.MessageView {
		t.Helper()
		v, err := w.eco.SendMessage(ctx, from, economy.MessageRequest{ToID: to, Content: content}, nil)
		if err != nil {
			t.Fatalf("SendMessage %s→%s: %v", from, to, err)
		}
		return v
	}
	m1 := send("a", "b", "one")
	if m1.From != "a" || m1.To != "b" || m1.Content != "one" || m1.Fee != w.set.MessageFee || m1.Read || m1.ID == "" {
		t.Fatalf("message view %+v", m1)
	}
	send("a", "b", "two")
	send("a", economy.HumanID, "hello operator")
	send("b", "b", "note to self")
	send("a", "b", strings.Repeat("é", 8)) // 16 bytes: at the limit
	if got := w.totals().Burned - burned; got != 5*w.set.MessageFee {
		t.Fatalf("burned %s for 5 messages", got)
	}
	if a := w.balance("a"); a.Balance != money.Credits(10)-4*w.set.MessageFee {
		t.Fatalf("sender balance %+v", a)
	}

	cases := []struct {
		name, from string
		req        economy.MessageRequest
		code       economy.Code
	}{
		{"too long", "a", economy.MessageRequest{ToID: "b", Content: strings.Repeat("x", 17)}, economy.CodeInvalid},
		{"empty", "a", economy.MessageRequest{ToID: "b"}, economy.CodeInvalid},
		{"no recipient", "a", economy.MessageRequest{Content: "x"}, economy.CodeInvalid},
		{"not UTF-8", "a", economy.MessageRequest{ToID: "b", Content: "\xff\xfe"}, economy.CodeInvalid},
		{"unknown recipient", "a", economy.MessageRequest{ToID: "ghost", Content: "x"}, economy.CodeNotFound},
		{"dead recipient", "a", economy.MessageRequest{ToID: "dead", Content: "x"}, economy.CodeConflict},
		{"dead sender", "dead", economy.MessageRequest{ToID: "a", Content: "x"}, economy.CodeConflict},
		{"from_id of another", "a", economy.MessageRequest{ToID: "b", Content: "x", FromID: "b"}, economy.CodeForbidden},
		{"cannot pay the fee", "broke", economy.MessageRequest{ToID: "a", Content: "x"}, economy.CodeInsufficientFunds},
	}
	for _, tc := range cases {
		same := w.unchanged()
		_, err := w.eco.SendMessage(ctx, tc.from, tc.req, nil)
		wantCode(t, tc.name, err, tc.code)
		same(tc.name)
	}

	// Inbox: unread first, newest first within each group; listing marks read.
	inbox := func(agent string) []economy.MessageView {
		t.Helper()
		v, err := w.eco.Inbox(ctx, agent, 0)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	contents := func(list []economy.MessageView) []string {
		var out []string
		for _, m := range list {
			out = append(out, m.Content)
		}
		return out
	}
	first := inbox("b")
	if got := contents(first); !slices.Equal(got, []string{"éééééééé", "note to self", "two", "one"}) {
		t.Fatalf("first inbox %v", got)
	}
	for _, m := range first {
		if m.Read {
			t.Fatalf("message %q shown as already read on first listing", m.Content)
		}
	}
	send("a", "b", "three")
	second := inbox("b")
	if got := contents(second); !slices.Equal(got, []string{"three", "éééééééé", "note to self", "two", "one"}) {
		t.Fatalf("second inbox %v, want the new unread message first", got)
	}
	for i, m := range second {
		if m.Read != (i > 0) {
			t.Fatalf("second inbox: %q read=%v", m.Content, m.Read)
		}
	}
	if all := inbox("b"); !all[0].Read {
		t.Fatal("listing did not mark the message read")
	}
	if h := inbox(economy.HumanID); len(h) != 1 || h[0].Content != "hello operator" {
		t.Fatalf("human inbox %v", contents(h))
	}
	w.audit()
}
