// Package e2e runs the real bpagents binary (`bpagents up` with the process
// sandbox) in temporary homes and checks the system from the outside: through
// its HTTP API, its CLI, its workspaces and its database.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/client"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/testutil"
)

var binary string

// uidRanges numbers the servers a test run starts.
var uidRanges atomic.Int64

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bpagents-e2e-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "bpagents")
	build := exec.Command("go", "build", "-o", binary, "../cmd/bpagents")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building bpagents:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needRoot makes a test that needs root (namespaces, cgroups, per-agent
// users) skip or fail according to BPAGENTS_TEST_REQUIRE.
func needRoot(t *testing.T) {
	t.Helper()
	testutil.Need(t, "root", os.Geteuid() == 0, "the process sandbox's containment needs root")
}

// needPython makes a test that runs Python agents skip or fail.
func needPython(t *testing.T, modules ...string) {
	t.Helper()
	args := []string{"-c", "import " + strings.Join(append([]string{"json"}, modules...), ",")}
	err := exec.Command("/usr/bin/python3", args...).Run()
	testutil.Need(t, "python3", err == nil, fmt.Sprintf("/usr/bin/python3 with %v: %v", modules, err))
}

// server is one running `bpagents up`.
type server struct {
	t      *testing.T
	home   string
	url    string
	cmd    *exec.Cmd
	log    *testutil.Buffer
	done   chan struct{}
	client *client.Client
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServer runs `bpagents up` in home with extra flags.
func startServer(t *testing.T, home string, extra ...string) *server {
	t.Helper()
	return startServerEnv(t, home, nil, extra...)
}

// startServerEnv is startServer with extra environment variables.
func startServerEnv(t *testing.T, home string, env []string, extra ...string) *server {
	t.Helper()
	addr := freePort(t)
	args := append([]string{"up", "--home", home, "--addr", addr, "--sandbox", "process"}, extra...)
	cmd := exec.Command(binary, args...)
	// Each server's agents get their own range of user ids, so processes are
	// counted per test even while other tests run agents on this host.
	uidBase := 1_000_000 + 20_000*(os.Getpid()%500) + 1_000*int(uidRanges.Add(1)%20)
	cmd.Env = append(os.Environ(), "BPAGENTS_LOG_FORMAT=json", "BPAGENTS_LOG_LEVEL=info",
		fmt.Sprintf("BPAGENTS_PROCESS_UID_BASE=%d", uidBase))
	cmd.Env = append(cmd.Env, env...)
	s := &server{t: t, home: home, url: "http://" + addr, cmd: cmd, log: &testutil.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("server log (%s):\n%s", home, tail(s.log.String(), 60))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := client.New(s.url, "")
		var h api.Health
		if err := c.Get(context.Background(), "/healthz", &h); err == nil {
			break
		}
		select {
		case <-s.done:
			t.Fatalf("bpagents up exited early:\n%s", s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("bpagents up did not become healthy:\n%s", s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	tok, err := os.ReadFile(filepath.Join(home, "data", "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	s.client = client.New(s.url, strings.TrimSpace(string(tok)))
	return s
}

// stop ends the server with SIGTERM and waits for a clean exit.
func (s *server) stop() {
	s.t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.t.Fatalf("server did not stop on SIGTERM")
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		s.t.Fatalf("server exited with %d:\n%s", code, tail(s.log.String(), 30))
	}
}

// exited reports whether the server's process has ended and been waited for.
func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// kill ends the server with SIGKILL, as a crash would.
// It reads nothing Wait writes (ProcessState): the waiting goroutine owns it
// until done is closed.
func (s *server) kill() {
	if !s.exited() {
		s.cmd.Process.Kill() // an error only says it already exited
	}
	<-s.done
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// cli runs a bpagents client command against s and returns its output and exit code.
func (s *server) cli(args ...string) (string, int) {
	s.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "BPAGENTS_TOKEN=")
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return string(out), code
}

// audit runs `bpagents audit --home` and fails the test unless it passes.
func audit(t *testing.T, home string) string {
	t.Helper()
	cmd := exec.Command(binary, "audit", "--home", home)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "audit: OK") {
		t.Fatalf("audit failed (%v):\n%s", err, out)
	}
	return string(out)
}

// waitFor polls cond until it returns true or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logLines returns the server's JSON log lines containing substr.
func (s *server) logLines(substr string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s.log.String()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), substr) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// watchAPI asks the API at url for a balance every 20 ms until the returned
// function is called; that function logs how many requests were made and
// the slowest, and fails t if any request failed or none was made (the
// server must stay responsive while hostile agents run).
func watchAPI(t *testing.T, url string) (stop func()) {
	var done atomic.Bool
	var requests, failures, slowest atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		c := client.New(url, "")
		for !done.Load() {
			start := time.Now()
			var b economy.BalanceView
			if err := c.Get(context.Background(), "/economic/balance/genesis", &b); err != nil {
				failures.Add(1)
			}
			requests.Add(1)
			if d := time.Since(start).Microseconds(); d > slowest.Load() {
				slowest.Store(d)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return func() {
		t.Helper()
		done.Store(true)
		wg.Wait()
		t.Logf("API during the attack: %d requests, %d failures, slowest %.1f ms",
			requests.Load(), failures.Load(), float64(slowest.Load())/1000)
		if failures.Load() > 0 || requests.Load() == 0 {
			t.Errorf("API failed %d of %d requests while hostile agents ran", failures.Load(), requests.Load())
		}
	}
}

// runningExecution waits up to timeout for a running execution of agent for
// which ready (when given) holds, and returns it.
func (s *server) runningExecution(agent string, timeout time.Duration, ready func(api.ExecutionView) bool) api.ExecutionView {
	s.t.Helper()
	var ex api.ExecutionView
	waitFor(s.t, timeout, "an execution of "+agent+" to run", func() bool {
		var list api.ExecutionList
		if err := s.client.Get(context.Background(), "/executions?status=running&agent="+agent, &list); err != nil {
			s.t.Fatal(err)
		}
		if len(list.Executions) == 0 {
			return false
		}
		ex = list.Executions[0]
		return ready == nil || ready(ex)
	})
	return ex
}
