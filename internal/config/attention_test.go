package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/money"
)

// TestAttentionSettings covers the human-attention settings: their defaults,
// their validation (each error names its field) and loading from a file and
// the environment.
func TestAttentionSettings(t *testing.T) {
	t.Parallel()
	d := Default()
	if d.Economy.PromptTTL != time.Hour || d.Economy.MaxPromptBytes != 8192 || d.Economy.RewardWeight != money.Credits(50) {
		t.Fatalf("defaults %+v", d.Economy)
	}
	bad := []struct {
		name   string
		mutate func(*Config)
		field  string
	}{
		{"ttl zero", func(c *Config) { c.Economy.PromptTTL = 0 }, "economy.prompt_ttl"},
		{"ttl below a second", func(c *Config) { c.Economy.PromptTTL = time.Millisecond }, "economy.prompt_ttl"},
		{"ttl above a year", func(c *Config) { c.Economy.PromptTTL = 366 * 24 * time.Hour }, "economy.prompt_ttl"},
		{"prompt bytes zero", func(c *Config) { c.Economy.MaxPromptBytes = 0 }, "economy.max_prompt_bytes"},
		{"prompt bytes huge", func(c *Config) { c.Economy.MaxPromptBytes = 2 << 20 }, "economy.max_prompt_bytes"},
		{"reward weight overflowing a rating", func(c *Config) { c.Economy.RewardWeight = money.Max/30 + 1 }, "economy.reward_weight"},
	}
	for _, tc := range bad {
		c := Default()
		tc.mutate(&c)
		err := c.Validate()
		if err == nil {
			t.Fatalf("%s: Validate accepted it", tc.name)
		}
		if got := fieldNames(fieldErrors(t, err)); !slices.Equal(got, []string{tc.field}) {
			t.Fatalf("%s: errors name %v, want [%s]: %v", tc.name, got, tc.field, err)
		}
	}
	ok := Default()
	ok.Economy.RewardWeight, ok.Economy.PromptTTL = money.Max/30, time.Second
	if err := ok.Validate(); err != nil {
		t.Fatalf("limits refused: %v", err)
	}

	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("economy:\n  prompt_ttl: 90s\n  max_prompt_bytes: 100\n  reward_weight: 2.5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, []string{"BPAGENTS_ECONOMY_MAX_PROMPT_BYTES=200"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Economy.PromptTTL != 90*time.Second || c.Economy.MaxPromptBytes != 200 || c.Economy.RewardWeight != money.MustParse("2.5") {
		t.Fatalf("loaded %+v", c.Economy)
	}
	if _, err := Load("", []string{"BPAGENTS_ECONOMY_PROMPT_TTL=soon"}); err == nil {
		t.Fatal("a prompt_ttl that is not a duration was accepted")
	}
}
