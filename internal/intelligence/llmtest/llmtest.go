// Package llmtest is a small OpenAI-compatible chat completions server for
// tests (no paid upstream can be reached from the test machines): it checks
// the bearer key, answers whole or streamed, reports usage or not, fails on
// demand, and records what it was asked. Tests point the real intelligence
// proxy at it.
//
// It is test infrastructure in an importable package (like net/http/httptest)
// so that end-to-end tests can start it too. Production code never uses it.
package llmtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Request is what the server was asked.
type Request struct {
	Model         string
	Stream        bool
	IncludeUsage  bool
	MaxTokens     int64
	Messages      []Message
	Authorization string
}

// Message is one chat message.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Server is a fake upstream. Set its fields before the calls they affect.
type Server struct {
	*httptest.Server
	Key string

	mu sync.Mutex
	// Reply computes the answer's text; default: "echo: <last message>".
	Reply func(Request) string
	// NoUsage drops the usage object (and the final usage chunk of streams).
	NoUsage bool
	// FailStatus, when set, answers every call with this status and an
	// OpenAI-style error body.
	FailStatus int
	// ChunkDelay is the pause between streamed chunks.
	ChunkDelay time.Duration
	requests   []Request
	finished   int
}

// New starts a server on loopback expecting key (empty: no key checked).
func New(key string) *Server {
	s := &Server{Key: key}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// BaseURL is the OpenAI-style base ("…/v1").
func (s *Server) BaseURL() string { return s.URL + "/v1" }

// Requests returns the calls received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Finished counts streams that ran to their end.
func (s *Server) Finished() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finished
}

// Set changes the server's behaviour under its lock.
func (s *Server) Set(fn func(s *Server)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
		return
	}
	if s.Key != "" && r.Header.Get("Authorization") != "Bearer "+s.Key {
		writeError(w, http.StatusUnauthorized, "invalid api key")
		return
	}
	var body struct {
		Model         string    `json:"model"`
		Stream        bool      `json:"stream"`
		MaxTokens     int64     `json:"max_tokens"`
		Messages      []Message `json:"messages"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
		return
	}
	req := Request{Model: body.Model, Stream: body.Stream, IncludeUsage: body.StreamOptions.IncludeUsage,
		MaxTokens: body.MaxTokens, Messages: body.Messages, Authorization: r.Header.Get("Authorization")}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	fail, noUsage, delay, reply := s.FailStatus, s.NoUsage, s.ChunkDelay, s.Reply
	s.mu.Unlock()
	if fail != 0 {
		writeError(w, fail, "the fake upstream was told to fail")
		return
	}
	text := "echo: " + lastContent(req.Messages)
	if reply != nil {
		text = reply(req)
	}
	words := strings.SplitAfter(text, " ")
	if req.MaxTokens > 0 && int64(len(words)) > req.MaxTokens {
		words = words[:req.MaxTokens] // one word is one token here
	}
	usage := map[string]int64{"prompt_tokens": promptTokens(req.Messages), "completion_tokens": int64(len(words))}
	usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
	if !req.Stream {
		doc := map[string]any{"id": "chatcmpl-fake", "object": "chat.completion", "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": strings.Join(words, "")}}}}
		if !noUsage {
			doc["usage"] = usage
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(doc)
		return
	}
	s.stream(w, r, req, words, usage, noUsage, delay)
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request, req Request, words []string, usage map[string]int64,
	noUsage bool, delay time.Duration) {
	w.Header().Set("Content-Type", "text/event-stream")
	flusher, _ := w.(http.Flusher)
	send := func(v any) bool {
		b, _ := json.Marshal(v)
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	for _, word := range words {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(delay):
		}
		if !send(map[string]any{"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": word}}}}) {
			return
		}
	}
	if req.IncludeUsage && !noUsage {
		send(map[string]any{"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": req.Model,
			"choices": []any{}, "usage": usage})
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	s.mu.Lock()
	s.finished++
	s.mu.Unlock()
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": "fake_error"}})
}

func lastContent(msgs []Message) string {
	if len(msgs) == 0 {
		return ""
	}
	return msgs[len(msgs)-1].Content
}

// promptTokens counts one token per word of the messages.
func promptTokens(msgs []Message) int64 {
	n := 0
	for _, m := range msgs {
		n += len(strings.Fields(m.Content)) + 1
	}
	return int64(n)
}
