//go:build linux

package ownership

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/bpagents/bpagents/internal/testutil"
)

func owner(t *testing.T, path string) uint32 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Uid
}

func TestGive(t *testing.T) {
	t.Parallel()
	testutil.Need(t, "root", os.Geteuid() == 0, "changing owners needs root")
	const uid = 1_900_001
	base := t.TempDir()
	ws := filepath.Join(base, "ws")
	outside := filepath.Join(base, "outside.txt")
	os.MkdirAll(filepath.Join(ws, "sub"), 0o755)
	os.WriteFile(filepath.Join(ws, "sub", "f.txt"), []byte("x"), 0o644)
	os.WriteFile(outside, []byte("host file"), 0o644)
	if err := os.Symlink(outside, filepath.Join(ws, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(outside, filepath.Join(ws, "hard")); err != nil {
		t.Fatal(err)
	}
	if err := Give(ws, uid, uid); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{ws, filepath.Join(ws, "sub"), filepath.Join(ws, "sub", "f.txt"), filepath.Join(ws, "link")} {
		if got := owner(t, p); got != uid {
			t.Errorf("%s owned by %d, want %d", p, got, uid)
		}
	}
	if got := owner(t, outside); got != 0 {
		t.Errorf("the file outside the workspace (hard- and soft-linked from it) changed owner to %d", got)
	}
	if fi, _ := os.Stat(ws); fi.Mode().Perm() != 0o700 {
		t.Errorf("workspace mode %o, want 0700", fi.Mode().Perm())
	}
}

func TestCheckDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(dir, link)
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	for _, tt := range []struct {
		path string
		ok   bool
	}{{dir, true}, {"relative", false}, {link, false}, {file, false}, {filepath.Join(dir, "missing"), false}} {
		if err := CheckDir(tt.path); (err == nil) != tt.ok {
			t.Errorf("CheckDir(%s) = %v, want ok=%v", tt.path, err, tt.ok)
		}
	}
}
