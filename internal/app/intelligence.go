package app

import (
	"log/slog"

	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/intelligence"
)

// newProxy builds the metered model proxy; the key is read once here and
// lives only inside the proxy.
func newProxy(cfg config.Config, eco *economy.Economy, log *slog.Logger) (*intelligence.Proxy, error) {
	in := cfg.Intelligence
	key, err := in.Key()
	if err != nil {
		return nil, err
	}
	p := intelligence.New(intelligence.Config{BaseURL: in.BaseURL, Key: key, Models: in.Models,
		CreditsPerToken: in.CreditsPerToken, Timeout: in.Timeout, MaxRequestBytes: in.MaxRequestBytes}, eco, log)
	if in.BaseURL != "" {
		log.Info("model proxy ready", "upstream", in.BaseURL, "models", in.Models, "key_set", key != "",
			"credits_per_token", in.CreditsPerToken)
	}
	return p, nil
}
