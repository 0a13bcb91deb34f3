package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/testutil"
)

// testUIDBase is far above any real user on a development machine.
const testUIDBase = 1_800_000

// testTmpfs keeps /tmp small so that filling it is quick.
const testTmpfs = 8 << 20

// shared is one backend (network, firewall chain, test API) for the tests
// of this package; TestMain closes it.
var shared struct {
	once   sync.Once
	sb     *Sandbox
	api    string // the test API's URL as agents see it
	srv    *http.Server
	hits   *hitCounter
	err    error
	logBuf *testutil.Buffer
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.sb != nil {
		shared.srv.Close()
		// A test that failed half-way may have left executions running.
		shared.sb.mu.Lock()
		var running []*handle
		for _, h := range shared.sb.active {
			running = append(running, h)
		}
		shared.sb.mu.Unlock()
		for _, h := range running {
			h.Kill(context.Background())
		}
		if err := shared.sb.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing the shared docker sandbox:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// needDocker skips (or fails under BPAGENTS_TEST_REQUIRE) unless the engine
// answers a real ping, holds the runner image, and this process is root
// (the firewall chain needs it).
func needDocker(t testing.TB) {
	t.Helper()
	testutil.Need(t, "root", os.Geteuid() == 0, "the docker sandbox's firewall and per-agent uids need root")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := Probe(ctx, "", DefaultImage)
	testutil.Need(t, "docker", err == nil, fmt.Sprint(err))
}

func randomID(t testing.TB) string {
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// hitCounter counts requests to the test API.
type hitCounter struct {
	mu sync.Mutex
	n  int
}

func (h *hitCounter) add() {
	h.mu.Lock()
	h.n++
	h.mu.Unlock()
}

func (h *hitCounter) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// testConfig is a Config with an instance of its own.
func testConfig(t testing.TB) Config {
	return Config{InstanceID: "t" + randomID(t), UIDBase: testUIDBase, TmpfsBytes: testTmpfs}
}

// sharedSandbox returns the package's backend and the URL of a test API
// listening where agents reach it (answering /ping with "pong").
func sharedSandbox(t testing.TB) (*Sandbox, string) {
	t.Helper()
	needDocker(t)
	shared.once.Do(func() {
		shared.logBuf = &testutil.Buffer{}
		logger := slog.New(slog.NewTextHandler(shared.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		sb, err := New(context.Background(), testConfig(t), logger)
		if err != nil {
			shared.err = err
			return
		}
		shared.sb = sb
		ln, err := net.Listen("tcp", net.JoinHostPort(sb.APIHost(), "0"))
		if err != nil {
			shared.err = err
			return
		}
		shared.hits = &hitCounter{}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
			shared.hits.add()
			fmt.Fprint(w, "pong")
		})
		shared.srv = &http.Server{Handler: mux}
		go shared.srv.Serve(ln)
		port := ln.Addr().(*net.TCPAddr).Port
		if err := sb.AllowAPI(context.Background(), port); err != nil {
			shared.err = err
			return
		}
		shared.api = "http://" + net.JoinHostPort(sb.APIHost(), strconv.Itoa(port))
	})
	if shared.err != nil {
		t.Fatalf("docker sandbox: %v", shared.err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sandbox log:\n%s", tailString(shared.logBuf.String(), 40))
		}
	})
	return shared.sb, shared.api
}

func tailString(s string, lines int) string {
	parts := strings.Split(s, "\n")
	return strings.Join(parts[max(0, len(parts)-lines):], "\n")
}

var agentSeq struct {
	mu sync.Mutex
	n  int64
}

// nextAgentNum gives each test agent its own uid.
func nextAgentNum() int64 {
	agentSeq.mu.Lock()
	defer agentSeq.mu.Unlock()
	agentSeq.n++
	return agentSeq.n
}

// newWorkspace is a fresh workspace holding files.
func newWorkspace(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(dir+"/"+name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// newSpec is a spec for cmd in ws with modest limits.
func newSpec(t testing.TB, ws, api string, cmd ...string) sandbox.Spec {
	t.Helper()
	id := "ex_" + randomID(t)
	num := nextAgentNum()
	agent := fmt.Sprintf("agent-%d", num)
	limits := sandbox.Limits{CPUMillis: 500, MemoryBytes: 128 << 20, Duration: 20 * time.Second, MaxProcs: 64}
	return sandbox.Spec{
		ExecutionID: id,
		AgentID:     agent,
		AgentNum:    num,
		Workspace:   ws,
		Command:     cmd,
		Env: map[string]string{
			"AGENT_ID":           agent,
			"EXECUTION_ID":       id,
			"AGENT_TOKEN":        "bpt_test_" + id,
			"SYSTEM_SERVICE_URL": api,
			"ENV_JSON_PATH":      ws + "/env.json",
		},
		Limits:      limits,
		Deadline:    time.Now().Add(limits.Duration),
		OutputLimit: 64 << 10,
	}
}

// python is a command running a Python script.
func python(script string) []string { return []string{"python3", "-c", script} }

// run starts spec and waits for its result.
func run(t testing.TB, sb *Sandbox, spec sandbox.Spec) sandbox.Result {
	t.Helper()
	h, err := sb.Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return wait(t, h)
}

func wait(t testing.TB, h sandbox.Handle) sandbox.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := h.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return res
}

// containersOf lists the containers (any state) of an execution.
func containersOf(t testing.TB, sb *Sandbox, execID string) []container.Summary {
	t.Helper()
	list, err := sb.cli.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelExecution+"="+execID))})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// jsonLines decodes the JSON objects an agent printed one per line.
func jsonLines(t testing.TB, out []byte) map[string]any {
	t.Helper()
	all := map[string]any{}
	for line := range strings.Lines(string(out)) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			for k, v := range m {
				all[k] = v
			}
		}
	}
	return all
}
