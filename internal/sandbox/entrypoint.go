package sandbox

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// maxAgentJSON bounds how much of agent.json is read.
const maxAgentJSON = 64 << 10

// ResolveEntrypoint applies the contract's entrypoint rules to a workspace:
// agent.json's "command" if present, else "python3 main.py" if main.py exists,
// else "./main" if main is an executable file, else ErrNoEntrypoint.
//
// The workspace belongs to an untrusted agent, so files are opened without
// following symbolic links and read with a size cap; a bad agent.json is an
// error that names the problem.
func ResolveEntrypoint(workspace string) ([]string, error) {
	cmd, found, err := readAgentJSON(filepath.Join(workspace, "agent.json"))
	if err != nil {
		return nil, err
	}
	if found {
		return cmd, nil
	}
	if fi, err := os.Lstat(filepath.Join(workspace, "main.py")); err == nil && fi.Mode().IsRegular() {
		return []string{"python3", "main.py"}, nil
	}
	if fi, err := os.Lstat(filepath.Join(workspace, "main")); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
		return []string{"./main"}, nil
	}
	return nil, ErrNoEntrypoint
}

func readAgentJSON(path string) (cmd []string, found bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("agent.json: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("agent.json: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, false, fmt.Errorf("agent.json: not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxAgentJSON+1))
	if err != nil {
		return nil, false, fmt.Errorf("agent.json: %w", err)
	}
	if len(data) > maxAgentJSON {
		return nil, false, fmt.Errorf("agent.json: larger than %d bytes", maxAgentJSON)
	}
	var doc struct {
		Command []string `json:"command"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, false, fmt.Errorf("agent.json: %w", err)
	}
	if doc.Command == nil {
		// agent.json may carry other metadata; without a command the
		// remaining rules apply.
		return nil, false, nil
	}
	if len(doc.Command) == 0 || doc.Command[0] == "" {
		return nil, false, fmt.Errorf("agent.json: command is empty")
	}
	return doc.Command, true, nil
}
