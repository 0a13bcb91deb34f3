package economy_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/store"
)

// attentive is a cheap bundle that holds the operator's attention.
var attentive = market.Bundle{CPUMillis: 100, MemoryMB: 64, DurationSeconds: 10, Attention: 1}

// roomy lets up to eight executions hold attention at once, so a test can
// queue several prompts.
func roomy(s *economy.Settings) {
	s.Capacity.CPUMillis = 8000
	s.Capacity.Attention = 8
}

// wake creates each agent with credits, has it bid amount for bundle, clears
// the market and starts the executions the bids won. It returns each agent's
// principal as Authenticate would.
func (w *world) wake(bundle market.Bundle, credits money.Micro, agentIDs ...string) map[string]economy.Principal {
	w.t.Helper()
	ctx := w.t.Context()
	for _, id := range agentIDs {
		w.agent(id, credits)
		if _, err := w.eco.PlaceBid(ctx, id, economy.BidRequest{Amount: money.Credits(10), Bundle: bundle}, nil); err != nil {
			w.t.Fatalf("PlaceBid(%s): %v", id, err)
		}
	}
	res := w.clear()
	out := map[string]economy.Principal{}
	for _, ex := range res.Queued {
		if !slices.Contains(agentIDs, ex.AgentID) {
			continue
		}
		if _, err := w.eco.StartExecution(ctx, ex.ID, "test", "http://x"); err != nil {
			w.t.Fatalf("StartExecution(%s): %v", ex.ID, err)
		}
		out[ex.AgentID] = economy.Principal{AgentID: ex.AgentID, ExecutionID: ex.ID}
	}
	if len(out) != len(agentIDs) {
		w.t.Fatalf("woke %d of %v", len(out), agentIDs)
	}
	return out
}

func (w *world) submit(who economy.Principal, content string, bid money.Micro) economy.PromptView {
	w.t.Helper()
	v, err := w.eco.SubmitPrompt(w.t.Context(), who, economy.PromptRequest{Content: content, BidAmount: bid}, nil)
	if err != nil {
		w.t.Fatalf("SubmitPrompt(%s): %v", who.AgentID, err)
	}
	return v
}

// prompts reads every prompt row.
func (w *world) prompts() []store.Prompt {
	w.t.Helper()
	var out []store.Prompt
	ctx := w.t.Context()
	if err := w.st.Read(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListPrompts(ctx, store.PromptFilter{})
		return err
	}); err != nil {
		w.t.Fatal(err)
	}
	return out
}

// events lists the events of a type.
func (w *world) events(typ string) []store.Event {
	w.t.Helper()
	var out []store.Event
	ctx := w.t.Context()
	if err := w.st.Read(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.ListEvents(ctx, store.EventFilter{Type: typ})
		return err
	}); err != nil {
		w.t.Fatal(err)
	}
	return out
}

// transfersRef lists the transfers that reference ref.
func (w *world) transfersRef(ref string) []store.Transfer {
	w.t.Helper()
	var out []store.Transfer
	ctx := w.t.Context()
	if err := w.st.Read(ctx, func(tx store.Tx) error {
		all, err := tx.ListTransfers(ctx, store.TransferFilter{Ascending: true})
		for _, t := range all {
			if t.Ref == ref {
				out = append(out, t)
			}
		}
		return err
	}); err != nil {
		w.t.Fatal(err)
	}
	return out
}

// unchangedPrompts is unchanged plus the prompt rows.
func (w *world) unchangedPrompts() func(what string) {
	w.t.Helper()
	same := w.unchanged()
	before := w.prompts()
	return func(what string) {
		w.t.Helper()
		same(what)
		if after := w.prompts(); !slices.Equal(after, before) {
			w.t.Fatalf("%s changed prompts:\n%+v\n→ %+v", what, before, after)
		}
	}
}

func scores(i, u, c int) (*int, *int, *int) { return &i, &u, &c }

func rating(id string, i, u, c int, reason string) economy.RatingRequest {
	ip, up, cp := scores(i, u, c)
	return economy.RatingRequest{PromptID: id, Interesting: ip, Useful: up, Understandable: cp, Reason: reason}
}

func TestSubmitPrompt(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	who := w.wake(attentive, money.Credits(100), "a")["a"]
	before, burned := w.balance("a"), w.totals().Burned

	v := w.submit(who, "What should a colony of agents optimise for?\nSecond line.", money.MustParse("2.5"))
	if v.AgentID != "a" || v.ExecutionID != who.ExecutionID || v.Status != store.PromptPending ||
		v.BidAmount != money.MustParse("2.5") || v.Reward != 0 || v.Scores != nil || !strings.HasPrefix(v.ID, "pr_") {
		t.Fatalf("prompt %+v", v)
	}
	created, _ := time.Parse(time.RFC3339Nano, v.CreatedAt)
	expires, _ := time.Parse(time.RFC3339Nano, v.ExpiresAt)
	if !created.Equal(w.clock.Now()) || expires.Sub(created) != time.Hour {
		t.Fatalf("created %s expires %s: want now and now + prompt_ttl (1h)", v.CreatedAt, v.ExpiresAt)
	}
	if got := w.balance("a"); got.Balance != before.Balance-money.MustParse("2.5") || got.Held != before.Held {
		t.Fatalf("balance %+v after a 2.5 prompt bid, was %+v", got, before)
	}
	if got := w.totals().Burned - burned; got != money.MustParse("2.5") {
		t.Fatalf("burned %s, want the prompt bid 2.5", got)
	}
	trs := w.transfersRef(v.ID)
	if len(trs) != 1 || trs[0].Kind != string(ledger.KindPromptBid) || trs[0].From != "a" ||
		trs[0].To != ledger.BurnAccount || trs[0].Amount != money.MustParse("2.5") {
		t.Fatalf("prompt bid transfers %+v", trs)
	}
	evs := w.events("prompt.submitted")
	if len(evs) != 1 || evs[0].AgentID != "a" || evs[0].Ref != v.ID {
		t.Fatalf("prompt.submitted events %+v", evs)
	}
	var data map[string]any
	if err := json.Unmarshal(evs[0].Data, &data); err != nil || data["execution_id"] != who.ExecutionID {
		t.Fatalf("event data %s, %v", evs[0].Data, err)
	}
	queue, err := w.eco.Prompts(ctx, "", "", 0)
	if err != nil || len(queue) != 1 || queue[0].ID != v.ID || queue[0].Content != v.Content {
		t.Fatalf("queue %+v, %v", queue, err)
	}

	// Without a bid nothing moves but the prompt itself.
	w2 := newWorld(t, nil)
	who2 := w2.wake(attentive, money.Credits(100), "b")["b"]
	tr, _, _, _ := w2.count()
	v2 := w2.submit(who2, "free", 0)
	if tr2, _, _, _ := w2.count(); tr2 != tr || v2.BidAmount != 0 {
		t.Fatalf("a prompt without a bid moved money: transfers %d → %d, %+v", tr, tr2, v2)
	}
	w.audit()
	w2.audit()
}

func TestSubmitPromptRefusals(t *testing.T) {
	t.Parallel()
	w := newWorld(t, roomy)
	ctx := t.Context()
	ps := w.wake(attentive, money.Credits(20), "a", "b", "rich")
	plain := w.wake(small, money.Credits(20), "plain")["plain"]
	done := w.wake(attentive, money.Credits(20), "done")["done"]
	w.bid("done", money.Credits(2)) // stays alive after its execution ends
	if _, err := w.eco.FinishExecution(ctx, done.ExecutionID, sandbox.Result{Reason: sandbox.ReasonExited}); err != nil {
		t.Fatal(err)
	}
	first := w.submit(ps["b"], "first", 0)
	dead := w.wake(attentive, money.Credits(20), "dead")["dead"]
	if err := w.eco.Kill(ctx, "dead"); err != nil {
		t.Fatal(err)
	}
	avail := w.balance("a").Balance

	cases := []struct {
		name  string
		who   economy.Principal
		req   economy.PromptRequest
		code  economy.Code
		parts []string
	}{
		{"no attention", plain, economy.PromptRequest{Content: "hi"}, economy.CodeForbidden,
			[]string{"execution " + plain.ExecutionID + " did not win attention", "attention 0", "bid for a bundle with attention 1"}},
		{"another agent named", ps["a"], economy.PromptRequest{Content: "hi", AgentID: "b"}, economy.CodeForbidden,
			[]string{`agent_id "b"`, `calling agent "a"`}},
		{"another agent's execution", economy.Principal{AgentID: "a", ExecutionID: ps["rich"].ExecutionID},
			economy.PromptRequest{Content: "hi"}, economy.CodeForbidden, []string{"not an execution of agent a"}},
		{"no execution", economy.Principal{AgentID: "a"}, economy.PromptRequest{Content: "hi"}, economy.CodeForbidden,
			[]string{"inside an execution"}},
		{"second prompt", ps["b"], economy.PromptRequest{Content: "again"}, economy.CodeConflict,
			[]string{"already submitted prompt " + first.ID, "one prompt per execution"}},
		{"execution ended", done, economy.PromptRequest{Content: "late"}, economy.CodeConflict,
			[]string{"execution " + done.ExecutionID + " is finished"}},
		{"dead agent", dead, economy.PromptRequest{Content: "from beyond"}, economy.CodeConflict, []string{"dead"}},
		{"empty", ps["a"], economy.PromptRequest{}, economy.CodeInvalid, []string{"content: is required"}},
		{"blank", ps["a"], economy.PromptRequest{Content: " \n\t "}, economy.CodeInvalid, []string{"content: is required"}},
		{"too long", ps["a"], economy.PromptRequest{Content: strings.Repeat("x", w.set.MaxPromptBytes+1)}, economy.CodeInvalid,
			[]string{"content: is 8193 bytes, at most 8192"}},
		{"not UTF-8", ps["a"], economy.PromptRequest{Content: "ok \xff\xfe"}, economy.CodeInvalid, []string{"content: must be valid UTF-8"}},
		{"negative bid", ps["a"], economy.PromptRequest{Content: "hi", BidAmount: -1}, economy.CodeInvalid, []string{"bid_amount"}},
		{"bid over the max", ps["a"], economy.PromptRequest{Content: "hi", BidAmount: money.Max + 1}, economy.CodeInvalid, []string{"bid_amount"}},
		{"bid over the balance", ps["a"], economy.PromptRequest{Content: "hi", BidAmount: avail + 1}, economy.CodeInsufficientFunds,
			[]string{"exceeds the available balance " + avail.String()}},
	}
	for _, tc := range cases {
		same := w.unchangedPrompts()
		_, err := w.eco.SubmitPrompt(ctx, tc.who, tc.req, nil)
		e := wantCode(t, tc.name, err, tc.code)
		for _, part := range tc.parts {
			if !strings.Contains(e.Detail, part) {
				t.Errorf("%s: detail %q does not contain %q", tc.name, e.Detail, part)
			}
		}
		same(tc.name)
	}
	// The whole balance is a valid bid.
	v := w.submit(ps["a"], "all in", avail)
	if w.balance("a").Balance != 0 || v.BidAmount != avail {
		t.Fatalf("bid of the whole balance: %+v, balance %s", v, w.balance("a").Balance)
	}
	w.audit()
}

func TestRatePromptMintsExactly(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		weight  money.Micro
		i, u, c int
		want    money.Micro
	}{
		{"perfect", money.Credits(50), 10, 10, 10, money.Credits(1500)},
		{"mixed", money.Credits(50), 3, 7, 1, money.Credits(550)},
		{"zero", money.Credits(50), 0, 0, 0, 0},
		{"one point", money.Credits(50), 0, 1, 0, money.Credits(50)},
		{"odd weight", money.MustParse("1.234567"), 3, 4, 5, money.MustParse("14.814804")},
		{"micro weight", 1, 10, 10, 9, 29},
		{"weight zero", 0, 10, 10, 10, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, func(s *economy.Settings) { s.RewardWeight = tc.weight })
			ctx := t.Context()
			who := w.wake(attentive, money.Credits(100), "a")["a"]
			p := w.submit(who, "a question", 0)
			before, minted := w.balance("a"), w.totals().Minted

			res, err := w.eco.RatePrompt(ctx, rating(p.ID, tc.i, tc.u, tc.c, "because"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Reward != tc.want || res.Points != tc.i+tc.u+tc.c || res.Weight != tc.weight {
				t.Fatalf("reward %s for %d points × %s, want %s", res.Reward, res.Points, res.Weight, tc.want)
			}
			if got := w.balance("a").Balance - before.Balance; got != tc.want {
				t.Fatalf("balance rose by %s, want %s", got, tc.want)
			}
			if got := w.totals().Minted - minted; got != tc.want {
				t.Fatalf("minted %s, want %s", got, tc.want)
			}
			pv := res.Prompt
			if pv.Status != store.PromptRated || pv.Scores == nil || *pv.Scores != (economy.Scores{Interesting: tc.i, Useful: tc.u,
				Understandable: tc.c}) || pv.Reason != "because" || pv.Reward != tc.want || pv.RatedAt == "" {
				t.Fatalf("rated prompt %+v", pv)
			}
			if got, err := w.eco.Prompt(ctx, p.ID); err != nil || got.Status != store.PromptRated || got.Reward != tc.want {
				t.Fatalf("stored prompt %+v, %v", got, err)
			}
			trs := w.transfersRef(p.ID)
			if tc.want == 0 {
				if len(trs) != 0 || res.TransferID != 0 || !strings.Contains(res.Detail, "nothing was minted") {
					t.Fatalf("a zero reward moved money: %+v, %+v", trs, res)
				}
			} else if len(trs) != 1 || trs[0].Kind != string(ledger.KindReward) || trs[0].From != ledger.MintAccount ||
				trs[0].To != "a" || trs[0].Amount != tc.want || trs[0].ID != res.TransferID ||
				!strings.Contains(res.Detail, "minted "+tc.want.String()+" credits to a") {
				t.Fatalf("reward transfers %+v, result %+v", trs, res)
			}
			if evs := w.events("prompt.rated"); len(evs) != 1 || evs[0].Ref != p.ID || evs[0].AgentID != "a" {
				t.Fatalf("prompt.rated events %+v", evs)
			}
			if q, _ := w.eco.Prompts(ctx, store.PromptPending, "", 0); len(q) != 0 {
				t.Fatalf("rated prompt still queued: %+v", q)
			}
			w.audit()
		})
	}
}

func TestRatePromptRefusals(t *testing.T) {
	t.Parallel()
	w := newWorld(t, roomy)
	ctx := t.Context()
	ps := w.wake(attentive, money.Credits(100), "a", "b", "c")
	rated := w.submit(ps["a"], "rated", 0)
	if _, err := w.eco.RatePrompt(ctx, rating(rated.ID, 1, 1, 1, ""), nil); err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(30 * time.Minute)
	late := w.submit(ps["c"], "due at 1h30m", 0)
	w.clock.Advance(30 * time.Minute)
	pending := w.submit(ps["b"], "due at 2h", 0)
	w.clock.Advance(30 * time.Minute) // 1h30m: "late" is due but no clearing has expired it yet
	ip := func(n int) *int { return &n }

	cases := []struct {
		name  string
		req   economy.RatingRequest
		code  economy.Code
		parts []string
	}{
		{"unknown prompt", rating("pr_nope", 1, 1, 1, ""), economy.CodeNotFound, []string{`prompt "pr_nope" does not exist`}},
		{"no prompt id", rating("", 1, 1, 1, ""), economy.CodeInvalid, []string{"prompt_id: is required"}},
		{"interesting above 10", rating(pending.ID, 11, 1, 1, ""), economy.CodeInvalid, []string{"interesting: must be a whole number from 0 to 10, got 11"}},
		{"useful below 0", rating(pending.ID, 1, -1, 1, ""), economy.CodeInvalid, []string{"useful:", "got -1"}},
		{"understandable huge", rating(pending.ID, 1, 1, 1<<40, ""), economy.CodeInvalid, []string{"understandable:"}},
		{"understandable missing", economy.RatingRequest{PromptID: pending.ID, Interesting: ip(1), Useful: ip(1)},
			economy.CodeInvalid, []string{"understandable: is required"}},
		{"all missing", economy.RatingRequest{PromptID: pending.ID}, economy.CodeInvalid, []string{"interesting: is required"}},
		{"reason not UTF-8", rating(pending.ID, 1, 1, 1, "\xff"), economy.CodeInvalid, []string{"reason:"}},
		{"reason too long", rating(pending.ID, 1, 1, 1, strings.Repeat("r", economy.MaxReasonBytes+1)), economy.CodeInvalid, []string{"reason:"}},
		{"rated twice", rating(rated.ID, 5, 5, 5, ""), economy.CodeConflict, []string{"prompt " + rated.ID + " was already rated"}},
		{"past its time, not yet swept", rating(late.ID, 5, 5, 5, ""), economy.CodeConflict,
			[]string{"prompt " + late.ID + " expired at", "wait 1h0m0s"}},
	}
	for _, tc := range cases {
		same := w.unchangedPrompts()
		_, err := w.eco.RatePrompt(ctx, tc.req, nil)
		e := wantCode(t, tc.name, err, tc.code)
		for _, part := range tc.parts {
			if !strings.Contains(e.Detail, part) {
				t.Errorf("%s: detail %q does not contain %q", tc.name, e.Detail, part)
			}
		}
		if tc.code == economy.CodeInvalid && e.Extra["field"] == nil {
			t.Errorf("%s: no field named in %+v", tc.name, e.Extra)
		}
		same(tc.name)
	}

	// The clearing expires "late"; rating it then says it expired.
	if res := w.clear(); res.ExpiredPrompts != 1 {
		t.Fatalf("clearing expired %d prompts, want 1", res.ExpiredPrompts)
	}
	same := w.unchangedPrompts()
	_, err := w.eco.RatePrompt(ctx, rating(late.ID, 5, 5, 5, ""), nil)
	if e := wantCode(t, "rate an expired prompt", err, economy.CodeConflict); !strings.Contains(e.Detail, "expired unrated") {
		t.Fatalf("detail %q", e.Detail)
	}
	same("rating an expired prompt")
	// "pending" still can be rated.
	if _, err := w.eco.RatePrompt(ctx, rating(pending.ID, 2, 2, 2, ""), nil); err != nil {
		t.Fatal(err)
	}
	w.audit()
}

func TestRatePromptAfterDeath(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	who := w.wake(attentive, money.Credits(100), "a")["a"]
	p := w.submit(who, "my last words", money.Credits(1))
	// The execution ends without a pending bid: the agent dies.
	if _, err := w.eco.FinishExecution(ctx, who.ExecutionID, sandbox.Result{Reason: sandbox.ReasonExited}); err != nil {
		t.Fatal(err)
	}
	if ag, _ := w.eco.Agent(ctx, "a"); ag.Status != store.AgentDead {
		t.Fatalf("agent %+v, want dead", ag)
	}
	q, err := w.eco.Prompts(ctx, "", "", 0)
	if err != nil || len(q) != 1 {
		t.Fatalf("a dead agent's prompt left the queue: %+v, %v", q, err)
	}
	minted := w.totals().Minted
	res, err := w.eco.RatePrompt(ctx, rating(p.ID, 10, 10, 10, "too late"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reward != 0 || res.Prompt.Reward != 0 || res.Prompt.Status != store.PromptRated || res.Points != 30 ||
		!strings.Contains(res.Detail, "agent a died (no_bid) before the rating") || !strings.Contains(res.Detail, "nothing was minted") {
		t.Fatalf("rating after death %+v", res)
	}
	if w.totals().Minted != minted || w.balance("a").Balance != 0 {
		t.Fatalf("credits minted for a dead agent")
	}
	evs := w.events("prompt.rated")
	if len(evs) != 1 || !strings.Contains(string(evs[0].Data), `"agent_alive":false`) {
		t.Fatalf("prompt.rated events %+v", evs)
	}
	w.audit()
}

func TestPromptExpiryInClear(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(s *economy.Settings) { roomy(s); s.PromptTTL = 10 * time.Minute })
	ctx := t.Context()
	ps := w.wake(attentive, money.Credits(100), "a", "b")
	first := w.submit(ps["a"], "first", money.Credits(3))
	w.clock.Advance(time.Minute)
	second := w.submit(ps["b"], "second", 0)
	burned := w.totals().Burned

	w.clock.Advance(9*time.Minute - time.Microsecond)
	if res := w.clear(); res.ExpiredPrompts != 0 {
		t.Fatalf("expired %d prompts before their time", res.ExpiredPrompts)
	}
	w.clock.Advance(time.Microsecond) // first's 10 minutes are up
	if q, _ := w.eco.Prompts(ctx, "", "", 0); len(q) != 1 || q[0].ID != second.ID {
		t.Fatalf("queue shows a prompt whose time is up: %+v", q)
	}
	res := w.clear()
	if res.ExpiredPrompts != 1 {
		t.Fatalf("expired %d prompts, want 1", res.ExpiredPrompts)
	}
	evs := w.events("prompt.expired")
	if len(evs) != 1 || evs[0].Ref != first.ID || evs[0].AgentID != "a" || evs[0].Cycle != res.Cycle {
		t.Fatalf("prompt.expired events %+v", evs)
	}
	exp, err := w.eco.Prompts(ctx, store.PromptExpired, "", 0)
	if err != nil || len(exp) != 1 || exp[0].ID != first.ID || exp[0].Scores != nil || exp[0].RatedAt != "" {
		t.Fatalf("expired prompts %+v, %v", exp, err)
	}
	if got := w.totals().Burned; got != burned {
		t.Fatalf("burned %s → %s: an expired prompt's bid stays burned, nothing else moves", burned, got)
	}
	if w.clear().ExpiredPrompts != 0 || len(w.events("prompt.expired")) != 1 {
		t.Fatal("a prompt expired twice")
	}
	w.clock.Advance(time.Minute)
	if w.clear().ExpiredPrompts != 1 {
		t.Fatal("second prompt did not expire")
	}
	w.audit()
}

func TestPromptQueueOrder(t *testing.T) {
	t.Parallel()
	w := newWorld(t, roomy)
	ctx := t.Context()
	ps := w.wake(attentive, money.Credits(100), "a", "b", "c", "d")
	var ids []string
	for _, s := range []struct {
		agent string
		bid   string
	}{{"a", "0"}, {"b", "2"}, {"c", "1"}, {"d", "2"}} {
		ids = append(ids, w.submit(ps[s.agent], "from "+s.agent, money.MustParse(s.bid)).ID)
		w.clock.Advance(time.Second)
	}
	list := func(status, agent string, limit int) []string {
		t.Helper()
		vs, err := w.eco.Prompts(ctx, status, agent, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, v := range vs {
			out = append(out, v.ID)
		}
		return out
	}
	if got, want := list("", "", 0), []string{ids[1], ids[3], ids[2], ids[0]}; !slices.Equal(got, want) {
		t.Fatalf("queue %v, want highest bid first, then oldest: %v", got, want)
	}
	if got := list(store.PromptPending, "", 2); !slices.Equal(got, []string{ids[1], ids[3]}) {
		t.Fatalf("queue limited to 2: %v", got)
	}
	if got := list(store.PromptPending, "c", 0); !slices.Equal(got, []string{ids[2]}) {
		t.Fatalf("c's prompts: %v", got)
	}
	for _, id := range []string{ids[0], ids[2]} {
		if _, err := w.eco.RatePrompt(ctx, rating(id, 1, 2, 3, ""), nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := list(store.PromptRated, "", 0); !slices.Equal(got, []string{ids[2], ids[0]}) {
		t.Fatalf("rated prompts %v, want newest first", got)
	}
	if got := list(store.PromptPending, "", 0); !slices.Equal(got, []string{ids[1], ids[3]}) {
		t.Fatalf("queue after rating %v", got)
	}
	_, err := w.eco.Prompts(ctx, "done", "", 0)
	if e := wantCode(t, "unknown status", err, economy.CodeInvalid); !strings.Contains(e.Detail, `status: must be pending, rated or expired, got "done"`) {
		t.Fatalf("detail %q", e.Detail)
	}
	w.audit()
}

func TestPromptIdempotency(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	who := w.wake(attentive, money.Credits(100), "a")["a"]
	idem := &economy.Idem{Principal: "agent:a", Key: "k1", Hash: "h1"}
	req := economy.PromptRequest{Content: "once", BidAmount: money.Credits(2)}
	v1, err := w.eco.SubmitPrompt(ctx, who, req, idem)
	if err != nil {
		t.Fatal(err)
	}
	bal := w.balance("a")
	v2, err := w.eco.SubmitPrompt(ctx, who, req, idem)
	if err != nil || v2 != v1 || w.balance("a") != bal {
		t.Fatalf("retried submission %+v, %v; balance %+v → %+v", v2, err, bal, w.balance("a"))
	}
	_, err = w.eco.SubmitPrompt(ctx, who, req, &economy.Idem{Principal: "agent:a", Key: "k1", Hash: "other"})
	wantCode(t, "key reused for another request", err, economy.CodeIdempotencyReuse)

	op := &economy.Idem{Principal: "operator", Key: "r1", Hash: "h"}
	r1, err := w.eco.RatePrompt(ctx, rating(v1.ID, 4, 5, 6, ""), op)
	if err != nil {
		t.Fatal(err)
	}
	minted := w.totals().Minted
	r2, err := w.eco.RatePrompt(ctx, rating(v1.ID, 4, 5, 6, ""), op)
	if err != nil || r2.TransferID != r1.TransferID || r2.Reward != money.Credits(750) || w.totals().Minted != minted {
		t.Fatalf("retried rating %+v, %v: minted %s → %s", r2, err, minted, w.totals().Minted)
	}
	if trs := w.transfersRef(v1.ID); len(trs) != 2 { // the bid and one reward
		t.Fatalf("transfers for the prompt: %+v", trs)
	}
	w.audit()
}

func TestHumanMessages(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ctx := t.Context()
	w.agent("a", money.Credits(10))
	w.agent("b", money.Credits(10))
	for i, to := range []string{"human", "b", "human", "human"} {
		if _, err := w.eco.SendMessage(ctx, "a", economy.MessageRequest{ToID: to, Content: "m" + string(rune('0'+i))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	page, err := w.eco.HumanMessages(ctx, 0, 2)
	if err != nil || len(page.Messages) != 2 || page.Messages[0].Content != "m3" || page.Messages[1].Content != "m2" ||
		page.NextBefore == 0 || page.Messages[0].From != "a" || page.Messages[0].To != economy.HumanID {
		t.Fatalf("first page %+v, %v", page, err)
	}
	next, err := w.eco.HumanMessages(ctx, page.NextBefore, 2)
	if err != nil || len(next.Messages) != 1 || next.Messages[0].Content != "m0" || next.NextBefore != 0 {
		t.Fatalf("second page %+v, %v", next, err)
	}
	// Reading changes nothing: no read marks, no events.
	_, events, _, _ := w.count()
	if _, err := w.eco.HumanMessages(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, e2, _, _ := w.count(); e2 != events {
		t.Fatal("listing human messages wrote events")
	}
}
