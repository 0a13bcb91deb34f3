package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/intelligence/llmtest"
)

// TestGenesisThinksThroughTheProxy points the system at the suite's own
// OpenAI-compatible server and waits for a genesis execution that won tokens
// and attention: the model writes its prompt and chooses its bid, the call
// goes through the metered proxy, and the usage lands in the events and on
// the execution record.
func TestGenesisThinksThroughTheProxy(t *testing.T) {
	needPython(t)
	up := llmtest.New("sk-e2e-secret")
	defer up.Close()
	up.Set(func(s *llmtest.Server) {
		s.Reply = func(r llmtest.Request) string {
			return `Here you go: {"prompt": "Genesis here: CPU is cheap while capacity idles. Should I spawn specialists ` +
				`that only report markets to you?", "aggressiveness": 1.8}`
		}
	})
	home := t.TempDir()
	s := startServerEnv(t, home, []string{
		"BPAGENTS_INTELLIGENCE_BASE_URL=" + up.BaseURL(),
		"BPAGENTS_INTELLIGENCE_MODELS=[tiny]",
		"BPAGENTS_INTELLIGENCE_API_KEY=sk-e2e-secret",
	}, "--cycle", "300ms")
	ctx := context.Background()

	var thinker api.ExecutionView
	waitFor(t, 40*time.Second, "a genesis execution that used model tokens", func() bool {
		var list api.ExecutionList
		if err := s.client.Get(ctx, "/executions?agent=genesis&status=finished&limit=50", &list); err != nil {
			t.Fatal(err)
		}
		for _, ex := range list.Executions {
			if ex.TokensUsed > 0 {
				thinker = ex
				return true
			}
		}
		return false
	})
	out := s.output(thinker.ID)
	t.Logf("genesis execution %s (bundle %+v) used %d model tokens; its output:\n%s", thinker.ID, thinker.Bundle,
		thinker.TokensUsed, out)
	for _, want := range []string{"model tiny answered through the proxy", "composed by the model"} {
		if !strings.Contains(out, want) {
			t.Errorf("genesis output lacks %q:\n%s", want, out)
		}
	}
	if thinker.Bundle.Tokens == 0 || thinker.Bundle.Attention != 1 || thinker.TokensUsed > thinker.Bundle.Tokens {
		t.Errorf("thinking execution: bundle %+v, tokens used %d", thinker.Bundle, thinker.TokensUsed)
	}
	var page api.EventPage
	if err := s.client.Get(ctx, "/events?type=inference.completed&agent=genesis", &page); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range page.Events {
		var d struct {
			ExecutionID string `json:"execution_id"`
			Total       int64  `json:"total_tokens"`
			Model       string `json:"model"`
		}
		json.Unmarshal(e.Data, &d)
		found = found || (d.ExecutionID == thinker.ID && d.Total > 0 && d.Model == "tiny")
	}
	if !found {
		t.Errorf("no inference.completed event for %s in %d events", thinker.ID, len(page.Events))
	}
	reqs := up.Requests()
	if len(reqs) == 0 || reqs[0].Authorization != "Bearer sk-e2e-secret" || reqs[0].Model != "tiny" {
		t.Fatalf("the suite's upstream saw %+v", reqs)
	}
	if strings.Contains(s.log.String(), "sk-e2e-secret") {
		t.Fatal("the upstream key appears in the server's log")
	}
	audit(t, home)
}
