package api_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bpagents/bpagents/internal/agents"
	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/money"
)

func micro(s string) money.Micro { return money.MustParse(s) }

func TestPublicReads(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)

	t.Run("public balance is seed compatible", func(t *testing.T) {
		r := h.get(t, "/economic/balance/genesis", "")
		m := ok[map[string]any](t, r, http.StatusOK)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if want := []string{"agent_id", "balance", "held", "status"}; !slices.Equal(keys, want) {
			t.Fatalf("keys %v, want %v", keys, want)
		}
		// Genesis got 1000 credits and placed its first bid of 5.
		if m["agent_id"] != "genesis" || m["balance"] != json.Number("995") || m["held"] != json.Number("5") || m["status"] != "alive" {
			t.Fatalf("balance %v", m)
		}
	})
	t.Run("healthz", func(t *testing.T) {
		v := ok[api.Health](t, h.get(t, "/healthz", ""), http.StatusOK)
		if v.Status != "ok" || v.Version != "test" {
			t.Fatalf("health %+v", v)
		}
	})
	t.Run("docs", func(t *testing.T) {
		r := h.get(t, "/docs", "")
		if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("docs: %d %s", r.Status, r.Header.Get("Content-Type"))
		}
		for _, rt := range h.api.Routes() {
			if !strings.Contains(string(r.Body), "<code>"+rt.Path+"</code>") {
				t.Errorf("docs do not list %s %s", rt.Method, rt.Path)
			}
		}
	})
	t.Run("wrong method names the allowed ones", func(t *testing.T) {
		r := h.do(t, req{Method: "POST", Path: "/economic/balance/genesis", Body: `{}`})
		wantProblem(t, r, http.StatusMethodNotAllowed, "POST", "only GET")
		if allow := r.Header.Get("Allow"); allow != "GET, HEAD" {
			t.Fatalf("Allow %q", allow)
		}
	})
	t.Run("status", func(t *testing.T) {
		v := ok[api.StatusView](t, h.get(t, "/status", ""), http.StatusOK)
		if v.Alive != 1 || v.PendingBids != 1 || v.Money.Minted != money.Credits(1000) || v.Money.Held != money.Credits(5) {
			t.Fatalf("status %+v", v)
		}
	})
	t.Run("market state and prices", func(t *testing.T) {
		st := ok[economy.MarketState](t, h.get(t, "/market/state", ""), http.StatusOK)
		if st.Mechanism != "first-price" || st.PendingBids != 1 || len(st.Resources) != 4 {
			t.Fatalf("market state %+v", st)
		}
		if cpu := st.Resources["cpu"]; cpu.Capacity != 64 || cpu.Price != micro("0.001") || cpu.Unit == "" {
			t.Fatalf("cpu market %+v", cpu)
		}
		prices := ok[map[string]money.Micro](t, h.get(t, "/market/prices", ""), http.StatusOK)
		if len(prices) != len(st.Resources) {
			t.Fatalf("prices %v for markets %v", prices, st.Resources)
		}
		for name, m := range st.Resources {
			if prices[name] != m.Price {
				t.Errorf("price of %s: %s in /market/prices, %s in /market/state", name, prices[name], m.Price)
			}
		}
		if _, err := h.eco.Clear(h.ctx); err != nil {
			t.Fatal(err)
		}
		st = ok[economy.MarketState](t, h.get(t, "/market/state", ""), http.StatusOK)
		if st.Cycle != 1 || st.PendingBids != 0 {
			t.Fatalf("after clearing: %+v", st)
		}
		hist := ok[api.MarketHistory](t, h.get(t, "/market/history", ""), http.StatusOK)
		if len(hist.Clearings) != 1 || hist.Clearings[0].Cycle != 1 || hist.Clearings[0].Winners != 1 ||
			hist.Clearings[0].Revenue != money.Credits(5) {
			t.Fatalf("market history %+v", hist)
		}
	})
}

func TestMoneyOverHTTP(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.newAgent("alice", "100", nil)
	h.newAgent("bob", "50", nil)
	alice, _ := h.login("alice") // her 1-credit bid is paid: 99 left
	bob, _ := h.login("bob")     // 49 left

	t.Run("own balance", func(t *testing.T) {
		v := ok[economy.BalanceView](t, h.get(t, "/economic/balance", alice), http.StatusOK)
		if v != (economy.BalanceView{AgentID: "alice", Balance: money.Credits(99), Held: 0, Status: "alive"}) {
			t.Fatalf("own balance %+v", v)
		}
		// The authentication scheme is case-insensitive.
		r, err := http.NewRequest("GET", h.srv.URL+"/economic/balance", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "bearer "+alice)
		resp, err := h.client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("lower-case bearer: %d", resp.StatusCode)
		}
	})

	t.Run("transfer moves exactly the amount", func(t *testing.T) {
		r := h.do(t, req{Method: "POST", Path: "/economic/transfer", Token: alice,
			Body: `{"to_id":"bob","amount":12.345678,"memo":"for the data"}`})
		res := ok[economy.TransferResult](t, r, http.StatusCreated)
		if res.FromID != "alice" || res.ToID != "bob" || res.Amount != micro("12.345678") ||
			res.Memo != "for the data" || res.Balance != micro("86.654322") || res.TransferID == 0 {
			t.Fatalf("transfer %+v", res)
		}
		if !strings.Contains(string(r.Body), `"amount":12.345678`) || !strings.Contains(string(r.Body), `"balance":86.654322`) {
			t.Fatalf("amounts are not exact decimals in %s", r)
		}
		if got := h.balance(t, "alice").Balance; got != micro("86.654322") {
			t.Fatalf("alice has %s", got)
		}
		if got := h.balance(t, "bob").Balance; got != micro("61.345678") {
			t.Fatalf("bob has %s", got)
		}
		// Amounts may also be sent as decimal strings.
		r = h.do(t, req{Method: "POST", Path: "/economic/transfer", Token: bob, Body: `{"to_id":"alice","amount":"0.000001"}`})
		if res := ok[economy.TransferResult](t, r, http.StatusCreated); res.Balance != micro("61.345677") {
			t.Fatalf("string amount: %+v", res)
		}
		h.audit(t)
	})

	t.Run("history newest first with signed amounts", func(t *testing.T) {
		page := ok[api.HistoryPage](t, h.get(t, "/economic/history", alice), http.StatusOK)
		want := []struct {
			kind, amount, account, counterparty string
		}{
			{"transfer", "0.000001", "available", "bob"},
			{"transfer", "-12.345678", "available", "bob"},
			{"settle", "-1", "held", ledger.BurnAccount},
			{"hold", "-1", "available", ledger.HoldAccount("alice")},
			{"endowment", "100", "available", ledger.MintAccount},
		}
		if len(page.Entries) != len(want) || page.NextBefore != 0 {
			t.Fatalf("history %+v", page)
		}
		for i, w := range want {
			e := page.Entries[i]
			if e.Kind != w.kind || e.Amount != micro(w.amount) || e.Account != w.account || e.Counterparty != w.counterparty {
				t.Errorf("entry %d: %+v, want %+v", i, e, w)
			}
			if i > 0 && e.ID >= page.Entries[i-1].ID {
				t.Errorf("entry %d: id %d after %d: not newest first", i, e.ID, page.Entries[i-1].ID)
			}
		}
		var sum money.Micro
		for _, e := range page.Entries {
			if e.Account == "available" {
				sum += e.Amount
			}
		}
		if bal := h.balance(t, "alice").Balance; sum != bal {
			t.Errorf("available entries sum to %s, balance is %s", sum, bal)
		}
		bobs := ok[api.HistoryPage](t, h.get(t, "/economic/history", bob), http.StatusOK)
		if e := bobs.Entries[1]; e.Kind != "transfer" || e.Amount != micro("12.345678") || e.Counterparty != "alice" {
			t.Fatalf("bob's side of the transfer: %+v", e)
		}
		// Paging: two pages of two, then the rest.
		p1 := ok[api.HistoryPage](t, h.get(t, "/economic/history?limit=2", alice), http.StatusOK)
		if len(p1.Entries) != 2 || p1.NextBefore != p1.Entries[1].ID {
			t.Fatalf("page 1 %+v", p1)
		}
		p2 := ok[api.HistoryPage](t, h.get(t, "/economic/history?limit=2&before="+strconv.FormatInt(p1.NextBefore, 10), alice), http.StatusOK)
		if len(p2.Entries) != 2 || p2.Entries[0].ID != page.Entries[2].ID {
			t.Fatalf("page 2 %+v", p2)
		}
	})

	t.Run("bid holds, cancel releases", func(t *testing.T) {
		before := h.balance(t, "alice")
		r := h.do(t, req{Method: "POST", Path: "/market/bid", Token: alice, Body: `{"amount":2.5,"bundle":` + testBundleJSON + `}`})
		bid := ok[economy.BidView](t, r, http.StatusCreated)
		if bid.Status != "pending" || bid.AgentID != "alice" || bid.PayerID != "alice" || bid.Amount != micro("2.5") ||
			bid.Bundle != testBundle || !strings.HasPrefix(bid.ID, "bid_") {
			t.Fatalf("bid %+v", bid)
		}
		after := h.balance(t, "alice")
		if after.Held != before.Held+micro("2.5") || after.Balance != before.Balance-micro("2.5") {
			t.Fatalf("balance %+v after bidding 2.5 from %+v", after, before)
		}
		// A bid that wakes bob at alice's cost.
		r = h.do(t, req{Method: "POST", Path: "/market/bid", Token: alice,
			Body: `{"amount":1,"bundle":` + testBundleJSON + `,"for_agent":"bob"}`})
		forBob := ok[economy.BidView](t, r, http.StatusCreated)
		if forBob.AgentID != "bob" || forBob.PayerID != "alice" {
			t.Fatalf("bid for bob %+v", forBob)
		}

		list := ok[api.BidList](t, h.get(t, "/market/bids?status=pending", alice), http.StatusOK)
		if len(list.Bids) != 2 || list.Bids[0].ID != forBob.ID || list.Bids[1].ID != bid.ID {
			t.Fatalf("alice's pending bids %+v", list)
		}
		all := ok[api.BidList](t, h.get(t, "/market/bids", alice), http.StatusOK)
		if len(all.Bids) != 3 || all.Bids[2].Status != "won" {
			t.Fatalf("alice's bids %+v", all)
		}
		bobs := ok[api.BidList](t, h.get(t, "/market/bids?status=pending", bob), http.StatusOK)
		if len(bobs.Bids) != 1 || bobs.Bids[0].ID != forBob.ID {
			t.Fatalf("bob's pending bids %+v", bobs)
		}

		r = h.do(t, req{Method: "DELETE", Path: "/market/bid/" + bid.ID, Token: alice})
		if c := ok[economy.BidView](t, r, http.StatusOK); c.Status != "cancelled" || c.ID != bid.ID {
			t.Fatalf("cancelled %+v", c)
		}
		if got := h.balance(t, "alice"); got.Held != before.Held+micro("1") || got.Balance != before.Balance-micro("1") {
			t.Fatalf("after cancelling: %+v (before bidding %+v)", got, before)
		}
		r = h.do(t, req{Method: "DELETE", Path: "/market/bid/" + bid.ID, Token: alice})
		wantProblem(t, r, http.StatusConflict, bid.ID, "cancelled")
		r = h.do(t, req{Method: "DELETE", Path: "/market/bid/" + forBob.ID, Token: alice})
		ok[economy.BidView](t, r, http.StatusOK)
		if got := h.balance(t, "alice"); got != before {
			t.Fatalf("after cancelling both: %+v, want %+v", got, before)
		}
		h.audit(t)
	})

	t.Run("message and inbox", func(t *testing.T) {
		before := h.balance(t, "alice").Balance
		send := func(content string) economy.MessageView {
			r := h.do(t, req{Method: "POST", Path: "/social/message", Token: alice,
				Body: mustJSON(t, map[string]string{"to_id": "bob", "content": content})})
			m := ok[economy.MessageView](t, r, http.StatusCreated)
			if m.From != "alice" || m.To != "bob" || m.Content != content || m.Fee != money.Credits(1) || m.Read {
				t.Fatalf("message %+v", m)
			}
			return m
		}
		m1, m2 := send("one"), send("two ✓")
		if got := h.balance(t, "alice").Balance; got != before-money.Credits(2) {
			t.Fatalf("alice has %s after two messages from %s", got, before)
		}
		in := ok[api.Inbox](t, h.get(t, "/social/inbox", bob), http.StatusOK)
		if ids := messageIDs(in); !slices.Equal(ids, []string{m2.ID, m1.ID}) || in.Messages[0].Read || in.Messages[1].Read {
			t.Fatalf("first inbox %+v", in)
		}
		m3 := send("three")
		in = ok[api.Inbox](t, h.get(t, "/social/inbox", bob), http.StatusOK)
		if ids := messageIDs(in); !slices.Equal(ids, []string{m3.ID, m2.ID, m1.ID}) {
			t.Fatalf("second inbox order %v", ids)
		}
		if in.Messages[0].Read || !in.Messages[1].Read || !in.Messages[2].Read {
			t.Fatalf("unread first, then read: %+v", in)
		}
		if in.Messages[1].Content != "two ✓" {
			t.Fatalf("content %q", in.Messages[1].Content)
		}
		r := h.do(t, req{Method: "POST", Path: "/social/message", Token: alice, Body: `{"to_id":"human","content":"hello operator"}`})
		if m := ok[economy.MessageView](t, r, http.StatusCreated); m.To != economy.HumanID {
			t.Fatalf("to human %+v", m)
		}
		if in := ok[api.Inbox](t, h.get(t, "/social/inbox", alice), http.StatusOK); len(in.Messages) != 0 {
			t.Fatalf("alice's inbox %+v", in)
		}
		h.audit(t)
	})

	t.Run("events", func(t *testing.T) {
		all := ok[api.EventPage](t, h.get(t, "/events?limit=500", h.op), http.StatusOK)
		types := map[string]int{}
		for i, e := range all.Events {
			types[e.Type]++
			if i > 0 && e.Seq <= all.Events[i-1].Seq {
				t.Fatalf("events out of order at %d", i)
			}
			if !json.Valid(e.Data) {
				t.Fatalf("event %d data %s", e.Seq, e.Data)
			}
		}
		for _, typ := range []string{"agent.created", "bid.placed", "bid.won", "bid.cancelled", ledger.EventTransfer,
			"market.cleared", "execution.queued", "execution.started", "message.sent", "message.read"} {
			if types[typ] == 0 {
				t.Errorf("no %s event in %v", typ, types)
			}
		}
		if n := len(all.Events); n == 0 || all.LastSeq != all.Events[n-1].Seq {
			t.Fatalf("last_seq %d, events %d", all.LastSeq, n)
		}
		// Paging with after: pages of 7 rebuild the whole log.
		var paged []api.EventView
		for after := int64(0); ; {
			p := ok[api.EventPage](t, h.get(t, "/events?limit=7&after="+strconv.FormatInt(after, 10), h.op), http.StatusOK)
			if len(p.Events) == 0 {
				break
			}
			if len(p.Events) > 7 || p.Events[0].Seq <= after {
				t.Fatalf("page after %d: %d events from seq %d", after, len(p.Events), p.Events[0].Seq)
			}
			paged = append(paged, p.Events...)
			after = p.Events[len(p.Events)-1].Seq
		}
		if len(paged) != len(all.Events) {
			t.Fatalf("paging found %d events, the log has %d", len(paged), len(all.Events))
		}
		for i := range paged {
			if paged[i].Seq != all.Events[i].Seq {
				t.Fatalf("paged event %d is seq %d, want %d", i, paged[i].Seq, all.Events[i].Seq)
			}
		}
		// A prefix filter.
		bids := ok[api.EventPage](t, h.get(t, "/events?limit=500&type=bid.", h.op), http.StatusOK)
		n := 0
		for _, e := range bids.Events {
			if !strings.HasPrefix(e.Type, "bid.") {
				t.Fatalf("type=bid. returned %s", e.Type)
			}
			n++
		}
		if want := types["bid.placed"] + types["bid.won"] + types["bid.cancelled"]; n != want {
			t.Fatalf("type=bid. returned %d events, want %d", n, want)
		}
		// An exact type and an agent.
		tr := ok[api.EventPage](t, h.get(t, "/events?limit=500&type=ledger.transfer&agent=alice", h.op), http.StatusOK)
		if len(tr.Events) == 0 {
			t.Fatal("no ledger.transfer events for alice")
		}
		for _, e := range tr.Events {
			if e.Type != ledger.EventTransfer || e.AgentID != "alice" {
				t.Fatalf("filtered event %+v", e)
			}
		}
		wantProblem(t, h.get(t, "/events?after=1&before=5", h.op), http.StatusUnprocessableEntity, "after", "before")
	})
}

func messageIDs(in api.Inbox) []string {
	ids := make([]string, 0, len(in.Messages))
	for _, m := range in.Messages {
		ids = append(ids, m.ID)
	}
	return ids
}

func TestSpawnAndDirectory(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *config.Config) { c.Economy.SpawnFee = money.Credits(10) })
	h.newAgent("pat", "200", map[string]string{"main.py": "print('pat')\n", "lib/util.py": "X = 1\n"})
	patDir := h.ws.Dir("pat")
	tok, _ := h.login("pat")
	// The runtime writes env.json before each execution; a child never inherits it.
	if err := os.WriteFile(filepath.Join(patDir, agents.EnvFile), []byte(`{"token":"secret"}`), 0o600); err != nil {
		t.Fatal(err)
	}

	r := h.do(t, req{Method: "POST", Path: "/social/spawn", Token: tok,
		Body: `{"initial_credits":50,"bid":{"amount":1,"bundle":` + testBundleJSON + `}}`})
	child := ok[economy.SpawnResult](t, r, http.StatusCreated)
	if child.ChildID == "" || child.Workspace != h.ws.Dir(child.ChildID) || !slices.Equal(child.Lineage, []string{"pat"}) ||
		child.Fee != money.Credits(10) || child.InitialCredits != money.Credits(50) || child.Bid == nil ||
		child.Bid.AgentID != child.ChildID || child.Bid.Status != "pending" {
		t.Fatalf("spawn %+v", child)
	}
	wantFiles(t, child.Workspace, map[string]string{"main.py": "print('pat')\n", "lib/util.py": "X = 1\n"})
	// pat: 200 − 1 (first execution) − 10 fee − 50 endowment.
	if b := h.balance(t, "pat"); b.Balance != money.Credits(139) {
		t.Fatalf("pat %+v", b)
	}
	if b := h.balance(t, child.ChildID); b.Balance != money.Credits(49) || b.Held != money.Credits(1) || b.Status != "alive" {
		t.Fatalf("child %+v", b)
	}

	// The child wakes and spawns a grandchild from files only.
	childTok, _ := h.login(child.ChildID)
	r = h.do(t, req{Method: "POST", Path: "/social/spawn", Token: childTok,
		Body: `{"initial_credits":5,"files":{"main.py":"print('grandchild')\n"}}`})
	grand := ok[economy.SpawnResult](t, r, http.StatusCreated)
	if !slices.Equal(grand.Lineage, []string{child.ChildID, "pat"}) || grand.Bid != nil {
		t.Fatalf("grandchild %+v", grand)
	}
	wantFiles(t, grand.Workspace, map[string]string{"main.py": "print('grandchild')\n"})
	h.audit(t)

	t.Run("directory", func(t *testing.T) {
		list := ok[api.AgentList](t, h.get(t, "/agents", ""), http.StatusOK)
		ids := make([]string, 0, len(list.Agents))
		for _, a := range list.Agents {
			ids = append(ids, a.ID)
		}
		if want := []string{"genesis", "pat", child.ChildID, grand.ChildID}; !slices.Equal(ids, want) {
			t.Fatalf("directory %v, want %v", ids, want)
		}
		byID := map[string]economy.AgentView{}
		for _, a := range list.Agents {
			byID[a.ID] = a
		}
		c := byID[child.ChildID]
		if c.Status != "alive" || c.ParentID != "pat" || !slices.Equal(c.Lineage, []string{"pat"}) || c.ExecutionCount != 1 ||
			c.Balance != money.Credits(34) || c.Created == "" {
			t.Fatalf("child entry %+v", c)
		}
		g := byID[grand.ChildID]
		if !slices.Equal(g.Lineage, []string{child.ChildID, "pat"}) || g.ExecutionCount != 0 || g.Balance != money.Credits(5) {
			t.Fatalf("grandchild entry %+v", g)
		}
		if p := byID["pat"]; p.ExecutionCount != 1 || len(p.Lineage) != 0 || p.Lineage == nil {
			t.Fatalf("pat entry %+v", p)
		}
		one := ok[economy.AgentView](t, h.get(t, "/agents/"+grand.ChildID, ""), http.StatusOK)
		if one.ID != g.ID || one.Balance != g.Balance || !slices.Equal(one.Lineage, g.Lineage) {
			t.Fatalf("/agents/%s %+v, directory %+v", g.ID, one, g)
		}
		raw := ok[map[string]any](t, h.get(t, "/agents/pat", ""), http.StatusOK)
		for _, k := range []string{"id", "status", "lineage", "created", "execution_count", "balance", "held"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("agent entry lacks %q: %v", k, raw)
			}
		}
		limited := ok[api.AgentList](t, h.get(t, "/agents?status=alive&limit=2", ""), http.StatusOK)
		if len(limited.Agents) != 2 {
			t.Fatalf("limit=2 gave %d agents", len(limited.Agents))
		}
	})
}

// wantFiles asserts dir holds exactly files (relative path → content).
func wantFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		got[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(files) {
		t.Fatalf("%s holds %v, want %v", dir, got, files)
	}
	for name, content := range files {
		if got[name] != content {
			t.Fatalf("%s/%s is %q, want %q (all: %v)", dir, name, got[name], content, got)
		}
	}
}

func TestExecutionsOverHTTP(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.newAgent("alice", "100", nil)
	tok, execID := h.login("alice")

	ex := ok[api.ExecutionView](t, h.get(t, "/executions/"+execID, h.op), http.StatusOK)
	if ex.Status != "running" || ex.AgentID != "alice" || ex.Sandbox != "test" || ex.Started == "" || ex.Deadline == "" ||
		ex.Paid != money.Credits(1) || ex.Bundle != testBundle {
		t.Fatalf("running execution %+v", ex)
	}
	wantProblem(t, h.get(t, "/executions/"+execID+"/logs", h.op), http.StatusConflict, execID, "running")
	wantProblem(t, h.get(t, "/executions/"+execID, tok), http.StatusForbidden, "operator token")

	// alice leaves a bid behind, so she lives on after this execution.
	ok[economy.BidView](t, h.do(t, req{Method: "POST", Path: "/market/bid", Token: tok,
		Body: `{"amount":1,"bundle":` + testBundleJSON + `}`}), http.StatusCreated)
	h.finish(execID, "hello from alice\n\xff")

	ex = ok[api.ExecutionView](t, h.get(t, "/executions/"+execID, h.op), http.StatusOK)
	if ex.Status != "finished" || ex.Reason != "exited" || ex.Ended == "" || ex.OutputBytes != 18 {
		t.Fatalf("finished execution %+v", ex)
	}
	logs := ok[api.ExecutionLogs](t, h.get(t, "/executions/"+execID+"/logs", h.op), http.StatusOK)
	if logs.ExecutionID != execID || logs.Output != "hello from alice\n\uFFFD" || logs.Bytes != 18 {
		t.Fatalf("logs %+v", logs)
	}
	list := ok[api.ExecutionList](t, h.get(t, "/executions?agent=alice", h.op), http.StatusOK)
	if len(list.Executions) != 1 || list.Executions[0].ID != execID {
		t.Fatalf("executions %+v", list)
	}
	// Clearing for alice also let genesis's first bid win: it waits, queued.
	if l := ok[api.ExecutionList](t, h.get(t, "/executions?status=queued", h.op), http.StatusOK); len(l.Executions) != 1 ||
		l.Executions[0].AgentID != "genesis" {
		t.Fatalf("queued executions %+v", l)
	}
	if l := ok[api.ExecutionList](t, h.get(t, "/executions?status=running", h.op), http.StatusOK); len(l.Executions) != 0 {
		t.Fatalf("running executions %+v", l)
	}
	wantProblem(t, h.get(t, "/executions?status=sleeping", h.op), http.StatusUnprocessableEntity, "status", "sleeping")
	// The token died with its execution; alice herself is alive.
	wantProblem(t, h.get(t, "/economic/balance", tok), http.StatusUnauthorized, "expired", execID)
	if b := h.balance(t, "alice"); b.Status != "alive" {
		t.Fatalf("alice %+v", b)
	}
	h.audit(t)
}

func TestOperatorActions(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.newAgent("alice", "10", nil)
	tok, _ := h.login("alice")

	r := h.do(t, req{Method: "POST", Path: "/admin/mint", Token: h.op, Body: `{"agent_id":"alice","amount":2.5,"memo":"prize"}`})
	if m := ok[economy.TransferResult](t, r, http.StatusCreated); m.FromID != ledger.MintAccount || m.Balance != micro("11.5") {
		t.Fatalf("mint %+v", m)
	}
	if rep := h.audit(t); rep.Minted != micro("1012.5") {
		t.Fatalf("minted %s", rep.Minted)
	}

	r = h.do(t, req{Method: "POST", Path: "/admin/agents", Token: h.op,
		Body: `{"id":"dora","files":{"main.py":"print('dora')\n"},"credits":7,"bid":{"amount":1,"bundle":` + testBundleJSON + `}}`})
	dora := ok[economy.AgentView](t, r, http.StatusCreated)
	if dora.ID != "dora" || dora.Balance != money.Credits(6) || dora.Held != money.Credits(1) {
		t.Fatalf("created %+v", dora)
	}
	wantFiles(t, h.ws.Dir("dora"), map[string]string{"main.py": "print('dora')\n"})
	wantProblem(t, h.do(t, req{Method: "POST", Path: "/admin/agents", Token: h.op,
		Body: `{"id":"dora","files":{"main.py":"x"},"credits":1}`}), http.StatusConflict, "dora")

	// Killing alice burns her credits and revokes her running execution's token.
	if d := ok[api.Done](t, h.do(t, req{Method: "POST", Path: "/admin/agents/alice/kill", Token: h.op}), http.StatusOK); !d.OK || d.ID != "alice" {
		t.Fatalf("kill %+v", d)
	}
	if b := h.balance(t, "alice"); b.Status != "dead" || b.Balance != 0 || b.Held != 0 {
		t.Fatalf("alice after kill %+v", b)
	}
	wantProblem(t, h.get(t, "/economic/balance", tok), http.StatusUnauthorized, "revoked", "alice", "dead")
	wantProblem(t, h.do(t, req{Method: "POST", Path: "/admin/agents/alice/kill", Token: h.op}), http.StatusConflict, "alice", "dead")
	wantProblem(t, h.do(t, req{Method: "POST", Path: "/executions/ex_x/kill", Token: h.op}), http.StatusConflict, "no executions")
	if v := ok[api.AgentList](t, h.get(t, "/agents?status=dead", ""), http.StatusOK); len(v.Agents) != 1 || v.Agents[0].DeathReason != "killed" {
		t.Fatalf("dead agents %+v", v)
	}
	h.audit(t)
}
