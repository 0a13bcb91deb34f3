// Package logctx carries a request-scoped *slog.Logger in a context, so that
// every line logged while a request is handled names its request id without
// each caller having to remember it.
//
// It owns nothing but that association: it never creates the process logger,
// never chooses a format, and never logs by itself.
package logctx

import (
	"context"
	"log/slog"
)

type key struct{}

// With returns a context carrying log.
func With(ctx context.Context, log *slog.Logger) context.Context {
	return context.WithValue(ctx, key{}, log)
}

// From returns the logger carried by ctx, or fallback when there is none.
func From(ctx context.Context, fallback *slog.Logger) *slog.Logger {
	if l, ok := ctx.Value(key{}).(*slog.Logger); ok && l != nil {
		return l
	}
	return fallback
}
