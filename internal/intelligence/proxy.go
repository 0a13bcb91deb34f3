// Package intelligence owns the metered path from agents to language models:
// an OpenAI-compatible chat completions endpoint that forwards an agent's
// request to the configured upstream, streams the answer back, and counts
// every token against the execution's allowance (the tokens its bundle won).
//
// It never shows the upstream key to agents or writes it to a log, never lets
// an execution start a call once its allowance is spent, and never moves money
// itself: usage and charges are recorded through the Meter (the economy), in
// one transaction with their audit event.
package intelligence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/logctx"
	"github.com/bpagents/bpagents/internal/money"
)

// Meter is the economy's side of metering.
type Meter interface {
	InferenceAllowance(ctx context.Context, who economy.Principal) (economy.Allowance, error)
	RecordInference(ctx context.Context, who economy.Principal, inf economy.Inference, price money.Micro) (economy.InferenceRecord, error)
}

// Config is the proxy's view of the configuration.
type Config struct {
	BaseURL         string
	Key             string // secret
	Models          []string
	CreditsPerToken money.Micro
	Timeout         time.Duration
	MaxRequestBytes int64
}

// Proxy forwards chat completions to the upstream and meters them.
type Proxy struct {
	cfg    Config
	meter  Meter
	log    *slog.Logger
	client *http.Client
}

// New returns a proxy. With an empty BaseURL every call answers 503.
func New(cfg Config, meter Meter, log *slog.Logger) *Proxy {
	if cfg.Timeout == 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = 1 << 20
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	return &Proxy{cfg: cfg, meter: meter, log: log, client: &http.Client{}}
}

// MaxRequestBytes bounds an agent's request body.
func (p *Proxy) MaxRequestBytes() int64 { return p.cfg.MaxRequestBytes }

// ModelsView says whether inference is available and on what terms.
type ModelsView struct {
	Configured      bool        `json:"configured"`
	Models          []string    `json:"models"`
	DefaultModel    string      `json:"default_model,omitempty"`
	CreditsPerToken money.Micro `json:"credits_per_token"`
}

// Models describes what agents may use.
func (p *Proxy) Models() ModelsView {
	v := ModelsView{Configured: p.cfg.BaseURL != "", Models: slices.Clone(p.cfg.Models),
		CreditsPerToken: p.cfg.CreditsPerToken}
	if v.Models == nil {
		v.Models = []string{}
	}
	if len(v.Models) > 0 {
		v.DefaultModel = v.Models[0]
	}
	return v
}

// ChatRequest documents the fields the proxy reads; every other field of
// the OpenAI chat completions request is passed through unchanged.
type ChatRequest struct {
	Model               string            `json:"model,omitempty"`
	Messages            []json.RawMessage `json:"messages"`
	Stream              bool              `json:"stream,omitempty"`
	MaxTokens           *int64            `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int64            `json:"max_completion_tokens,omitempty"`
}

// ChatResponse documents the upstream's answer, returned as the upstream
// sent it (a stream of chat.completion.chunk events when stream is true).
type ChatResponse struct {
	ID      string          `json:"id"`
	Model   string          `json:"model"`
	Choices json.RawMessage `json:"choices"`
	Usage   *Usage          `json:"usage,omitempty"`
}

// Usage is the upstream's token count.
type Usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

// call is one request on its way through the proxy.
type call struct {
	who          economy.Principal
	log          *slog.Logger // carries the request id
	body         map[string]json.RawMessage
	model        string
	stream       bool
	promptTokens int64 // estimated from the request
	promptChars  int
}

// Forward serves one chat completions request for who. It returns an error
// (to be written as a problem) only when nothing has been written to w yet.
func (p *Proxy) Forward(ctx context.Context, w http.ResponseWriter, raw []byte, who economy.Principal) error {
	if p.cfg.BaseURL == "" {
		return &economy.Error{Code: economy.CodeUnavailable,
			Detail: "no language model upstream is configured: the operator sets intelligence.base_url and intelligence.models"}
	}
	c, err := p.parse(raw, who)
	if err != nil {
		return err
	}
	c.log = logctx.From(ctx, p.log)
	if err := p.authorize(ctx, c); err != nil {
		return err
	}
	upstream, cancel, err := p.send(ctx, c)
	if err != nil {
		return err
	}
	defer cancel()
	defer upstream.Body.Close()
	if upstream.StatusCode != http.StatusOK {
		return p.upstreamFailed(c, upstream)
	}
	if c.stream {
		p.relayStream(ctx, w, c, upstream)
		return nil
	}
	return p.relay(w, c, upstream)
}

func (p *Proxy) parse(raw []byte, who economy.Principal) (*call, error) {
	c := &call{who: who}
	if err := json.Unmarshal(raw, &c.body); err != nil || c.body == nil {
		return nil, invalid("body", "must be a JSON object (an OpenAI chat completions request)")
	}
	var req ChatRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, invalid("body", "%v", err)
	}
	c.model = req.Model
	if c.model == "" && len(p.cfg.Models) > 0 {
		c.model = p.cfg.Models[0]
		c.body["model"], _ = json.Marshal(c.model)
	}
	if !slices.Contains(p.cfg.Models, c.model) {
		return nil, invalid("model", "%q is not allowed here (allowed: %s)", c.model, strings.Join(p.cfg.Models, ", "))
	}
	if len(req.Messages) == 0 {
		return nil, invalid("messages", "must hold at least one message")
	}
	for _, f := range []struct {
		name string
		v    *int64
	}{{"max_tokens", req.MaxTokens}, {"max_completion_tokens", req.MaxCompletionTokens}} {
		if f.v != nil && *f.v < 1 {
			return nil, invalid(f.name, "must be at least 1, got %d", *f.v)
		}
	}
	c.stream = req.Stream
	for _, m := range req.Messages {
		c.promptChars += len(m)
	}
	c.promptTokens = estimateTokens(c.promptChars)
	return c, nil
}

// authorize checks the allowance and the balance, and caps the completion
// so that the call cannot outrun what is left.
func (p *Proxy) authorize(ctx context.Context, c *call) error {
	a, err := p.meter.InferenceAllowance(ctx, c.who)
	if err != nil {
		return err
	}
	left := a.Remaining()
	if left <= 0 {
		return &economy.Error{Code: economy.CodeLimit,
			Detail: fmt.Sprintf("execution %s has used %d of its %d model tokens: bid for a bundle with more tokens", a.ExecutionID, a.Used, a.Tokens),
			Extra:  map[string]any{"tokens_used": a.Used, "allowance": a.Tokens}}
	}
	if c.promptTokens >= left {
		return &economy.Error{Code: economy.CodeLimit,
			Detail: fmt.Sprintf("the prompt alone is about %d tokens but execution %s has %d of its %d model tokens left (%d used)",
				c.promptTokens, a.ExecutionID, left, a.Tokens, a.Used),
			Extra: map[string]any{"tokens_used": a.Used, "allowance": a.Tokens}}
	}
	room := left - c.promptTokens
	for _, field := range []string{"max_tokens", "max_completion_tokens"} {
		var asked int64
		if v, ok := c.body[field]; ok && json.Unmarshal(v, &asked) == nil && asked < room {
			room = asked
		}
	}
	limit, _ := json.Marshal(room)
	if _, ok := c.body["max_completion_tokens"]; ok {
		c.body["max_completion_tokens"] = limit
	} else {
		c.body["max_tokens"] = limit
	}
	if price := p.cfg.CreditsPerToken; price > 0 {
		worst := price * money.Micro(c.promptTokens+room)
		if worst > a.Available {
			return &economy.Error{Code: economy.CodeInsufficientFunds,
				Detail: fmt.Sprintf("this call may cost up to %s credits (%d tokens at %s) but %s has %s available",
					worst, c.promptTokens+room, price, c.who.AgentID, a.Available),
				Extra: map[string]any{"need": worst, "available": a.Available}}
		}
	}
	if c.stream {
		c.body["stream_options"] = json.RawMessage(`{"include_usage":true}`)
	}
	return nil
}

func (p *Proxy) send(ctx context.Context, c *call) (*http.Response, context.CancelFunc, error) {
	body, err := json.Marshal(c.body)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.BaseURL+"/chat/completions", strings.NewReader(string(body)))
	if err != nil {
		cancel()
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	if p.cfg.Key != "" {
		req.Header.Set("Authorization", "Bearer "+p.cfg.Key)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		cancel()
		p.record(c, economy.Inference{Model: c.model, Stream: c.stream})
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, nil, &economy.Error{Code: economy.CodeUpstreamTimeout,
				Detail: fmt.Sprintf("the model upstream did not answer within %s", p.cfg.Timeout)}
		}
		return nil, nil, &economy.Error{Code: economy.CodeUpstream,
			Detail: "the model upstream could not be reached: " + redactURL(err.Error(), p.cfg.BaseURL)}
	}
	return resp, cancel, nil
}

// upstreamFailed turns an upstream error answer into a problem, keeping the
// upstream's own message (it may explain a bad request) but nothing else.
func (p *Proxy) upstreamFailed(c *call, resp *http.Response) error {
	var doc struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	raw := readLimited(resp.Body, 8<<10)
	msg := strings.TrimSpace(string(raw))
	if json.Unmarshal(raw, &doc) == nil && doc.Error.Message != "" {
		msg = doc.Error.Message
	}
	if len(msg) > 500 {
		msg = msg[:500] + "…"
	}
	p.record(c, economy.Inference{Model: c.model, Stream: c.stream, Status: resp.StatusCode})
	c.log.Warn("model upstream refused a call", "status", resp.StatusCode, "execution_id", c.who.ExecutionID)
	return &economy.Error{Code: economy.CodeUpstream,
		Detail: fmt.Sprintf("the model upstream answered %d: %s", resp.StatusCode, msg),
		Extra:  map[string]any{"upstream_status": resp.StatusCode}}
}

// relay returns a whole (non-streamed) answer and records its usage.
func (p *Proxy) relay(w http.ResponseWriter, c *call, resp *http.Response) error {
	raw := readLimited(resp.Body, 32<<20)
	var doc ChatResponse
	inf := economy.Inference{Model: c.model, Status: resp.StatusCode}
	if err := json.Unmarshal(raw, &doc); err == nil && doc.Usage != nil {
		inf.PromptTokens, inf.CompletionTokens = doc.Usage.PromptTokens, doc.Usage.CompletionTokens
	} else {
		inf.Estimated = true
		inf.PromptTokens, inf.CompletionTokens = c.promptTokens, estimateTokens(len(doc.Choices))
	}
	rec := p.record(c, inf)
	w.Header().Set("Content-Type", "application/json")
	setUsageHeaders(w, rec)
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(raw)
	if err != nil {
		c.log.Debug("agent went away before the answer was written", "execution_id", c.who.ExecutionID)
	}
	return nil
}

// record writes a call's usage; it uses its own context so that a call the
// agent abandoned is still counted.
func (p *Proxy) record(c *call, inf economy.Inference) economy.InferenceRecord {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inf.Model = c.model
	rec, err := p.meter.RecordInference(ctx, c.who, inf, p.cfg.CreditsPerToken)
	if err != nil {
		c.log.Error("recording model usage failed", "execution_id", c.who.ExecutionID, "err", err)
	}
	return rec
}

func setUsageHeaders(w http.ResponseWriter, rec economy.InferenceRecord) {
	w.Header().Set("X-Bpagents-Tokens-Used", fmt.Sprint(rec.TokensUsed))
	w.Header().Set("X-Bpagents-Tokens-Allowance", fmt.Sprint(rec.Allowance))
}

// estimateTokens is the usual rough rule: about four characters a token.
func estimateTokens(chars int) int64 { return int64((chars + 3) / 4) }

func invalid(field, format string, args ...any) error {
	return &economy.Error{Code: economy.CodeInvalid, Detail: field + ": " + fmt.Sprintf(format, args...),
		Extra: map[string]any{"field": field}}
}

// redactURL keeps the upstream's address out of messages shown to agents.
func redactURL(msg, base string) string {
	if base == "" {
		return msg
	}
	return strings.ReplaceAll(msg, base, "[upstream]")
}
