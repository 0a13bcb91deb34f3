//go:build linux

package process

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// checkWorkspace verifies that ws is an absolute path to a real directory
// (not a symbolic link).
func checkWorkspace(ws string) error {
	if !filepath.IsAbs(ws) {
		return fmt.Errorf("workspace %q: not an absolute path", ws)
	}
	fi, err := os.Lstat(ws)
	if err != nil {
		return fmt.Errorf("workspace: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("workspace %q: not a directory", ws)
	}
	return nil
}

// ownWorkspace gives the workspace and everything in it to uid:gid and
// makes the workspace itself mode 0700, so that only its agent can enter it.
// It never follows a symbolic link (Lchown changes the link itself), and it
// leaves alone any non-directory with several hard links that the agent does
// not own already: such a link could point at a file outside the workspace.
func ownWorkspace(ws string, uid, gid int) error {
	err := filepath.WalkDir(ws, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no ownership information", path)
		}
		if int(st.Uid) == uid && int(st.Gid) == gid {
			return nil
		}
		if !d.IsDir() && st.Nlink > 1 {
			return nil
		}
		if err := os.Lchown(path, uid, gid); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("own workspace: %w", err)
	}
	// The walk checked the root is a directory, not a link; chmod follows
	// links, so check again right before it.
	if err := checkWorkspace(ws); err != nil {
		return err
	}
	if err := os.Chmod(ws, 0o700); err != nil {
		return fmt.Errorf("own workspace: %w", err)
	}
	return nil
}
