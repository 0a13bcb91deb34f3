package api

// Human attention (SPEC §9): agents holding attention submit prompts; the
// operator reads the queue, rates prompts (which mints credits) and reads the
// messages agents sent to "human". The routes are in routeTable.

import (
	"context"

	"github.com/bpagents/bpagents/internal/economy"
)

func (s *Server) submitPrompt(ctx context.Context, c *Call[economy.PromptRequest]) (economy.PromptView, error) {
	return s.eco.SubmitPrompt(ctx, c.Who, c.Body, c.Idem)
}

// PromptList is a list of prompts.
type PromptList struct {
	Prompts []economy.PromptView `json:"prompts"`
}

func (s *Server) listPrompts(ctx context.Context, c *Call[NoBody]) (PromptList, error) {
	limit, err := c.IntQuery("limit", 100)
	if err != nil {
		return PromptList{}, err
	}
	list, err := s.eco.Prompts(ctx, c.Query("status"), c.Query("agent"), clampLimit(limit))
	if e, ok := economy.AsError(err); ok && e.Code == economy.CodeInvalid {
		return PromptList{}, refuse(economy.CodeInvalid, "query parameter %s", e.Detail)
	}
	return PromptList{Prompts: list}, err
}

func (s *Server) getPrompt(ctx context.Context, c *Call[NoBody]) (economy.PromptView, error) {
	return s.eco.Prompt(ctx, c.R.PathValue("id"))
}

func (s *Server) ratePrompt(ctx context.Context, c *Call[economy.RatingRequest]) (economy.RatingResult, error) {
	return s.eco.RatePrompt(ctx, c.Body, c.Idem)
}

func (s *Server) humanMessages(ctx context.Context, c *Call[NoBody]) (economy.MessagePage, error) {
	before, err := c.IntQuery("before", 0)
	if err != nil {
		return economy.MessagePage{}, err
	}
	limit, err := c.IntQuery("limit", 100)
	if err != nil {
		return economy.MessagePage{}, err
	}
	return s.eco.HumanMessages(ctx, before, clampLimit(limit))
}
