package api_test

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// attentionBundle is testBundle holding the operator's attention (capacity 1
// in the harness, as by default).
var attentionBundle = market.Bundle{CPUMillis: testBundle.CPUMillis, MemoryMB: testBundle.MemoryMB,
	DurationSeconds: testBundle.DurationSeconds, Attention: 1}

// newAttentiveAgent creates an agent whose only bid is for a bundle with
// attention, and logs it in: the returned token belongs to an execution that
// holds attention.
func (h *harness) newAttentiveAgent(id, credits string) (token, execID string) {
	h.t.Helper()
	_, err := h.eco.CreateAgent(h.ctx, economy.CreateAgentRequest{ID: id, Credits: money.MustParse(credits),
		Files: map[string]string{"main.py": "print(1)\n"}, Bid: &economy.BidSpec{Amount: money.Credits(10), Bundle: attentionBundle}})
	if err != nil {
		h.t.Fatalf("create agent %s: %v", id, err)
	}
	return h.login(id)
}

// promptRows reads every prompt, for before/after comparisons.
func (h *harness) promptRows(t testing.TB) []store.Prompt {
	t.Helper()
	var out []store.Prompt
	if err := h.st.Read(h.ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListPrompts(h.ctx, store.PromptFilter{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestHumanAttention(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	tok, execID := h.newAttentiveAgent("alice", "100")
	before := h.balance(t, "alice")

	submit := req{Method: "POST", Path: "/human/prompt", Token: tok, IdemKey: "p-1",
		Body: `{"content":"Which experiment should we run next?\nDetails follow.","bid_amount":2.5}`}
	p := ok[economy.PromptView](t, h.do(t, submit), http.StatusCreated)
	if p.AgentID != "alice" || p.ExecutionID != execID || p.Status != "pending" || p.BidAmount != money.MustParse("2.5") ||
		!strings.HasPrefix(p.Content, "Which experiment") {
		t.Fatalf("prompt %+v", p)
	}
	// A retry with the same key answers the same and pays once.
	if again := ok[economy.PromptView](t, h.do(t, submit), http.StatusCreated); again != p {
		t.Fatalf("retry answered %+v, first %+v", again, p)
	}
	if got := h.balance(t, "alice"); got.Balance != before.Balance-money.MustParse("2.5") {
		t.Fatalf("balance %s after a 2.5 prompt bid, was %s", got.Balance, before.Balance)
	}

	queue := ok[api.PromptList](t, h.get(t, "/human/prompts", h.op), http.StatusOK)
	if len(queue.Prompts) != 1 || queue.Prompts[0].ID != p.ID {
		t.Fatalf("queue %+v", queue)
	}
	if rated := ok[api.PromptList](t, h.get(t, "/human/prompts?status=rated", h.op), http.StatusOK); len(rated.Prompts) != 0 {
		t.Fatalf("rated %+v", rated)
	}
	if one := ok[economy.PromptView](t, h.get(t, "/human/prompts/"+p.ID, h.op), http.StatusOK); one != p {
		t.Fatalf("GET /human/prompts/{id} = %+v", one)
	}

	rate := req{Method: "POST", Path: "/human/reward", Token: h.op, IdemKey: "r-1",
		Body: `{"prompt_id":"` + p.ID + `","interesting":7,"useful":8,"understandable":9,"reason":"clear"}`}
	res := ok[economy.RatingResult](t, h.do(t, rate), http.StatusCreated)
	want := money.Credits(24 * 50)
	if res.Reward != want || res.Points != 24 || res.Weight != money.Credits(50) || res.Prompt.Status != "rated" ||
		res.Prompt.Scores == nil || res.Prompt.Scores.Useful != 8 || res.Prompt.Reason != "clear" || res.TransferID == 0 ||
		!strings.Contains(res.Detail, "minted 1200 credits to alice") {
		t.Fatalf("rating %+v", res)
	}
	if got := h.balance(t, "alice"); got.Balance != before.Balance-money.MustParse("2.5")+want {
		t.Fatalf("balance %s after a reward of %s", got.Balance, want)
	}
	if again := ok[economy.RatingResult](t, h.do(t, rate), http.StatusCreated); again.TransferID != res.TransferID {
		t.Fatalf("retried rating minted again: %+v", again)
	}
	rerate := rate
	rerate.IdemKey = ""
	wantProblem(t, h.do(t, rerate), http.StatusConflict, "prompt "+p.ID+" was already rated")

	hist := ok[api.HistoryPage](t, h.get(t, "/economic/history", tok), http.StatusOK)
	kinds := []string{}
	for _, e := range hist.Entries {
		if e.Ref == p.ID {
			kinds = append(kinds, e.Kind)
		}
	}
	if !slices.Equal(kinds, []string{"reward", "prompt_bid"}) {
		t.Fatalf("the agent's history for the prompt: %v, want reward then prompt_bid", kinds)
	}
	evs := ok[api.EventPage](t, h.get(t, "/events?type=prompt.", h.op), http.StatusOK)
	var types []string
	for _, e := range evs.Events {
		types = append(types, e.Type)
	}
	if !slices.Equal(types, []string{"prompt.submitted", "prompt.rated"}) {
		t.Fatalf("prompt events %v", types)
	}
	h.audit(t)
}

func TestHumanAttentionRefusals(t *testing.T) {
	t.Parallel()
	// Two attention slots: alice has used hers, carol's is fresh.
	h := newHarness(t, func(c *config.Config) {
		a := c.Market.Resources["attention"]
		a.Capacity = 2
		c.Market.Resources["attention"] = a
	})
	h.newAgent("bob", "50", nil)
	bob, bobExec := h.login("bob") // a bundle without attention
	alice, _ := h.newAttentiveAgent("alice", "20")
	carol, _ := h.newAttentiveAgent("carol", "20")
	first := ok[economy.PromptView](t, h.do(t, req{Method: "POST", Path: "/human/prompt", Token: alice,
		Body: `{"content":"first"}`}), http.StatusCreated)
	avail := h.balance(t, "carol").Balance
	prompt := func(token, body string) req {
		return req{Method: "POST", Path: "/human/prompt", Token: token, Body: body}
	}
	rate := func(token, body string) req {
		return req{Method: "POST", Path: "/human/reward", Token: token, Body: body}
	}
	score := func(i, u, c string) string {
		return `{"prompt_id":"` + first.ID + `","interesting":` + i + `,"useful":` + u + `,"understandable":` + c + `}`
	}

	cases := []struct {
		name   string
		req    req
		status int
		parts  []string
		field  string // the problem's field member, when set
	}{
		{"no attention", prompt(bob, `{"content":"hello"}`), http.StatusForbidden,
			[]string{"execution " + bobExec + " did not win attention", "bid for a bundle with attention 1"}, ""},
		{"second prompt", prompt(alice, `{"content":"again"}`), http.StatusConflict,
			[]string{"already submitted prompt " + first.ID, "one prompt per execution"}, ""},
		{"impersonation", prompt(bob, `{"content":"hi","agent_id":"alice"}`), http.StatusForbidden, []string{`agent_id "alice"`}, ""},
		{"operator token", prompt(h.op, `{"content":"hi"}`), http.StatusForbidden, []string{"execution token"}, ""},
		{"no token", prompt("", `{"content":"hi"}`), http.StatusUnauthorized, []string{"bearer token"}, ""},
		{"empty content", prompt(carol, `{"content":""}`), http.StatusUnprocessableEntity, []string{"content: is required"}, "content"},
		{"content too long", prompt(carol, `{"content":"`+strings.Repeat("x", 8193)+`"}`), http.StatusUnprocessableEntity,
			[]string{"content: is 8193 bytes, at most 8192"}, "content"},
		{"bid over balance", prompt(carol, `{"content":"x","bid_amount":`+(avail+1).String()+`}`), http.StatusPaymentRequired,
			[]string{"exceeds the available balance"}, ""},
		{"bid with 7 decimals", prompt(carol, `{"content":"x","bid_amount":0.0000001}`), http.StatusUnprocessableEntity,
			[]string{"bid_amount:"}, ""},
		{"negative bid", prompt(carol, `{"content":"x","bid_amount":-1}`), http.StatusUnprocessableEntity, []string{"bid_amount"}, "bid_amount"},
		{"unknown field", prompt(carol, `{"content":"x","priority":1}`), http.StatusUnprocessableEntity, []string{`unknown field "priority"`}, ""},

		{"rate as an agent", rate(alice, score("1", "1", "1")), http.StatusForbidden, []string{"operator token"}, ""},
		{"rate without token", rate("", score("1", "1", "1")), http.StatusUnauthorized, []string{"bearer token"}, ""},
		{"interesting 11", rate(h.op, score("11", "1", "1")), http.StatusUnprocessableEntity,
			[]string{"interesting: must be a whole number from 0 to 10, got 11"}, "interesting"},
		{"useful -1", rate(h.op, score("1", "-1", "1")), http.StatusUnprocessableEntity, []string{"useful:"}, "useful"},
		{"understandable 7.5", rate(h.op, score("1", "1", "7.5")), http.StatusUnprocessableEntity, []string{"understandable:"}, ""},
		{"understandable as text", rate(h.op, score("1", "1", `"9"`)), http.StatusUnprocessableEntity, []string{"understandable:"}, ""},
		{"score missing", rate(h.op, `{"prompt_id":"`+first.ID+`","interesting":1,"useful":1}`), http.StatusUnprocessableEntity,
			[]string{"understandable: is required"}, "understandable"},
		{"unknown prompt", rate(h.op, `{"prompt_id":"pr_nope","interesting":1,"useful":1,"understandable":1}`), http.StatusNotFound,
			[]string{`prompt "pr_nope" does not exist`}, ""},
		{"unknown prompt by id", req{Method: "GET", Path: "/human/prompts/pr_nope", Token: h.op}, http.StatusNotFound,
			[]string{`prompt "pr_nope" does not exist`}, ""},
		{"queue as an agent", req{Method: "GET", Path: "/human/prompts", Token: alice}, http.StatusForbidden, []string{"operator token"}, ""},
		{"queue with a bad status", req{Method: "GET", Path: "/human/prompts?status=done", Token: h.op}, http.StatusUnprocessableEntity,
			[]string{"query parameter status: must be pending, rated or expired"}, ""},
		{"messages as an agent", req{Method: "GET", Path: "/human/messages", Token: bob}, http.StatusForbidden, []string{"operator token"}, ""},
		{"messages with a bad cursor", req{Method: "GET", Path: "/human/messages?before=x", Token: h.op}, http.StatusUnprocessableEntity,
			[]string{"query parameter before"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, prompts := h.snapshot(t), h.promptRows(t)
			p := wantProblem(t, h.do(t, c.req), c.status, c.parts...)
			if c.field != "" && p.All["field"] != c.field {
				t.Errorf("problem field %v, want %q", p.All["field"], c.field)
			}
			sameSnapshot(t, before, h.snapshot(t))
			if after := h.promptRows(t); !slices.Equal(after, prompts) {
				t.Errorf("prompts changed: %+v → %+v", prompts, after)
			}
		})
	}
	// The conflict names the existing prompt in a member of its own.
	p := wantProblem(t, h.do(t, prompt(alice, `{"content":"again"}`)), http.StatusConflict)
	if p.All["prompt_id"] != first.ID {
		t.Fatalf("problem %+v does not carry prompt_id", p.All)
	}
	// carol's prompt was refused only for the reasons given: a valid one passes.
	ok[economy.PromptView](t, h.do(t, prompt(carol, `{"content":"x","bid_amount":`+avail.String()+`}`)), http.StatusCreated)
	if b := h.balance(t, "carol"); b.Balance != 0 {
		t.Fatalf("carol's balance %s after bidding all of it", b.Balance)
	}
	h.audit(t)
}

func TestHumanMessagesRoute(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.newAgent("alice", "50", nil)
	tok, _ := h.login("alice")
	for _, body := range []string{"one", "two", "three"} {
		ok[economy.MessageView](t, h.do(t, req{Method: "POST", Path: "/social/message", Token: tok,
			Body: `{"to_id":"human","content":"` + body + `"}`}), http.StatusCreated)
	}
	page := ok[economy.MessagePage](t, h.get(t, "/human/messages?limit=2", h.op), http.StatusOK)
	if len(page.Messages) != 2 || page.Messages[0].Content != "three" || page.Messages[1].Content != "two" ||
		page.Messages[0].From != "alice" || page.NextBefore == 0 {
		t.Fatalf("first page %+v", page)
	}
	next := ok[economy.MessagePage](t, h.get(t, "/human/messages?limit=2&before="+strconv.FormatInt(page.NextBefore, 10), h.op), http.StatusOK)
	if len(next.Messages) != 1 || next.Messages[0].Content != "one" || next.NextBefore != 0 {
		t.Fatalf("second page %+v", next)
	}
	h.audit(t)
}
