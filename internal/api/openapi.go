package api

import (
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
)

// special types whose JSON form is not what reflection would say.
var (
	microType   = reflect.TypeOf(money.Micro(0))
	bundleType  = reflect.TypeOf(market.Bundle{})
	rawType     = reflect.TypeOf(json.RawMessage(nil))
	timeType    = reflect.TypeOf(time.Time{})
	pathParamRe = regexp.MustCompile(`\{([a-z_]+)\}`)
)

// schemaGen turns Go types into JSON Schema (OpenAPI 3.1 dialect), naming
// struct types as components.
type schemaGen struct {
	components map[string]any
}

func (g *schemaGen) schema(t reflect.Type) map[string]any {
	switch t {
	case microType:
		return map[string]any{"type": "number", "description": "credits: a decimal number with at most 6 decimals",
			"examples": []any{12.5}}
	case bundleType:
		return g.ref("Bundle", func() map[string]any {
			return map[string]any{
				"type": "object", "additionalProperties": false,
				"required": []string{"cpu", "memory_mb", "duration_seconds"},
				"properties": map[string]any{
					"cpu":              map[string]any{"type": "number", "description": "cores, at most 3 decimals", "exclusiveMinimum": 0},
					"memory_mb":        map[string]any{"type": "integer", "minimum": 1},
					"duration_seconds": map[string]any{"type": "integer", "minimum": 1},
					"tokens":           map[string]any{"type": "integer", "minimum": 0},
					"attention":        map[string]any{"type": "integer", "minimum": 0, "maximum": 1},
				},
			}
		})
	case rawType:
		return map[string]any{"description": "any JSON value"}
	case timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.schema(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Struct:
		return g.ref(t.Name(), func() map[string]any { return g.object(t) })
	case reflect.Interface:
		return map[string]any{}
	}
	panic(fmt.Sprintf("openapi: no schema for %s", t))
}

func (g *schemaGen) ref(name string, build func() map[string]any) map[string]any {
	if _, ok := g.components[name]; !ok {
		g.components[name] = map[string]any{} // placeholder against recursion
		g.components[name] = build()
	}
	return map[string]any{"$ref": "#/components/schemas/" + name}
}

func (g *schemaGen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = g.schema(f.Type)
		if !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer {
			required = append(required, name)
		}
	}
	sort.Strings(required)
	out := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		out["required"] = required
	}
	return out
}

// OpenAPI returns the OpenAPI 3.1 document generated from the route table.
func (s *Server) OpenAPI() []byte {
	s.openapiOnce.Do(func() {
		doc, err := json.MarshalIndent(s.buildOpenAPI(), "", "  ")
		if err != nil {
			panic(err)
		}
		s.openapi = doc
	})
	return s.openapi
}

func (s *Server) buildOpenAPI() map[string]any {
	g := &schemaGen{components: map[string]any{}}
	g.components["Problem"] = map[string]any{
		"type": "object", "description": "RFC 9457 problem details; extra members carry figures",
		"required": []string{"type", "title", "status", "detail"},
		"properties": map[string]any{"type": map[string]any{"type": "string"}, "title": map[string]any{"type": "string"},
			"status": map[string]any{"type": "integer"}, "detail": map[string]any{"type": "string"}},
	}
	paths := map[string]any{}
	for _, rt := range s.routes {
		item, _ := paths[rt.Path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[rt.Path] = item
		}
		item[strings.ToLower(rt.Method)] = s.operation(g, rt)
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": "bpagents API", "version": "1",
			"description": "The agent economy's API. Agents authenticate with the execution token from env.json " +
				"(Authorization: Bearer …); operators with the operator token. Errors are application/problem+json."},
		"paths": paths,
		"components": map[string]any{
			"schemas": g.components,
			"securitySchemes": map[string]any{
				"executionToken": map[string]any{"type": "http", "scheme": "bearer", "description": "valid only while its execution runs"},
				"operatorToken":  map[string]any{"type": "http", "scheme": "bearer", "description": "from <home>/data/operator.token"},
			},
		},
	}
}

func (s *Server) operation(g *schemaGen, rt Route) map[string]any {
	op := map[string]any{
		"summary":     rt.Summary,
		"operationId": operationID(rt),
		"tags":        []string{strings.Split(strings.TrimPrefix(rt.Path, "/"), "/")[0]},
	}
	var params []any
	for _, m := range pathParamRe.FindAllStringSubmatch(rt.Path, -1) {
		params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
	}
	for _, q := range rt.Query {
		params = append(params, map[string]any{"name": q.Name, "in": "query", "description": q.Doc, "schema": map[string]any{"type": q.Type}})
	}
	if rt.Idempotent {
		params = append(params, map[string]any{"name": "Idempotency-Key", "in": "header",
			"description": "retrying with the same key returns the first result and moves no money twice",
			"schema":      map[string]any{"type": "string", "maxLength": maxIdemKey}})
	}
	if len(params) > 0 {
		op["parameters"] = params
	}
	switch rt.Auth {
	case Agent:
		op["security"] = []any{map[string]any{"executionToken": []string{}}}
	case Operator:
		op["security"] = []any{map[string]any{"operatorToken": []string{}}}
	}
	if rt.Request != nil {
		op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
			"application/json": map[string]any{"schema": g.schema(rt.Request)}}}
	}
	problem := map[string]any{"content": map[string]any{"application/problem+json": map[string]any{
		"schema": map[string]any{"$ref": "#/components/schemas/Problem"}}}}
	ct := rt.ContentType
	if ct == "" {
		ct = "application/json"
	}
	responses := map[string]any{
		fmt.Sprint(rt.Status): map[string]any{"description": http.StatusText(rt.Status), "content": map[string]any{
			ct: map[string]any{"schema": g.schema(rt.Response)}}},
		"default": withDescription(problem, "an error, as problem+json"),
	}
	op["responses"] = responses
	return op
}

func withDescription(m map[string]any, d string) map[string]any {
	out := map[string]any{"description": d}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func operationID(rt Route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.Method))
	for _, part := range strings.Split(rt.Path, "/") {
		part = strings.Trim(part, "{}")
		for _, w := range strings.FieldsFunc(part, func(r rune) bool { return r == '_' || r == '.' || r == '-' }) {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	return b.String()
}

// DocsHandler serves a human-readable page generated from the route table.
func (s *Server) DocsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		b.WriteString(`<!doctype html><html><head><meta charset="utf-8"><title>bpagents API</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
td,th{padding:.3rem .6rem;text-align:left;border-bottom:1px solid #ddd}code{font-size:.95em}</style></head><body>
<h1>bpagents API</h1><p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).
Agents send <code>Authorization: Bearer $AGENT_TOKEN</code>; errors are <code>application/problem+json</code>.
Money is a decimal number of credits with at most 6 decimals.</p><table><tr><th>method</th><th>path</th><th>who</th><th>does</th></tr>`)
		for _, rt := range s.routes {
			fmt.Fprintf(&b, "<tr><td><code>%s</code></td><td><code>%s</code></td><td>%s</td><td>%s</td></tr>",
				rt.Method, html.EscapeString(rt.Path), rt.Auth, html.EscapeString(rt.Summary))
		}
		b.WriteString("</table></body></html>")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(b.String()))
	})
}
