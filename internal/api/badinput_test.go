package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/bpagents/bpagents/internal/economy"
)

// badCase is one hostile request and the refusal it must get.
type badCase struct {
	name   string
	req    req
	status int
	// parts must all appear in the problem's detail.
	parts []string
}

// badInputWorld is an economy with agents in every state the bad-input
// cases need: alice (500 credits, 499 after her first execution) and bob (50) with running executions, a
// pending bid of bob's, and carol whose execution has ended.
type badInputWorld struct {
	h                 *harness
	alice, bob, carol string // tokens
	bobBid            string
}

func newBadInputWorld(t *testing.T) *badInputWorld {
	h := newHarness(t, nil)
	h.newAgent("alice", "500", nil)
	h.newAgent("bob", "50", nil)
	h.newAgent("carol", "10", nil)
	w := &badInputWorld{h: h}
	w.alice, _ = h.login("alice")
	w.bob, _ = h.login("bob")
	var carolExec string
	w.carol, carolExec = h.login("carol")
	h.finish(carolExec, "")
	bid := ok[economy.BidView](t, h.do(t, req{Method: "POST", Path: "/market/bid", Token: w.bob,
		Body: `{"amount":2,"bundle":` + testBundleJSON + `}`}), http.StatusCreated)
	w.bobBid = bid.ID
	return w
}

// run sends each case and proves it changed nothing: the snapshot (ledger,
// agents, bids, executions, messages, events, workspaces, audit) is the same
// before and after, and the audit is still clean.
func (w *badInputWorld) run(t *testing.T, cases []badCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := w.h.snapshot(t)
			r := w.h.do(t, c.req)
			wantProblem(t, r, c.status, c.parts...)
			sameSnapshot(t, before, w.h.snapshot(t))
		})
	}
}

// TestBadInputChangesNothing is the must-show list: every kind of bad input
// on the money-moving routes gets a precise problem+json refusal and moves
// nothing.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	w := newBadInputWorld(t)
	h := w.h
	t.Run("malformed", func(t *testing.T) { w.run(t, malformedCases(w)) })
	t.Run("amounts", func(t *testing.T) { w.run(t, amountCases(w)) })
	t.Run("unknown", func(t *testing.T) { w.run(t, unknownCases(w)) })
	t.Run("auth", func(t *testing.T) { w.run(t, authCases(w)) })
	t.Run("oversized", func(t *testing.T) { w.run(t, oversizedCases(w)) })
	t.Run("impersonation", func(t *testing.T) { w.run(t, impersonationCases(w)) })
	t.Run("fields", func(t *testing.T) { w.run(t, fieldCases(w)) })
	h.audit(t)
}

// route is a POST route with a body that would succeed.
type route struct {
	path  string
	valid string
	// wrongType gives one field a value of the wrong JSON type.
	wrongType string
	field     string
}

func postRoutes() []route {
	return []route{
		{"/economic/transfer", `{"to_id":"bob","amount":1.5,"memo":"hi"}`, `{"to_id":5,"amount":1}`, "to_id"},
		{"/market/bid", `{"amount":2,"bundle":` + testBundleJSON + `}`, `{"amount":2,"bundle":"big"}`, "bundle"},
		{"/social/spawn", `{"initial_credits":5,"files":{"main.py":"print(2)\n"}}`, `{"initial_credits":5,"files":["main.py"]}`, "files"},
		{"/social/message", `{"to_id":"bob","content":"hello"}`, `{"to_id":"bob","content":7}`, "content"},
	}
}

func malformedCases(w *badInputWorld) []badCase {
	var cases []badCase
	for _, rt := range postRoutes() {
		post := func(body, ct string) req {
			return req{Method: "POST", Path: rt.path, Token: w.alice, Body: body, ContentType: ct}
		}
		name := strings.TrimPrefix(rt.path, "/")
		cases = append(cases,
			badCase{name + "/truncated", post(rt.valid[:len(rt.valid)-1], ""), http.StatusBadRequest, []string{"malformed JSON", "unexpected end"}},
			badCase{name + "/trailing garbage", post(rt.valid+" x", ""), http.StatusBadRequest, []string{"after the object"}},
			badCase{name + "/trailing bracket", post(rt.valid+"]", ""), http.StatusBadRequest, []string{"after the object"}},
			badCase{name + "/trailing brace", post(rt.valid+"}", ""), http.StatusBadRequest, []string{"after the object"}},
			badCase{name + "/two objects", post(rt.valid+rt.valid, ""), http.StatusBadRequest, []string{"after the object"}},
			badCase{name + "/array", post("["+rt.valid+"]", ""), http.StatusBadRequest, []string{"JSON object", "array"}},
			badCase{name + "/null", post("null", ""), http.StatusBadRequest, []string{"JSON object", "null"}},
			badCase{name + "/empty body", post("", "-"), http.StatusBadRequest, []string{"empty"}},
			badCase{name + "/whitespace body", post(" \n\t", ""), http.StatusBadRequest, []string{"empty"}},
			badCase{name + "/string", post(`"hello"`, ""), http.StatusBadRequest, []string{"JSON object", "string"}},
			badCase{name + "/wrong type", post(rt.wrongType, ""), http.StatusUnprocessableEntity, []string{rt.field + ":"}},
			badCase{name + "/unknown field", post(rt.valid[:len(rt.valid)-1]+`,"zzz":1}`, ""), http.StatusUnprocessableEntity,
				[]string{`unknown field "zzz"`}},
			badCase{name + "/field name in other case", post(strings.Replace(rt.valid, `"`+firstKey(rt.valid)+`"`,
				`"`+strings.ToUpper(firstKey(rt.valid))+`"`, 1), ""), http.StatusUnprocessableEntity,
				[]string{`unknown field "` + strings.ToUpper(firstKey(rt.valid)) + `"`}},
			badCase{name + "/text/plain", post(rt.valid, "text/plain"), http.StatusUnsupportedMediaType, []string{"Content-Type", "text/plain"}},
			badCase{name + "/form", post(rt.valid, "application/x-www-form-urlencoded"), http.StatusUnsupportedMediaType,
				[]string{"application/x-www-form-urlencoded"}},
			badCase{name + "/bad media type", post(rt.valid, ";;"), http.StatusUnsupportedMediaType, []string{"Content-Type"}},
		)
	}
	return cases
}

func firstKey(body string) string {
	rest := strings.TrimPrefix(body, `{"`)
	return rest[:strings.Index(rest, `"`)]
}

func amountCases(w *badInputWorld) []badCase {
	amounts := []struct {
		name   string
		token  string
		status int
		parts  []string
	}{
		{"negative", "-5", http.StatusUnprocessableEntity, []string{"greater than 0", "-5"}},
		{"negative string", `"-0.5"`, http.StatusUnprocessableEntity, []string{"greater than 0", "-0.5"}},
		{"zero", "0", http.StatusUnprocessableEntity, []string{"greater than 0", "got 0"}},
		{"zero decimal", "0.000000", http.StatusUnprocessableEntity, []string{"greater than 0"}},
		{"NaN token", "NaN", http.StatusBadRequest, []string{"malformed JSON", "invalid character 'N'"}},
		{"NaN string", `"NaN"`, http.StatusUnprocessableEntity, []string{`"NaN"`, "not a decimal number"}},
		{"Infinity string", `"Infinity"`, http.StatusUnprocessableEntity, []string{`"Infinity"`, "not a decimal number"}},
		{"Infinity token", "Infinity", http.StatusBadRequest, []string{"malformed JSON", "invalid character 'I'"}},
		{"exponent", "1e3", http.StatusUnprocessableEntity, []string{`"1e3"`, "not a decimal number"}},
		{"exponent string", `"1E3"`, http.StatusUnprocessableEntity, []string{`"1E3"`, "not a decimal number"}},
		{"hex string", `"0x10"`, http.StatusUnprocessableEntity, []string{`"0x10"`}},
		{"over-precise", "0.0000001", http.StatusUnprocessableEntity, []string{`"0.0000001"`, "more than 6 decimal places"}},
		{"huge", "99999999999999999999", http.StatusUnprocessableEntity, []string{`"99999999999999999999"`, "out of range"}},
		{"above max", "1000000000000.000001", http.StatusUnprocessableEntity, []string{"out of range"}},
		{"empty string", `""`, http.StatusUnprocessableEntity, []string{"not a decimal number"}},
		{"null", "null", http.StatusUnprocessableEntity, []string{"null"}},
		{"boolean", "true", http.StatusUnprocessableEntity, []string{"true"}},
		{"object", `{"value":1}`, http.StatusUnprocessableEntity, []string{"not a decimal number"}},
	}
	var cases []badCase
	for _, a := range amounts {
		cases = append(cases,
			badCase{"transfer/" + a.name, req{Method: "POST", Path: "/economic/transfer", Token: w.alice,
				Body: `{"to_id":"bob","amount":` + a.token + `}`}, a.status, withField("amount", a)},
			badCase{"bid/" + a.name, req{Method: "POST", Path: "/market/bid", Token: w.alice,
				Body: `{"amount":` + a.token + `,"bundle":` + testBundleJSON + `}`}, a.status, withField("amount", a)},
		)
		// A zero endowment is allowed for a child: not bad input.
		if a.name != "zero" && a.name != "zero decimal" {
			cases = append(cases, badCase{"spawn/" + a.name, req{Method: "POST", Path: "/social/spawn", Token: w.alice,
				Body: `{"initial_credits":` + a.token + `}`}, a.status, spawnParts(a.name, a.parts)})
		}
	}
	cases = append(cases,
		badCase{"transfer/more than the balance", req{Method: "POST", Path: "/economic/transfer", Token: w.alice,
			Body: `{"to_id":"bob","amount":499.000001}`}, http.StatusPaymentRequired,
			[]string{"499.000001", "exceeds the available balance 499"}},
		badCase{"bid/more than the balance", req{Method: "POST", Path: "/market/bid", Token: w.alice,
			Body: `{"amount":5000,"bundle":` + testBundleJSON + `}`}, http.StatusPaymentRequired,
			[]string{"5000", "exceeds the available balance"}},
		badCase{"spawn/more than the balance", req{Method: "POST", Path: "/social/spawn", Token: w.alice,
			Body: `{"initial_credits":400,"files":{"main.py":"print(3)\n"}}`}, http.StatusPaymentRequired,
			[]string{"spawning costs 500", "fee 100", "initial_credits 400", "499 available"}},
		badCase{"bid/below the reserve", req{Method: "POST", Path: "/market/bid", Token: w.alice,
			Body: `{"amount":0.000001,"bundle":` + testBundleJSON + `}`}, http.StatusUnprocessableEntity,
			[]string{"below the bundle's reserve price"}},
		badCase{"spawn/bid above the endowment", req{Method: "POST", Path: "/social/spawn", Token: w.alice,
			Body: `{"initial_credits":1,"bid":{"amount":2,"bundle":` + testBundleJSON + `}}`}, http.StatusUnprocessableEntity,
			[]string{"bid.amount", "initial_credits 1"}},
	)
	return cases
}

// withField adds the field name to the parts a field-level refusal must show;
// a JSON syntax error cannot name it, so it names the offending token.
func withField(field string, a struct {
	name   string
	token  string
	status int
	parts  []string
}) []string {
	if a.status == http.StatusBadRequest {
		return a.parts
	}
	return append([]string{field}, a.parts...)
}

func spawnParts(name string, parts []string) []string {
	switch name {
	case "negative", "negative string":
		return []string{"initial_credits", "between 0 and"}
	case "NaN token", "Infinity token":
		return parts
	}
	return append([]string{"initial_credits"}, parts...)
}

func unknownCases(w *badInputWorld) []badCase {
	return []badCase{
		{"transfer to_id", req{Method: "POST", Path: "/economic/transfer", Token: w.alice,
			Body: `{"to_id":"nobody","amount":1}`}, http.StatusNotFound, []string{`agent "nobody" does not exist`}},
		{"transfer to human", req{Method: "POST", Path: "/economic/transfer", Token: w.alice,
			Body: `{"to_id":"human","amount":1}`}, http.StatusNotFound, []string{`"human"`}},
		{"transfer to a dead agent", req{Method: "POST", Path: "/economic/transfer", Token: w.alice,
			Body: `{"to_id":"carol","amount":1}`}, http.StatusConflict, []string{`agent "carol" is dead`}},
		{"bid for_agent", req{Method: "POST", Path: "/market/bid", Token: w.alice,
			Body: `{"amount":2,"bundle":` + testBundleJSON + `,"for_agent":"nobody"}`}, http.StatusNotFound,
			[]string{`agent "nobody" does not exist`}},
		{"message to_id", req{Method: "POST", Path: "/social/message", Token: w.alice,
			Body: `{"to_id":"nobody","content":"hi"}`}, http.StatusNotFound, []string{`agent "nobody" does not exist`}},
		{"public balance", req{Method: "GET", Path: "/economic/balance/nobody"}, http.StatusNotFound,
			[]string{`agent "nobody" does not exist`}},
		{"directory entry", req{Method: "GET", Path: "/agents/nobody"}, http.StatusNotFound,
			[]string{`agent "nobody" does not exist`}},
		{"cancel another agent's bid", req{Method: "DELETE", Path: "/market/bid/" + w.bobBid, Token: w.alice},
			http.StatusForbidden, []string{w.bobBid, "another agent"}},
		{"cancel an unknown bid", req{Method: "DELETE", Path: "/market/bid/bid_nope", Token: w.alice},
			http.StatusNotFound, []string{`bid "bid_nope" does not exist`}},
		{"execution", req{Method: "GET", Path: "/executions/ex_nope", Token: w.h.op}, http.StatusNotFound,
			[]string{`execution "ex_nope" does not exist`}},
		{"no such route", req{Method: "GET", Path: "/economic/nothing"}, http.StatusNotFound, []string{"/economic/nothing"}},
		{"wrong method", req{Method: "GET", Path: "/economic/transfer", Token: w.alice}, http.StatusMethodNotAllowed,
			[]string{"/economic/transfer", "GET", "only POST"}},
		{"wrong method on a pattern", req{Method: "PUT", Path: "/market/bid/" + w.bobBid, Token: w.alice,
			Body: `{}`}, http.StatusMethodNotAllowed, []string{"PUT", "only DELETE"}},
	}
}

func authCases(w *badInputWorld) []badCase {
	transfer := func(token string) req {
		return req{Method: "POST", Path: "/economic/transfer", Token: token, Body: `{"to_id":"bob","amount":1}`}
	}
	return []badCase{
		{"expired token", transfer(w.carol), http.StatusUnauthorized, []string{"expired", "ended at"}},
		{"expired token on a read", req{Method: "GET", Path: "/economic/balance", Token: w.carol},
			http.StatusUnauthorized, []string{"expired"}},
		{"unknown token", transfer("bpt_nope"), http.StatusUnauthorized, []string{"unknown token"}},
		{"no token", transfer(""), http.StatusUnauthorized, []string{"missing bearer token"}},
		{"operator token on an agent route", transfer(w.h.op), http.StatusForbidden, []string{"operator token"}},
		{"operator token on an agent read", req{Method: "GET", Path: "/economic/balance", Token: w.h.op},
			http.StatusForbidden, []string{"execution token"}},
		{"agent token on an operator route", req{Method: "POST", Path: "/admin/mint", Token: w.alice,
			Body: `{"agent_id":"alice","amount":1000}`}, http.StatusForbidden, []string{"operator token"}},
		{"agent token on the event log", req{Method: "GET", Path: "/events", Token: w.alice},
			http.StatusForbidden, []string{"operator token"}},
		{"agent token on audit", req{Method: "GET", Path: "/admin/audit", Token: w.alice},
			http.StatusForbidden, []string{"operator token"}},
		{"no token on an operator route", req{Method: "POST", Path: "/admin/mint",
			Body: `{"agent_id":"alice","amount":1000}`}, http.StatusUnauthorized, []string{"operator token"}},
	}
}

func oversizedCases(w *badInputWorld) []badCase {
	limit := w.h.cfg.API.MaxBodyBytes
	spawnLimit := w.h.cfg.API.MaxSpawnBodyBytes
	pad := func(n int64) string { return strings.Repeat("x", int(n)) }
	bigTransfer := `{"to_id":"bob","amount":1,"memo":"` + pad(limit) + `"}`
	between := `{"initial_credits":1,"parent_id":"bob","files":{"main.py":"` + pad(2*limit) + `"}}`
	bigSpawn := `{"initial_credits":1,"files":{"main.py":"` + pad(spawnLimit) + `"}}`
	return []badCase{
		{"transfer with length", req{Method: "POST", Path: "/economic/transfer", Token: w.alice, Body: bigTransfer},
			http.StatusRequestEntityTooLarge, []string{"1048576"}},
		{"transfer chunked", req{Method: "POST", Path: "/economic/transfer", Token: w.alice, Body: bigTransfer, Chunked: true},
			http.StatusRequestEntityTooLarge, []string{"1048576"}},
		{"bid", req{Method: "POST", Path: "/market/bid", Token: w.alice, Body: bigTransfer},
			http.StatusRequestEntityTooLarge, []string{"1048576"}},
		// 2 MiB is over the default limit but within spawn's own: it is
		// refused for what it says, not for its size.
		{"spawn between the limits", req{Method: "POST", Path: "/social/spawn", Token: w.alice, Body: between},
			http.StatusForbidden, []string{"parent_id"}},
		{"spawn with length", req{Method: "POST", Path: "/social/spawn", Token: w.alice, Body: bigSpawn},
			http.StatusRequestEntityTooLarge, []string{"8388608"}},
		{"spawn chunked", req{Method: "POST", Path: "/social/spawn", Token: w.alice, Body: bigSpawn, Chunked: true},
			http.StatusRequestEntityTooLarge, []string{"8388608"}},
	}
}

func impersonationCases(w *badInputWorld) []badCase {
	post := func(path, body string) req { return req{Method: "POST", Path: path, Token: w.alice, Body: body} }
	return []badCase{
		{"transfer from_id", post("/economic/transfer", `{"from_id":"bob","to_id":"genesis","amount":1}`),
			http.StatusForbidden, []string{"from_id", `"bob"`, `"alice"`}},
		{"transfer from_id unknown", post("/economic/transfer", `{"from_id":"nobody","to_id":"bob","amount":1}`),
			http.StatusForbidden, []string{"from_id", `"nobody"`}},
		{"bid agent_id", post("/market/bid", `{"agent_id":"bob","amount":2,"bundle":`+testBundleJSON+`}`),
			http.StatusForbidden, []string{"agent_id", `"bob"`, "for_agent"}},
		{"spawn parent_id", post("/social/spawn", `{"parent_id":"bob","initial_credits":1}`),
			http.StatusForbidden, []string{"parent_id", `"bob"`}},
		{"message from_id", post("/social/message", `{"from_id":"bob","to_id":"genesis","content":"I am bob"}`),
			http.StatusForbidden, []string{"from_id", `"bob"`}},
	}
}

// fieldCases are other field-level refusals, each naming its field.
func fieldCases(w *badInputWorld) []badCase {
	post := func(path, body string) req { return req{Method: "POST", Path: path, Token: w.alice, Body: body} }
	return []badCase{
		{"transfer without to_id", post("/economic/transfer", `{"amount":1}`), http.StatusUnprocessableEntity, []string{"to_id", "required"}},
		{"transfer to self", post("/economic/transfer", `{"to_id":"alice","amount":1}`), http.StatusUnprocessableEntity, []string{"to_id", "yourself"}},
		{"transfer memo too long", post("/economic/transfer", `{"to_id":"bob","amount":1,"memo":"`+strings.Repeat("m", economy.MaxMemoBytes+1)+`"}`),
			http.StatusUnprocessableEntity, []string{"memo", "1024"}},
		{"bid without bundle", post("/market/bid", `{"amount":2}`), http.StatusUnprocessableEntity, []string{"bundle.cpu"}},
		{"bid bundle cpu too precise", post("/market/bid", `{"amount":2,"bundle":{"cpu":0.0001,"memory_mb":16,"duration_seconds":600}}`),
			http.StatusUnprocessableEntity, []string{"cpu"}},
		{"bid bundle unknown field", post("/market/bid", `{"amount":2,"bundle":{"cpu":0.1,"memory_mb":16,"duration_seconds":600,"gpu":1}}`),
			http.StatusUnprocessableEntity, []string{"gpu"}},
		{"bid bundle too long", post("/market/bid", `{"amount":2,"bundle":{"cpu":0.1,"memory_mb":16,"duration_seconds":3601}}`),
			http.StatusUnprocessableEntity, []string{"bundle.duration_seconds", "3600", "3601"}},
		{"bid bundle over capacity", post("/market/bid", `{"amount":2,"bundle":{"cpu":65,"memory_mb":16,"duration_seconds":60}}`),
			http.StatusUnprocessableEntity, []string{"bundle.cpu", "capacity"}},
		{"message without content", post("/social/message", `{"to_id":"bob"}`), http.StatusUnprocessableEntity, []string{"content", "required"}},
		{"message too long", post("/social/message", `{"to_id":"bob","content":"`+strings.Repeat("c", 4097)+`"}`),
			http.StatusUnprocessableEntity, []string{"content", "4097", "4096"}},
		{"spawn file outside the workspace", post("/social/spawn", `{"initial_credits":1,"files":{"../evil.py":"x"}}`),
			http.StatusUnprocessableEntity, []string{"files", "../evil.py", ".."}},
		{"spawn absolute file", post("/social/spawn", `{"initial_credits":1,"files":{"/etc/passwd":"x"}}`),
			http.StatusUnprocessableEntity, []string{"files", "/etc/passwd", "absolute"}},
		{"spawn env.json", post("/social/spawn", `{"initial_credits":1,"files":{"env.json":"{}"}}`),
			http.StatusUnprocessableEntity, []string{"files", "env.json"}},
		{"spawn bid with an unknown field", post("/social/spawn", `{"initial_credits":5,"bid":{"amount":1,"bundle":`+
			testBundleJSON+`,"for_agent":"bob"}}`), http.StatusUnprocessableEntity, []string{"bid", `unknown field "for_agent"`}},
		{"several faults, first by name", post("/economic/transfer", `{"zzz":1,"to_id":5,"aaa":2}`),
			http.StatusUnprocessableEntity, []string{`unknown field "aaa"`}},
		{"spawn copy_workspace not a boolean", post("/social/spawn", `{"initial_credits":1,"copy_workspace":"yes"}`),
			http.StatusUnprocessableEntity, []string{"copy_workspace"}},
		{"bids status", req{Method: "GET", Path: "/market/bids?status=open", Token: w.alice},
			http.StatusUnprocessableEntity, []string{"status", `"open"`}},
		{"history limit", req{Method: "GET", Path: "/economic/history?limit=-1", Token: w.alice},
			http.StatusUnprocessableEntity, []string{"limit", "-1"}},
		{"idempotency key with a space", req{Method: "POST", Path: "/economic/transfer", Token: w.alice,
			Body: `{"to_id":"bob","amount":1}`, IdemKey: "a b"}, http.StatusUnprocessableEntity, []string{"Idempotency-Key"}},
		{"idempotency key too long", req{Method: "POST", Path: "/economic/transfer", Token: w.alice,
			Body: `{"to_id":"bob","amount":1}`, IdemKey: strings.Repeat("k", 256)}, http.StatusUnprocessableEntity,
			[]string{"Idempotency-Key", "255"}},
	}
}
