//go:build linux

package process

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// exposeWorkspace makes the workspace reachable at its own path by an agent
// running as uid:gid, inside the sandbox's private mount namespace.
//
// The host path to a workspace often crosses a directory the agent may not
// search (a 0700 home such as /root, or a private temporary directory). The
// first such ancestor is covered, in this namespace only, by a small
// read-only tmpfs holding just the directories down to the workspace, and the
// workspace is bind-mounted there. The agent then sees its workspace at the
// same absolute path as the host (so ENV_JSON_PATH and HOME hold), and sees
// nothing else that lives under the covered directory: not the database, not
// the operator token, not other agents' workspaces.
func exposeWorkspace(dir string, uid, gid int) error {
	blocked, err := firstUnsearchable(dir, uid, gid)
	if err != nil || blocked == "" {
		return err
	}
	// Hold the workspace before covering the directory above it.
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("expose workspace: open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Mount("tmpfs", blocked, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=64k,nr_inodes=256"); err != nil {
		return fmt.Errorf("expose workspace: cover %s: %w", blocked, err)
	}
	rel, err := filepath.Rel(blocked, dir)
	if err != nil {
		return fmt.Errorf("expose workspace: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(blocked, rel), 0o755); err != nil {
		return fmt.Errorf("expose workspace: %w", err)
	}
	src := fmt.Sprintf("/proc/self/fd/%d", fd)
	if err := unix.Mount(src, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("expose workspace: bind %s: %w", dir, err)
	}
	// The skeleton itself is read-only; the workspace mount stays writable.
	if err := unix.Mount("", blocked, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("expose workspace: read-only %s: %w", blocked, err)
	}
	return nil
}

// firstUnsearchable returns the highest ancestor of dir (not dir itself) that
// uid:gid may not search, or "" when the whole path is open to it.
func firstUnsearchable(dir string, uid, gid int) (string, error) {
	clean := filepath.Clean(dir)
	if !filepath.IsAbs(clean) {
		return "", fmt.Errorf("expose workspace: %q is not absolute", dir)
	}
	parts := strings.Split(strings.TrimPrefix(clean, "/"), "/")
	cur := "/"
	for _, part := range parts[:len(parts)-1] {
		cur = filepath.Join(cur, part)
		var st unix.Stat_t
		if err := unix.Stat(cur, &st); err != nil {
			return "", fmt.Errorf("expose workspace: %w", err)
		}
		if !searchable(&st, uid, gid) {
			return cur, nil
		}
	}
	return "", nil
}

func searchable(st *unix.Stat_t, uid, gid int) bool {
	switch {
	case int(st.Uid) == uid:
		return st.Mode&0o100 != 0
	case int(st.Gid) == gid:
		return st.Mode&0o010 != 0
	default:
		return st.Mode&0o001 != 0
	}
}
