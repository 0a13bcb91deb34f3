package api

import (
	"context"
	"net/http"
	"reflect"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/intelligence"
)

// inferenceRoutes are the metered model endpoints: the OpenAI-shaped chat
// completions path and its alias, and the public list of models.
func (s *Server) inferenceRoutes() []Route {
	chat := func(path, summary string) Route {
		rt := Route{Method: "POST", Path: path, Auth: Agent, Status: http.StatusOK, Summary: summary,
			Request: reflect.TypeOf(intelligence.ChatRequest{}), Response: reflect.TypeOf(intelligence.ChatResponse{})}
		rt.serve = func(s *Server, w http.ResponseWriter, r *http.Request) {
			who, err := s.authenticate(r, Agent)
			if err != nil {
				writeError(w, r, s.log, err)
				return
			}
			p := s.opt.Intelligence
			if p == nil {
				writeError(w, r, s.log, refuse(economy.CodeUnavailable, "this server has no model proxy"))
				return
			}
			raw, err := readBody(w, r, p.MaxRequestBytes())
			if err != nil {
				writeError(w, r, s.log, err)
				return
			}
			if err := p.Forward(r.Context(), w, raw, who); err != nil {
				writeError(w, r, s.log, err)
			}
		}
		return rt
	}
	return []Route{
		chat("/v1/chat/completions", "Chat completion through the metered model proxy (OpenAI-compatible; "+
			"stream: true streams server-sent events); counts against the execution's tokens"),
		chat("/intelligence/inference", "Alias of /v1/chat/completions"),
		handle(Route{Method: "GET", Path: "/intelligence/models", Auth: Public,
			Summary: "Whether a model upstream is configured, the models agents may use, and the price per token"}, s.models),
	}
}

func (s *Server) models(ctx context.Context, c *Call[NoBody]) (intelligence.ModelsView, error) {
	if s.opt.Intelligence == nil {
		return intelligence.ModelsView{Models: []string{}}, nil
	}
	return s.opt.Intelligence.Models(), nil
}
