package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/bpagents/bpagents/internal/economy"
)

// Auth says who may call a route.
type Auth int

const (
	Public   Auth = iota // anyone, no token
	Agent                // an agent, with its execution token
	Operator             // the operator, with the operator token
)

func (a Auth) String() string {
	return [...]string{"public", "agent", "operator"}[a]
}

// Param documents a query parameter.
type Param struct {
	Name string
	Type string // "string" or "integer"
	Doc  string
}

// Route is one entry of the route table. The OpenAPI document is generated
// from these entries and the Go types they carry.
type Route struct {
	Method  string
	Path    string
	Auth    Auth
	Summary string
	Query   []Param
	// Status is the success status (200 unless set).
	Status int
	// Idempotent routes honour the Idempotency-Key header.
	Idempotent bool
	// MaxBody overrides the server's default body limit.
	MaxBody int64
	// ContentType is the success answer's media type (application/json
	// unless set; raw routes such as the event stream set it).
	ContentType string
	Request     reflect.Type // nil when the route takes no body
	Response    reflect.Type
	serve       func(s *Server, w http.ResponseWriter, r *http.Request)
}

// Call is what a handler receives: the request, the caller, the decoded body.
type Call[Req any] struct {
	R    *http.Request
	Who  economy.Principal
	Body Req
	Idem *economy.Idem
}

// Query returns a query parameter.
func (c *Call[Req]) Query(name string) string { return c.R.URL.Query().Get(name) }

// IntQuery parses an integer query parameter; absent means def.
func (c *Call[Req]) IntQuery(name string, def int64) (int64, error) {
	v := c.R.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, refuse(economy.CodeInvalid, "query parameter %s: %q is not a non-negative integer", name, v)
	}
	return n, nil
}

// NoBody marks a route without a request body.
type NoBody struct{}

// handle builds a route from a typed handler: authenticate → limit and decode
// the body → idempotency key → domain call → encode.
func handle[Req, Resp any](rt Route, fn func(ctx context.Context, c *Call[Req]) (Resp, error)) Route {
	var req Req
	if _, none := any(req).(NoBody); !none {
		rt.Request = reflect.TypeOf(req)
	}
	rt.Response = reflect.TypeOf((*Resp)(nil)).Elem()
	if rt.Status == 0 {
		rt.Status = http.StatusOK
	}
	rt.serve = func(s *Server, w http.ResponseWriter, r *http.Request) {
		who, err := s.authenticate(r, rt.Auth)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		c := &Call[Req]{R: r, Who: who}
		if rt.Request != nil {
			limit := rt.MaxBody
			if limit == 0 {
				limit = s.maxBody
			}
			raw, err := readBody(w, r, limit)
			if err != nil {
				writeError(w, r, s.log, err)
				return
			}
			if err := decodeStrict(raw, &c.Body); err != nil {
				writeError(w, r, s.log, err)
				return
			}
			if rt.Idempotent {
				if c.Idem, err = idemOf(r, who, raw); err != nil {
					writeError(w, r, s.log, err)
					return
				}
			}
		} else if rt.Idempotent {
			if c.Idem, err = idemOf(r, who, nil); err != nil {
				writeError(w, r, s.log, err)
				return
			}
		}
		resp, err := fn(r.Context(), c)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		writeJSON(w, rt.Status, resp)
	}
	return rt
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// readBody reads at most limit bytes and checks the media type.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, refuse(codeMediaType, "Content-Type %q is not supported: send application/json", ct)
		}
	}
	if r.ContentLength > limit {
		return nil, refuse(codeTooLarge, "request body is %d bytes, the limit is %d", r.ContentLength, limit)
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, refuse(codeTooLarge, "request body exceeds the limit of %d bytes", limit)
	}
	if err != nil {
		return nil, refuse(codeMalformed, "reading request body: %v", err)
	}
	return raw, nil
}

// decodeStrict decodes a JSON object into v, a struct: unknown fields,
// trailing data and non-objects are refused, and every error names the
// field it concerns.
func decodeStrict(raw []byte, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return refuse(codeMalformed, "request body is empty: send a JSON object")
	}
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&fields); err != nil {
		return malformed(err)
	}
	// raw is trimmed, so anything after the first value is trailing data.
	// (Decoder.More would let a stray ']' or '}' through.)
	if dec.InputOffset() != int64(len(raw)) {
		return refuse(codeMalformed, "malformed JSON: unexpected data after the object at byte %d", dec.InputOffset())
	}
	if fields == nil {
		return refuse(codeMalformed, "malformed JSON: the body must be a JSON object, not null")
	}
	rv := reflect.ValueOf(v).Elem()
	byName := jsonFields(rv.Type())
	// In name order, so that a body with several faults always gets the same answer.
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		val := fields[name]
		idx, ok := byName[name]
		if !ok {
			return refuse(economy.CodeInvalid, "unknown field %q (known: %s)", name, strings.Join(fieldNames(rv.Type()), ", "))
		}
		fv := rv.FieldByIndex(idx)
		// Nested objects (a spawn's bid) are strict too.
		fd := json.NewDecoder(bytes.NewReader(val))
		fd.DisallowUnknownFields()
		if err := fd.Decode(fv.Addr().Interface()); err != nil {
			return refuse(economy.CodeInvalid, "%s: %s", name, describe(err))
		}
	}
	return nil
}

func malformed(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return refuse(codeMalformed, "malformed JSON at byte %d: %v", se.Offset, err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return refuse(codeMalformed, "malformed request: the body must be a JSON object, got %s", te.Value)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return refuse(codeMalformed, "malformed JSON: unexpected end of input")
	}
	return refuse(codeMalformed, "malformed JSON: %v", err)
}

func describe(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("expected %s, got %s", te.Type, te.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// jsonFields maps JSON names to struct field indexes.
func jsonFields(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Index
	}
	return out
}

func fieldNames(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if f.IsExported() && name != "-" && name != "" {
			out = append(out, name)
		}
	}
	return out
}

// maxIdemKey bounds the Idempotency-Key header.
const maxIdemKey = 255

func idemOf(r *http.Request, who economy.Principal, body []byte) (*economy.Idem, error) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		return nil, nil
	}
	if len(key) > maxIdemKey {
		return nil, refuse(economy.CodeInvalid, "Idempotency-Key is longer than %d characters", maxIdemKey)
	}
	for _, c := range key {
		if c < 0x21 || c > 0x7e {
			return nil, refuse(economy.CodeInvalid, "Idempotency-Key must be printable ASCII without spaces")
		}
	}
	h := sha256.New()
	h.Write([]byte(r.Method + " " + r.URL.Path + "\n"))
	h.Write(body)
	principal := "operator"
	if !who.Operator {
		principal = "agent:" + who.AgentID
	}
	return &economy.Idem{Principal: principal, Key: key, Hash: hex.EncodeToString(h.Sum(nil))}, nil
}

// authenticate checks the bearer token against what the route requires.
func (s *Server) authenticate(r *http.Request, need Auth) (economy.Principal, error) {
	if need == Public {
		return economy.Principal{}, nil
	}
	if need == Operator && r.Header.Get("Authorization") == "" && s.opt.Session != nil &&
		(r.Method == http.MethodGet || r.Method == http.MethodHead) && s.opt.Session(r) {
		// The dashboard's session reads operator data; it never changes anything here.
		return economy.Principal{Operator: true}, nil
	}
	// The scheme is case-insensitive (RFC 9110 §11.1).
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return economy.Principal{}, refuse(economy.CodeUnauthorized,
			"missing bearer token: send Authorization: Bearer <token> (%s)", map[Auth]string{
				Agent: "the execution token from env.json or $AGENT_TOKEN", Operator: "the operator token"}[need])
	}
	isOperator := subtle.ConstantTimeCompare([]byte(token), []byte(s.operatorToken)) == 1
	switch need {
	case Operator:
		if !isOperator {
			return economy.Principal{}, refuse(economy.CodeForbidden, "this endpoint needs the operator token")
		}
		return economy.Principal{Operator: true}, nil
	default:
		if isOperator {
			return economy.Principal{}, refuse(economy.CodeForbidden,
				"this endpoint acts as an agent: call it with an execution token, not the operator token")
		}
		return s.eco.Authenticate(r.Context(), token)
	}
}
