package api_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bpagents/bpagents/internal/api"
)

// TestOpenAPI checks the document served at /openapi.json against the route
// table it is generated from.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	r := h.get(t, "/openapi.json", "")
	doc := ok[map[string]any](t, r, http.StatusOK)

	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi %v", doc["openapi"])
	}
	paths := obj(t, doc, "paths")
	schemas := obj(t, obj(t, doc, "components"), "schemas")
	security := obj(t, obj(t, doc, "components"), "securitySchemes")

	t.Run("every route", func(t *testing.T) {
		opIDs := map[string]string{}
		documented := 0
		for _, item := range paths {
			documented += len(item.(map[string]any))
		}
		if documented != len(h.api.Routes()) {
			t.Errorf("the document has %d operations, the route table %d routes", documented, len(h.api.Routes()))
		}
		for _, rt := range h.api.Routes() {
			name := rt.Method + " " + rt.Path
			item, found := paths[rt.Path].(map[string]any)
			if !found {
				t.Errorf("%s: path missing", name)
				continue
			}
			op, found := item[strings.ToLower(rt.Method)].(map[string]any)
			if !found {
				t.Errorf("%s: method missing", name)
				continue
			}
			id, _ := op["operationId"].(string)
			if id == "" || opIDs[id] != "" {
				t.Errorf("%s: operationId %q missing or also used by %s", name, id, opIDs[id])
			}
			opIDs[id] = name
			if s, _ := op["summary"].(string); s != rt.Summary || s == "" {
				t.Errorf("%s: summary %q, want %q", name, s, rt.Summary)
			}
			responses, _ := op["responses"].(map[string]any)
			status := rt.Status
			if status == 0 {
				status = http.StatusOK
			}
			if _, found := responses[strconv.Itoa(status)]; !found {
				t.Errorf("%s: no %d response in %v", name, status, responses)
			}
			if _, found := responses["default"]; !found {
				t.Errorf("%s: no default (problem) response", name)
			}
			// Path parameters are declared.
			params, _ := op["parameters"].([]any)
			for _, m := range regexp.MustCompile(`\{([a-z_]+)\}`).FindAllStringSubmatch(rt.Path, -1) {
				if !hasParam(params, m[1], "path") {
					t.Errorf("%s: path parameter %s not declared", name, m[1])
				}
			}
			for _, q := range rt.Query {
				if !hasParam(params, q.Name, "query") {
					t.Errorf("%s: query parameter %s not declared", name, q.Name)
				}
			}
			if rt.Idempotent && !hasParam(params, "Idempotency-Key", "header") {
				t.Errorf("%s: Idempotency-Key header not declared", name)
			}
			// Security matches who may call.
			sec, _ := op["security"].([]any)
			switch rt.Auth {
			case api.Public:
				if len(sec) != 0 {
					t.Errorf("%s: public route with security %v", name, sec)
				}
			case api.Agent, api.Operator:
				scheme := map[api.Auth]string{api.Agent: "executionToken", api.Operator: "operatorToken"}[rt.Auth]
				if len(sec) != 1 || sec[0].(map[string]any)[scheme] == nil || security[scheme] == nil {
					t.Errorf("%s: security %v, want %s", name, sec, scheme)
				}
			}
			// Bodies: a request schema exactly where the handler takes one.
			body, hasBody := op["requestBody"].(map[string]any)
			if (rt.Request != nil) != hasBody {
				t.Errorf("%s: requestBody present=%v, handler takes a body=%v", name, hasBody, rt.Request != nil)
			}
			if hasBody {
				schema := jsonSchemaOf(t, body)
				if ref, _ := schema["$ref"].(string); ref != "#/components/schemas/"+rt.Request.Name() {
					t.Errorf("%s: request schema %v, want a $ref to %s", name, schema, rt.Request.Name())
				}
			}
		}
	})

	t.Run("POST routes with bodies", func(t *testing.T) {
		for _, path := range []string{"/economic/transfer", "/market/bid", "/social/message", "/social/spawn",
			"/admin/mint", "/admin/agents"} {
			op := obj(t, obj(t, paths, path), "post")
			if _, found := op["requestBody"]; !found {
				t.Errorf("POST %s: no request schema", path)
			}
		}
	})

	t.Run("every $ref resolves", func(t *testing.T) {
		var refs []string
		collectRefs(doc, &refs)
		if len(refs) == 0 {
			t.Fatal("no $ref in the document")
		}
		for _, ref := range refs {
			name, found := strings.CutPrefix(ref, "#/components/schemas/")
			if !found {
				t.Errorf("$ref %q does not point into components/schemas", ref)
				continue
			}
			s, found := schemas[name].(map[string]any)
			if !found || len(s) == 0 {
				t.Errorf("$ref %q does not resolve", ref)
			}
		}
	})

	t.Run("schemas come from the handler types", func(t *testing.T) {
		tr := obj(t, schemas, "TransferRequest")
		props := obj(t, tr, "properties")
		for _, p := range []string{"to_id", "amount", "memo", "from_id"} {
			if _, found := props[p]; !found {
				t.Errorf("TransferRequest lacks property %s: %v", p, props)
			}
		}
		if len(props) != 4 {
			t.Errorf("TransferRequest has %d properties, the Go type 4: %v", len(props), props)
		}
		if typ := obj(t, props, "amount")["type"]; typ != "number" {
			t.Errorf("amount has type %v, want number", typ)
		}
		req := strSlice(tr["required"])
		if !slices.Equal(req, []string{"amount", "to_id"}) {
			t.Errorf("TransferRequest requires %v, want [amount to_id]", req)
		}
		bid := obj(t, obj(t, schemas, "BidRequest"), "properties")
		if ref := obj(t, bid, "bundle")["$ref"]; ref != "#/components/schemas/Bundle" {
			t.Errorf("BidRequest.bundle is %v", ref)
		}
		bundle := obj(t, obj(t, schemas, "Bundle"), "properties")
		for _, p := range []string{"cpu", "memory_mb", "duration_seconds", "tokens", "attention"} {
			if _, found := bundle[p]; !found {
				t.Errorf("Bundle lacks %s", p)
			}
		}
		bal := obj(t, obj(t, schemas, "BalanceView"), "properties")
		if len(bal) != 4 {
			t.Errorf("BalanceView %v, want agent_id, balance, held, status", bal)
		}
		problem := obj(t, schemas, "Problem")
		if !slices.Equal(strSlice(problem["required"]), []string{"type", "title", "status", "detail"}) {
			t.Errorf("Problem %v", problem)
		}
	})

	t.Run("stable", func(t *testing.T) {
		again := h.get(t, "/openapi.json", "")
		if string(again.Body) != string(r.Body) {
			t.Fatal("the document changed between two requests")
		}
		var v any
		if err := json.Unmarshal(h.api.OpenAPI(), &v); err != nil {
			t.Fatal(err)
		}
	})
}

func obj(t *testing.T, m map[string]any, key string) map[string]any {
	t.Helper()
	v, found := m[key].(map[string]any)
	if !found {
		t.Fatalf("%q is not an object in %v", key, m)
	}
	return v
}

func strSlice(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, s := range list {
		str, _ := s.(string)
		out = append(out, str)
	}
	return out
}

func hasParam(params []any, name, in string) bool {
	for _, p := range params {
		m, _ := p.(map[string]any)
		if m["name"] == name && m["in"] == in {
			return true
		}
	}
	return false
}

func jsonSchemaOf(t *testing.T, body map[string]any) map[string]any {
	t.Helper()
	return obj(t, obj(t, obj(t, body, "content"), "application/json"), "schema")
}

func collectRefs(v any, refs *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, isString := x.(string); k == "$ref" && isString {
				*refs = append(*refs, s)
				continue
			}
			collectRefs(x, refs)
		}
	case []any:
		for _, x := range v {
			collectRefs(x, refs)
		}
	}
}
