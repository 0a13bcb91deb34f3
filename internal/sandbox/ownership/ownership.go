//go:build linux

// Package ownership owns handing an agent's workspace to the user id the
// agent runs as: the workspace and everything in it belong to that uid and
// the workspace is mode 0700, so no other agent's uid can enter it, while the
// host operator (root) keeps full use of the files. Sandbox backends that run
// each agent under its own uid share it.
//
// It must never follow a symbolic link inside a workspace, change a file
// outside the workspace (a hard link to one is left alone) or decide which
// uid an agent gets.
package ownership

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// CheckDir verifies that ws is an absolute path to a real directory
// (not a symbolic link).
func CheckDir(ws string) error {
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

// Give gives the workspace and everything in it to uid:gid and
// makes the workspace itself mode 0700, so that only its agent can enter it.
// It never follows a symbolic link (Lchown changes the link itself), and it
// leaves alone any non-directory with several hard links that the agent does
// not own already: such a link could point at a file outside the workspace.
func Give(ws string, uid, gid int) error {
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
	if err := CheckDir(ws); err != nil {
		return err
	}
	if err := os.Chmod(ws, 0o700); err != nil {
		return fmt.Errorf("own workspace: %w", err)
	}
	return nil
}
