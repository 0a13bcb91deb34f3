package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/logctx"
	"github.com/bpagents/bpagents/internal/store"
)

// Problem is an RFC 9457 problem document. Extra members are flattened into
// the top level.
type Problem struct {
	Type   string         `json:"type"`
	Title  string         `json:"title"`
	Status int            `json:"status"`
	Detail string         `json:"detail"`
	Extra  map[string]any `json:"-"`
}

// MarshalJSON flattens Extra beside the standard members.
func (p Problem) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	for k, v := range p.Extra {
		m[k] = v
	}
	m["type"], m["title"], m["status"], m["detail"] = p.Type, p.Title, p.Status, p.Detail
	return json.Marshal(m)
}

// problem codes used by the HTTP layer itself.
const (
	codeMalformed        economy.Code = "malformed-request"
	codeTooLarge         economy.Code = "body-too-large"
	codeMediaType        economy.Code = "unsupported-media-type"
	codeInternal         economy.Code = "internal"
	codeMethodMissing    economy.Code = "not-found"
	codeMethodNotAllowed economy.Code = "method-not-allowed"
)

// statusOf maps every error code to its HTTP status: the one place where
// domain refusals become HTTP.
func statusOf(c economy.Code) int {
	switch c {
	case economy.CodeInvalid, economy.CodeBelowReserve, economy.CodeIdempotencyReuse:
		return http.StatusUnprocessableEntity
	case codeMalformed:
		return http.StatusBadRequest
	case economy.CodeNotFound:
		return http.StatusNotFound
	case economy.CodeUnauthorized:
		return http.StatusUnauthorized
	case economy.CodeForbidden:
		return http.StatusForbidden
	case economy.CodeConflict:
		return http.StatusConflict
	case economy.CodeInsufficientFunds:
		return http.StatusPaymentRequired
	case economy.CodeLimit:
		return http.StatusTooManyRequests
	case economy.CodeUnavailable:
		return http.StatusServiceUnavailable
	case economy.CodeUpstream:
		return http.StatusBadGateway
	case economy.CodeUpstreamTimeout:
		return http.StatusGatewayTimeout
	case codeTooLarge:
		return http.StatusRequestEntityTooLarge
	case codeMediaType:
		return http.StatusUnsupportedMediaType
	case codeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	}
	return http.StatusInternalServerError
}

// problemOf converts any error into a problem document; unexpected errors are
// logged and reported without internals.
func problemOf(err error, log *slog.Logger, r *http.Request) Problem {
	e, ok := economy.AsError(err)
	if !ok && errors.Is(err, store.ErrNotFound) {
		e, ok = &economy.Error{Code: economy.CodeNotFound, Detail: err.Error()}, true
	}
	if !ok {
		logctx.From(r.Context(), log).Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		e = &economy.Error{Code: codeInternal, Detail: "internal error; the operator's log has the cause"}
	}
	status := statusOf(e.Code)
	return Problem{Type: "urn:bpagents:problem:" + string(e.Code), Title: http.StatusText(status), Status: status,
		Detail: e.Detail, Extra: e.Extra}
}

func writeProblem(w http.ResponseWriter, p Problem) {
	body, _ := json.Marshal(p)
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	w.Write(append(body, '\n'))
}

func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	writeProblem(w, problemOf(err, log, r))
}

func refuse(code economy.Code, format string, args ...any) error {
	return &economy.Error{Code: code, Detail: sprintf(format, args...)}
}
