//go:build linux

package process

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bpagents/bpagents/internal/sandbox"
)

func TestAgentsRunAsTheirOwnUsers(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	cfg := testConfig(t)
	cfg.UIDBase = testUIDBase
	sb := newSandbox(t, cfg)
	if !sb.Capabilities().UserIsolation {
		skipOrFail(t, "no per-agent users: "+sb.Capabilities().Description)
	}

	// Agent 1 keeps a secret; env.json is written as root just before Start.
	wsA := newWorkspace(t)
	writeTestFile(t, filepath.Join(wsA, "secret.txt"), "top secret", 0o644)
	writeTestFile(t, filepath.Join(wsA, "env.json"), "{}", 0o600)
	if err := os.Mkdir(filepath.Join(wsA, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(wsA, "link")); err != nil {
		t.Fatal(err)
	}
	specA := newSpec(t, wsA, "sh", "-c", "id -u; id -g; id -G; cat env.json; touch sub/new")
	specA.AgentNum = 1
	res := run(t, sb, specA)
	checkReason(t, res, sandbox.ReasonExited)
	uidA := testUIDBase + 1
	want := fmt.Sprintf("%d\n%d\n%d\n{}", uidA, uidA, uidA)
	if got := string(res.Output); got != want {
		t.Errorf("agent 1 printed %q, want %q", got, want)
	}
	checkOwner(t, wsA, uidA, 0o700)
	checkOwner(t, filepath.Join(wsA, "env.json"), uidA, 0o600)
	checkOwner(t, filepath.Join(wsA, "sub", "new"), uidA, 0o644)
	if fi, err := os.Stat("/etc/passwd"); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("the symlink's target changed owner: %v", err)
	}

	// Agent 2 cannot look into agent 1's workspace.
	specB := newSpec(t, newWorkspace(t), "sh", "-c",
		"id -u; cat "+filepath.Join(wsA, "secret.txt")+"; ls "+wsA)
	specB.AgentNum = 2
	res = run(t, sb, specB)
	out := string(res.Output)
	if !strings.HasPrefix(out, fmt.Sprint(testUIDBase+2)) || strings.Contains(out, "top secret") ||
		strings.Count(out, "Permission denied") != 2 || res.ExitCode == 0 {
		t.Errorf("agent 2 (exit %d) printed %q, want its uid and two permission errors", res.ExitCode, out)
	}
}

func checkOwner(t *testing.T, path string, uid int, perm os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != uid || fi.Mode().Perm() != perm {
		t.Errorf("%s: owner %d:%d mode %v, want %d:%d %v", path, st.Uid, st.Gid, fi.Mode().Perm(), uid, uid, perm)
	}
}

func TestPIDNamespaceShowsOnlyTheAgent(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	requirePython(t)
	cfg := testConfig(t)
	cfg.UIDBase = testUIDBase
	sb := newSandbox(t, cfg)
	if !sb.Capabilities().Namespaces {
		skipOrFail(t, "no namespaces: "+sb.Capabilities().Description)
	}
	spec := newSpec(t, newWorkspace(t), "python3", "-c",
		"import os, socket; print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), os.getpid(), socket.gethostname())")
	spec.AgentID = "Genesis_1"
	res := run(t, sb, spec)
	checkReason(t, res, sandbox.ReasonExited)
	if got, want := strings.TrimSpace(string(res.Output)), "[1] 1 genesis-1"; got != want {
		t.Errorf("agent saw %q, want %q (only itself, as pid 1, on its own host name)", got, want)
	}
}

func TestAgentHostname(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"genesis":               "genesis",
		"Agent_X.y":             "agent-x-y",
		"__":                    "agent",
		"":                      "agent",
		strings.Repeat("a", 80): strings.Repeat("a", 63),
	}
	for in, want := range tests {
		if got := agentHostname(in); got != want {
			t.Errorf("agentHostname(%q) = %q, want %q", in, got, want)
		}
	}
}

// A workspace below a directory the agent may not search (a 0700 home) is
// still reachable at its own path, and the rest of that directory is hidden.
func TestWorkspaceBelowPrivateDirectory(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	cfg := testConfig(t)
	cfg.UIDBase = testUIDBase
	sb := newSandbox(t, cfg)
	if !sb.Capabilities().UserIsolation || !sb.Capabilities().Namespaces {
		skipOrFail(t, "needs per-agent users and namespaces: "+sb.Capabilities().Description)
	}
	home := t.TempDir()
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(home, "data", "operator.token")
	if err := os.Mkdir(filepath.Dir(secret), 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, secret, "hunter2", 0o644)
	ws := filepath.Join(home, "workspaces", "agent-x")
	if err := os.MkdirAll(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(ws, "env.json"), `{"ok":1}`, 0o644)
	spec := newSpec(t, ws, "sh", "-c", "cat "+filepath.Join(ws, "env.json")+"; echo; pwd; echo hi > out.txt; "+
		"cat "+secret+" 2>&1; ls "+home)
	spec.AgentNum = 7
	res := run(t, sb, spec)
	checkReason(t, res, sandbox.ReasonExited)
	out := string(res.Output)
	if !strings.HasPrefix(out, `{"ok":1}`+"\n"+ws+"\n") || strings.Contains(out, "hunter2") {
		t.Errorf("agent printed %q: want env.json by absolute path, its cwd, and no secret", out)
	}
	if !strings.HasSuffix(out, "No such file or directory\nworkspaces\n") {
		t.Errorf("the private home's other entries are visible to the agent (ls shows more than workspaces): %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(ws, "out.txt")); err != nil || string(b) != "hi\n" {
		t.Errorf("the agent's write did not reach the host workspace: %q, %v", b, err)
	}
}
