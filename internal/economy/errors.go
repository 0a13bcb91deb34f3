package economy

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Code classifies an economy error; the API maps each code to one HTTP status.
type Code string

const (
	CodeInvalid           Code = "invalid"            // the request itself is wrong
	CodeNotFound          Code = "not-found"          // it names something that does not exist
	CodeUnauthorized      Code = "unauthorized"       // no valid credentials
	CodeForbidden         Code = "forbidden"          // valid credentials, not allowed
	CodeConflict          Code = "conflict"           // the state does not allow it (dead agent, closed bid)
	CodeInsufficientFunds Code = "insufficient-funds" // the payer cannot cover it
	CodeLimit             Code = "limit"              // a configured limit is reached
	CodeBelowReserve      Code = "below-reserve"      // a bid under the posted reserve price
	CodeIdempotencyReuse  Code = "idempotency-key-reuse"
	CodeUnavailable       Code = "unavailable"      // a service the call needs is not configured
	CodeUpstream          Code = "upstream-error"   // an upstream service failed
	CodeUpstreamTimeout   Code = "upstream-timeout" // an upstream service did not answer in time
)

// Error is a refusal with a precise, agent-readable detail. Extra carries
// machine-readable figures (the reserve, the balance) for the problem document.
type Error struct {
	Code   Code
	Detail string
	Extra  map[string]any
	Err    error
}

func (e *Error) Error() string { return e.Detail }
func (e *Error) Unwrap() error { return e.Err }

func fail(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// invalid is a bad request naming the field.
func invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalid, Detail: field + ": " + fmt.Sprintf(format, args...), Extra: map[string]any{"field": field}}
}

// AsError returns err as an *Error when it is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// storableText reports whether s can be kept as text by every store backend:
// valid UTF-8 without NUL characters (PostgreSQL refuses NUL in text).
func storableText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}
