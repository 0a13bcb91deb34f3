package web

// The attention queue: prompts waiting for the operator, highest bid first,
// each with a form that rates it (three scores 0–10 and a reason) and so
// mints (Σ scores) × reward weight credits to its agent.

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

type queuedPrompt struct {
	economy.PromptView
	// Balance is the agent's available balance now, Status its status.
	Balance money.Micro
	Status  string
}

type attentionData struct {
	Queue  []queuedPrompt
	Rated  []economy.PromptView
	Weight money.Micro
	Max    int
}

func (d *Dashboard) attention(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	v := attentionData{Weight: d.eco.Settings().RewardWeight, Max: economy.MaxScore}
	queue, err := d.eco.Prompts(ctx, store.PromptPending, "", 100)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	for _, p := range queue {
		q := queuedPrompt{PromptView: p}
		if b, err := d.eco.Balance(ctx, p.AgentID); err == nil {
			q.Balance, q.Status = b.Balance, b.Status
		}
		v.Queue = append(v.Queue, q)
	}
	if v.Rated, err = d.eco.Prompts(ctx, store.PromptRated, "", 20); err != nil {
		d.failErr(w, r, err)
		return
	}
	d.render(w, r, "attention", "Attention queue", v)
}

func (d *Dashboard) rate(w http.ResponseWriter, r *http.Request, s *session) {
	const back = "/ui/attention"
	f := r.PostForm
	req := economy.RatingRequest{PromptID: strings.TrimSpace(f.Get("prompt_id")), Reason: strings.TrimSpace(f.Get("reason"))}
	for _, score := range []struct {
		name string
		dst  **int
	}{{"interesting", &req.Interesting}, {"useful", &req.Useful}, {"understandable", &req.Understandable}} {
		n, err := strconv.Atoi(strings.TrimSpace(f.Get(score.name)))
		if err != nil {
			d.sessions.setFlash(s, "error", "The "+score.name+" score must be a whole number from 0 to 10.")
			http.Redirect(w, r, back, http.StatusSeeOther)
			return
		}
		*score.dst = &n
	}
	// Sending the same rating twice (a double click, a reload) rates once.
	idem := &economy.Idem{Principal: "operator", Key: "web-rate:" + req.PromptID,
		Hash: hashOf(strings.Join([]string{req.PromptID, f.Get("interesting"), f.Get("useful"), f.Get("understandable"), req.Reason}, "\n"))}
	res, err := d.eco.RatePrompt(r.Context(), req, idem)
	if err != nil {
		if e, ok := economy.AsError(err); ok {
			d.sessions.setFlash(s, "error", "Rating refused: "+e.Detail)
			http.Redirect(w, r, back, http.StatusSeeOther)
			return
		}
		d.failErr(w, r, err)
		return
	}
	msg := "Rated " + res.Prompt.ID + " (" + strconv.Itoa(res.Points) + " points): minted " + res.Reward.String() +
		" credits to " + res.Prompt.AgentID + "."
	if res.Reward == 0 {
		msg = "Rated " + res.Prompt.ID + ": " + res.Detail
	}
	d.sessions.setFlash(s, "ok", msg)
	http.Redirect(w, r, back, http.StatusSeeOther)
}
