package intelligence

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/bpagents/bpagents/internal/economy"
)

// streamChunk is the part of a chat.completion.chunk the proxy reads.
type streamChunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
	} `json:"choices"`
	Usage *Usage `json:"usage"`
}

// relayStream passes a server-sent event stream through line by line,
// flushing as it goes, and records the usage when it ends: the upstream's
// final usage chunk when it sent one, an estimate from the text otherwise
// (also when the agent abandons the stream part-way).
func (p *Proxy) relayStream(ctx context.Context, w http.ResponseWriter, c *call, resp *http.Response) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	inf := economy.Inference{Model: c.model, Stream: true, Status: resp.StatusCode}
	var usage *Usage
	completionChars := 0
	r := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := r.ReadString('\n')
		if len(line) > 0 {
			if data, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data:"); ok {
				data = strings.TrimSpace(data)
				var chunk streamChunk
				if data != "[DONE]" && json.Unmarshal([]byte(data), &chunk) == nil {
					for _, ch := range chunk.Choices {
						completionChars += len(ch.Delta.Content)
					}
					if chunk.Usage != nil {
						usage = chunk.Usage
					}
				}
			}
			if _, werr := io.WriteString(w, line); werr != nil {
				inf.Aborted = true
				break
			}
			if flusher != nil && (line == "\n" || line == "\r\n") {
				flusher.Flush()
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				// The upstream failed or the request's context ended: the
				// agent went away, or the call hit the timeout.
				inf.Aborted = ctx.Err() != nil
			}
			break
		}
	}
	if flusher != nil {
		flusher.Flush()
	}
	if usage != nil {
		inf.PromptTokens, inf.CompletionTokens = usage.PromptTokens, usage.CompletionTokens
	} else {
		inf.Estimated = true
		inf.PromptTokens, inf.CompletionTokens = c.promptTokens, estimateTokens(completionChars)
	}
	rec := p.record(c, inf)
	c.log.Debug("model stream ended", "execution_id", c.who.ExecutionID, "tokens", inf.Total(),
		"estimated", inf.Estimated, "aborted", inf.Aborted, "tokens_used", rec.TokensUsed)
}

// readLimited reads at most n bytes.
func readLimited(r io.Reader, n int64) []byte {
	b, _ := io.ReadAll(io.LimitReader(r, n))
	return b
}
