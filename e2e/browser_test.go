package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/testutil"
)

// askerAgent writes a prompt whenever its execution holds the operator's
// attention, and always bids again for a small bundle so that it lives on.
const askerAgent = `import json, os, urllib.request
env = json.load(open(os.environ.get("ENV_JSON_PATH", "env.json")))
def call(method, path, body):
    req = urllib.request.Request(env["service_url"] + path, data=json.dumps(body).encode(), method=method,
        headers={"Authorization": "Bearer " + env["token"], "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
if env["execution_context"].get("attention", 0) >= 1:
    p = call("POST", "/human/prompt", {"content": "Hello operator. The browser test asks you to rate this <b>prompt</b> through the dashboard's form."})
    print("holding attention: wrote prompt", p["id"])
b = call("POST", "/market/bid", {"amount": 0.5, "bundle": {"cpu": 0.1, "memory_mb": 64, "duration_seconds": 5}})
print("bid", b["id"], "with", env["credits"], "credits")
`

// chromium finds Debian's Chromium (or another Chrome) on PATH.
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// screenshotDir is $BPAGENTS_SCREENSHOTS, or a new directory that outlives
// the test so that its screenshots can be looked at.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("BPAGENTS_SCREENSHOTS")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "bpagents-screenshots-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots of every dashboard page: %s", dir)
	return dir
}

// TestDashboardInBrowser drives the dashboard of a real `bpagents up` with
// headless Chromium: the dashboard shows genesis, the live feed updates
// without a reload, and rating a prompt through the form raises the agent's
// balance. It saves a screenshot of every page.
func TestDashboardInBrowser(t *testing.T) {
	needPython(t)
	exe := chromium()
	testutil.Need(t, "chromium", exe != "", "no chromium on PATH (Debian: apt-get install chromium)")
	dir := screenshotDir(t)
	home := t.TempDir()
	s := startServer(t, home, "--cycle", "300ms")
	token := s.client.Token
	asker := s.createAgent(project(t, map[string]string{"main.py": askerAgent}), "--id", "asker",
		"--credits", "200", "--bid", "30", "--attention", "--cpu", "0.1", "--memory-mb", "64", "--duration", "5")

	parent, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("lang", "en-US"))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(parent, opts...)
	defer cancelAlloc()
	var mu sync.Mutex
	var jsErrors []string
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithListener(func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			mu.Lock()
			d := e.ExceptionDetails
			desc := d.Text
			if d.Exception != nil {
				desc += " " + d.Exception.Description
			}
			jsErrors = append(jsErrors, fmt.Sprintf("%s at %s:%d:%d", desc, d.URL, d.LineNumber+1, d.ColumnNumber+1))
			mu.Unlock()
		}
	}))
	defer cancelTab()

	step := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}
	wait := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			t.Fatalf("waiting for %s (%s): %v", what, expr, err)
		}
	}
	shots := 0
	// shot saves the whole page, or only the window for long pages.
	shot := func(name string, whole bool) {
		t.Helper()
		capture := chromedp.CaptureScreenshot()
		if whole {
			capture = chromedp.FullScreenshot(100)
		}
		png, err := chromedp.Run(ctx, capture)
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		shots++
		path := filepath.Join(dir, fmt.Sprintf("%02d-%s.png", shots, name))
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	started := time.Now()

	// 1. The dashboard shows genesis, to anyone, without logging in.
	step("overview", chromedp.Navigate(s.url+"/"), chromedp.WaitVisible(chromedp.CSS("section.cards")))
	if title := eval(`document.title`); !strings.Contains(title, "Overview") {
		t.Errorf("title %q", title)
	}
	shot("overview-public", true)
	step("agents", chromedp.Navigate(s.url+"/ui/agents"), chromedp.WaitVisible(chromedp.CSS("ul.tree")),
		chromedp.Click(chromedp.CSS(`button[data-tree="open"]`)))
	if txt := eval(`document.querySelector('table.agents').innerText`); !strings.Contains(txt, economy.GenesisID) {
		t.Fatalf("the agents table does not show genesis:\n%s", txt)
	}
	if txt := eval(`document.querySelector('ul.tree').innerText`); !strings.Contains(txt, economy.GenesisID) {
		t.Fatalf("the lineage tree does not show genesis:\n%s", txt)
	}
	shot("agents", true)

	// 2. Log in with the operator token; the live feed connects.
	step("login", chromedp.Navigate(s.url+"/ui/login?next=/ui/events"), chromedp.WaitVisible(chromedp.CSS(`input[name="token"]`)))
	shot("login", true)
	step("submit login", chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), token),
		chromedp.Submit(chromedp.CSS(`input[name="token"]`)), chromedp.WaitVisible(chromedp.CSS(`tbody[data-feed]`)))
	wait("the feed to connect", `document.querySelector('[data-feed-status]').textContent === 'live'`)

	// 3. The live feed updates without a reload.
	eval(`window.__sameDocument = 'yes'`)
	if err := s.client.Post(context.Background(), "/admin/mint",
		map[string]any{"agent_id": economy.GenesisID, "amount": 1, "memo": "browser-live-feed"}, nil); err != nil {
		t.Fatal(err)
	}
	wait("the mint in the live feed", `Array.from(document.querySelectorAll('tbody[data-feed] tr')).some(tr => tr.textContent.includes('browser-live-feed'))`)
	if eval(`window.__sameDocument`) != "yes" {
		t.Fatal("the page reloaded to show the new event")
	}
	if n := eval(`document.querySelector('tbody[data-feed]').dataset.received || '0'`); n == "0" {
		t.Fatal("the feed counted no streamed events")
	}
	shot("events-live", false)

	// 4. Rating a prompt through the form raises the agent's balance.
	var prompt economy.PromptView
	waitFor(t, 30*time.Second, "the asker's prompt", func() bool {
		var list api.PromptList
		if err := s.client.Get(context.Background(), "/human/prompts?agent="+asker, &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Prompts) > 0 {
			prompt = list.Prompts[0]
		}
		return len(list.Prompts) > 0
	})
	form := "#prompt-" + prompt.ID
	step("attention queue", chromedp.Navigate(s.url+"/ui/attention"), chromedp.WaitVisible(chromedp.CSS(form+" form.rate-form")))
	if txt := eval(`document.querySelector('` + form + ` pre.content').textContent`); !strings.Contains(txt, "<b>prompt</b>") {
		t.Errorf("the prompt is not shown as the agent wrote it (escaped): %q", txt)
	}
	before := s.balanceOf(asker)
	step("fill the rating form",
		chromedp.SetValue(chromedp.CSS(form+` input[name="interesting"]`), "8"),
		chromedp.SetValue(chromedp.CSS(form+` input[name="useful"]`), "7"),
		chromedp.SetValue(chromedp.CSS(form+` input[name="understandable"]`), "9"),
		chromedp.SendKeys(chromedp.CSS(form+` input[name="reason"]`), "clear, and it came through the browser"))
	shot("attention-queue", true)
	step("rate", chromedp.Click(chromedp.CSS(form+` button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS(".flash.ok")))
	flash := eval(`document.querySelector('.flash.ok').textContent`)
	if !strings.Contains(flash, "minted 1200 credits to "+asker) {
		t.Errorf("after rating the page says %q", flash)
	}
	after := s.balanceOf(asker)
	// 24 points × 50 credits; the agent keeps paying for its small bids meanwhile.
	if gain := after - before; gain < 1190 {
		t.Fatalf("the asker's balance went from %.2f to %.2f after a rating worth 1200", before, after)
	}
	shot("attention-rated", true)

	// 5. Every other page, as the operator sees it.
	step("agent page", chromedp.Navigate(s.url+"/ui/agents/"+asker), chromedp.WaitVisible(chromedp.CSS("svg.plot polyline")),
		chromedp.Click(chromedp.CSS(`details.exec[data-status="finished"] summary`)))
	wait("an execution's logs", `!!document.querySelector('details.exec[data-loaded="yes"] pre.logs')`)
	if logs := eval(`document.querySelector('details.exec[data-loaded="yes"] pre.logs').textContent`); !strings.Contains(logs, "bid") {
		t.Errorf("the execution's logs read %q", logs)
	}
	shot("agent-asker", true)
	step("genesis page", chromedp.Navigate(s.url+"/ui/agents/genesis"), chromedp.WaitVisible(chromedp.CSS("svg.plot polyline")),
		chromedp.Click(chromedp.CSS(`details.exec[data-status="finished"] summary`)))
	wait("genesis's logs", `!!document.querySelector('details.exec[data-loaded="yes"] pre.logs')`)
	shot("agent-genesis", true)
	step("markets", chromedp.Navigate(s.url+"/ui/markets"), chromedp.WaitVisible(chromedp.CSS("[data-util-plot]")))
	wait("the price plots", `document.querySelectorAll('svg[data-price] polyline').length >= 4 && !!document.querySelector('[data-util-plot] polyline')`)
	shot("markets", true)
	step("overview as operator", chromedp.Navigate(s.url+"/"), chromedp.WaitVisible(chromedp.CSS(`tbody[data-feed]`)))
	wait("the overview feed", `document.querySelector('[data-feed-status]').textContent === 'live'`)
	shot("overview-operator", true)

	mu.Lock()
	defer mu.Unlock()
	for _, e := range jsErrors {
		t.Errorf("JavaScript error on a dashboard page: %s", e)
	}
	t.Logf("browser steps took %s, %d screenshots", time.Since(started).Round(time.Millisecond), shots)
	audit(t, home)
}

// balanceOf reads an agent's available balance as a float (for comparisons
// in a test only).
func (s *server) balanceOf(id string) float64 {
	s.t.Helper()
	var b economy.BalanceView
	if err := s.client.Get(context.Background(), "/economic/balance/"+id, &b); err != nil {
		s.t.Fatal(err)
	}
	return b.Balance.Float64()
}
