//go:build linux

package process

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// initMarker is os.Args[1] of the init helper.
const initMarker = "__bpagents_sandbox_init"

// helperEnvVar is set in the init helper's own environment (never the
// agent's). A binary that finds it set but did not run as the helper does
// not call MaybeRunInit; New refuses to start there instead of recursing.
const helperEnvVar = "BPAGENTS_SANDBOX_HELPER"

// agentPATH is the only PATH an agent sees, and the one its command is
// looked up in.
const agentPATH = "/usr/local/bin:/usr/bin:/bin"

// probeOK is what the helper writes on its status fd after a successful probe.
const probeOK = "probe ok"

// The helper's file descriptors and exit codes.
const (
	initConfigFD = 3 // JSON initConfig; EOF means "proceed"
	initStatusFD = 4 // close-on-exec: EOF without data means "agent exec'd"

	exitSetup    = 125 // the sandbox could not be set up
	exitNoExec   = 126 // the command exists but could not be executed
	exitNotFound = 127 // the command does not exist
)

// initConfig is what the parent tells the helper, over initConfigFD.
type initConfig struct {
	Probe      bool     `json:"probe,omitempty"` // set up, report probeOK, exit
	Namespaces bool     `json:"namespaces"`      // fresh /proc and hostname
	Hostname   string   `json:"hostname"`
	UID        int      `json:"uid"` // -1 keeps the current identity
	GID        int      `json:"gid"`
	Dir        string   `json:"dir"`
	Argv       []string `json:"argv"`
	Env        []string `json:"env"`
	Rlimits    []rlimit `json:"rlimits"`
}

type rlimit struct {
	Resource int    `json:"resource"`
	Cur      uint64 `json:"cur"`
	Max      uint64 `json:"max"`
}

// MaybeRunInit runs the sandbox's init helper when this process was started
// as one (os.Args[1] is the hidden marker) and never returns in that case.
// Otherwise it returns at once. Every binary that uses this package — and
// its tests' TestMain — must call it first thing in main.
func MaybeRunInit() {
	if len(os.Args) < 2 || os.Args[1] != initMarker {
		return
	}
	// prctl(PR_SET_PDEATHSIG) and execve must happen on the same thread.
	runtime.LockOSThread()
	status := os.NewFile(initStatusFD, "status")
	code, err := runInit(status)
	if err != nil {
		fmt.Fprintf(status, "%v", err)
	}
	status.Close()
	// Exit at once: nothing is buffered, and os.Exit may linger (the race
	// detector sleeps at exit), keeping the agent's output pipe open.
	unix.Exit(code)
}

// runInit sets the sandbox up from the inside and execs the agent. It only
// returns on failure, or after a probe.
func runInit(status io.Writer) (int, error) {
	cfg, err := readInitConfig(os.NewFile(initConfigFD, "config"))
	if err != nil {
		return exitSetup, err
	}
	if cfg.Namespaces {
		if err := setupNamespaces(cfg.Hostname); err != nil {
			return exitSetup, err
		}
	}
	if cfg.Namespaces && cfg.UID >= 0 && !cfg.Probe {
		if err := exposeWorkspace(cfg.Dir, cfg.UID, cfg.GID); err != nil {
			return exitSetup, err
		}
	}
	if cfg.UID >= 0 {
		if err := dropPrivileges(cfg.UID, cfg.GID); err != nil {
			return exitSetup, err
		}
	}
	// Changing credentials clears the parent-death signal: set it again.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return exitSetup, fmt.Errorf("set parent-death signal: %w", err)
	}
	if cfg.Probe {
		io.WriteString(status, probeOK)
		return 0, nil
	}
	if err := os.Chdir(cfg.Dir); err != nil {
		return exitSetup, fmt.Errorf("enter workspace: %w", err)
	}
	path, err := lookPath(cfg.Argv[0])
	if err != nil {
		return exitNotFound, err
	}
	unix.Umask(0o022) // not whatever the host process had
	for _, r := range cfg.Rlimits {
		if err := unix.Setrlimit(r.Resource, &unix.Rlimit{Cur: r.Cur, Max: r.Max}); err != nil {
			return exitSetup, fmt.Errorf("set rlimit %d: %w", r.Resource, err)
		}
	}
	// Nothing but stdin, stdout and stderr reaches the agent; the status fd
	// closing at exec is what tells the parent the agent is running.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		syscall.CloseOnExec(initConfigFD)
		syscall.CloseOnExec(initStatusFD)
	}
	err = syscall.Exec(path, cfg.Argv, cfg.Env)
	code := exitNoExec
	if errors.Is(err, syscall.ENOENT) {
		code = exitNotFound
	}
	return code, fmt.Errorf("exec %q: %w", cfg.Argv[0], err)
}

func readInitConfig(f *os.File) (initConfig, error) {
	defer f.Close()
	var cfg initConfig
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return cfg, fmt.Errorf("read sandbox config: %w", err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return cfg, fmt.Errorf("decode sandbox config: %w", err)
	}
	if !cfg.Probe && len(cfg.Argv) == 0 {
		return cfg, errors.New("sandbox config: empty command")
	}
	return cfg, nil
}

// setupNamespaces runs inside fresh mount, PID and UTS namespaces: it keeps
// mount changes from propagating to the host, mounts a /proc that shows only
// this PID namespace, and names the host.
func setupNamespaces(hostname string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if err := unix.Sethostname([]byte(hostname)); err != nil {
		return fmt.Errorf("set hostname: %w", err)
	}
	return nil
}

// dropPrivileges leaves root for good: no supplementary groups, then the
// group, then the user.
func dropPrivileges(uid, gid int) error {
	if err := syscall.Setgroups([]int{}); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	return nil
}

// lookPath finds name in agentPATH unless it contains a '/', in which case
// it is used as given (relative to the workspace, the working directory).
func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range strings.Split(agentPATH, ":") {
		p := dir + "/" + name
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().IsRegular() && unix.Access(p, unix.X_OK) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec %q: executable file not found in PATH %s", name, agentPATH)
}

// agentHostname derives a valid host name from an agent id.
func agentHostname(agentID string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(agentID) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0:
			b.WriteByte('-')
		}
		if b.Len() == 63 {
			break
		}
	}
	if s := strings.Trim(b.String(), "-"); s != "" {
		return s
	}
	return "agent"
}
