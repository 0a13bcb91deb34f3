package config

import (
	"bufio"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/bpagents/bpagents/internal/money"
)

// Intelligence configures the metered path to language models: agents call
// POST /v1/chat/completions with their execution token and the system
// forwards to an OpenAI-compatible upstream.
type Intelligence struct {
	// BaseURL is the upstream's OpenAI-compatible base, e.g.
	// http://127.0.0.1:11434/v1 for a local model server. Empty disables
	// inference (requests get 503).
	BaseURL string `yaml:"base_url"`
	// APIKey is sent to the upstream as a bearer token. It is a secret: never
	// shown to agents, never logged, redacted when the config is printed.
	APIKey string `yaml:"api_key"`
	// APIKeyFile names an environment file (KEY=value lines) holding the key
	// under APIKeyVar; used when APIKey is empty.
	APIKeyFile string `yaml:"api_key_file"`
	APIKeyVar  string `yaml:"api_key_var"`
	// Models lists the models agents may ask for; the first is the default.
	Models []string `yaml:"models"`
	// CreditsPerToken is charged to the agent on top of its bundle's price
	// for every token it consumes (0: the bundle price covers it).
	CreditsPerToken money.Micro `yaml:"credits_per_token"`
	// Timeout bounds one upstream request, streaming included.
	Timeout time.Duration `yaml:"timeout"`
	// MaxRequestBytes bounds an agent's request body.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
}

func defaultIntelligence() Intelligence {
	return Intelligence{APIKeyVar: "OPENAI_API_KEY", Timeout: 60 * time.Second, MaxRequestBytes: 1 << 20}
}

// Key returns the upstream key from APIKey or, failing that, from the
// environment file.
func (i Intelligence) Key() (string, error) {
	if i.APIKey != "" || i.APIKeyFile == "" {
		return i.APIKey, nil
	}
	f, err := os.Open(i.APIKeyFile)
	if err != nil {
		return "", fmt.Errorf("intelligence.api_key_file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export "))
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") || strings.TrimSpace(k) != i.APIKeyVar {
			continue
		}
		return strings.Trim(strings.TrimSpace(v), `"'`), nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("intelligence.api_key_file: %w", err)
	}
	return "", fmt.Errorf("intelligence.api_key_file: %s has no %s= line", i.APIKeyFile, i.APIKeyVar)
}

func (c *Config) validateIntelligence(bad badFunc) {
	in := c.Intelligence
	if in.BaseURL != "" {
		u, err := url.Parse(in.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("intelligence.base_url", "must be an http(s) URL such as http://127.0.0.1:11434/v1, got %q", in.BaseURL)
		}
		if len(in.Models) == 0 {
			bad("intelligence.models", "list at least one model agents may use")
		}
	}
	for i, m := range in.Models {
		if m == "" || len(m) > 200 || slices.Contains(in.Models[:i], m) {
			bad("intelligence.models", "model names must be non-empty, at most 200 bytes and distinct, got %q", m)
		}
	}
	if in.CreditsPerToken < 0 || in.CreditsPerToken > money.Credits(1000) {
		bad("intelligence.credits_per_token", "must be between 0 and 1000, got %s", in.CreditsPerToken)
	}
	if in.Timeout < time.Second || in.Timeout > time.Hour {
		bad("intelligence.timeout", "must be between 1s and 1h, got %s", in.Timeout)
	}
	if in.MaxRequestBytes < 1024 || in.MaxRequestBytes > 64<<20 {
		bad("intelligence.max_request_bytes", "must be between 1024 and 67108864, got %d", in.MaxRequestBytes)
	}
	if in.APIKeyFile != "" && in.APIKeyVar == "" {
		bad("intelligence.api_key_var", "must name the variable to read from api_key_file")
	}
}

// Redacted returns a copy safe to print: secrets replaced.
func (c Config) Redacted() Config {
	if c.Intelligence.APIKey != "" {
		c.Intelligence.APIKey = "[redacted]"
	}
	c.Database = redactDatabase(c.Database)
	return c
}
