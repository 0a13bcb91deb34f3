package agents

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/fstest"
)

var lim = Limits{MaxFiles: 10, MaxBytes: 1000}

func TestValidateFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		path  string // the path the *FileError must name; "-" when valid
	}{
		{"plain", map[string]string{"main.py": "print(1)", "lib/util.py": "", "a/b/c/d.txt": "x"}, "-"},
		{"nested env.json is an ordinary file", map[string]string{"sub/env.json": "{}"}, "-"},
		{"dotfile", map[string]string{".hidden": "x", "dir/.gitignore": "x"}, "-"},
		{"three dots are a name", map[string]string{"...": "x"}, "-"},
		{"none", map[string]string{}, "-"},
		{"nil", nil, "-"},
		{"empty name", map[string]string{"": "x"}, ""},
		{"absolute", map[string]string{"/etc/passwd": "x"}, "/etc/passwd"},
		{"dot dot", map[string]string{"..": "x"}, ".."},
		{"leading dot dot", map[string]string{"../sibling/main.py": "x"}, "../sibling/main.py"},
		{"inner dot dot", map[string]string{"a/../b": "x"}, "a/../b"},
		{"trailing dot dot", map[string]string{"a/..": "x"}, "a/.."},
		{"dot", map[string]string{".": "x"}, "."},
		{"dot slash", map[string]string{"./x": "x"}, "./x"},
		{"inner dot", map[string]string{"a/./b": "x"}, "a/./b"},
		{"trailing slash", map[string]string{"x/": "x"}, "x/"},
		{"double slash", map[string]string{"a//b": "x"}, "a//b"},
		{"backslash", map[string]string{`a\b`: "x"}, `a\b`},
		{"windows escape", map[string]string{`..\..\x`: "x"}, `..\..\x`},
		{"NUL", map[string]string{"a\x00b": "x"}, "a\x00b"},
		{"env.json", map[string]string{"env.json": "{}"}, "env.json"},
		{"long name", map[string]string{strings.Repeat("a", 256): "x"}, strings.Repeat("a", 256)},
		{"too many", map[string]string{"1": "", "2": "", "3": "", "4": "", "5": "", "6": "", "7": "", "8": "", "9": "", "10": "", "11": ""}, ""},
		{"too big", map[string]string{"a": strings.Repeat("x", 600), "b": strings.Repeat("x", 401)}, ""},
		{"file and directory clash", map[string]string{"lib": "x", "lib/util.py": "y"}, "lib/util.py"},
		{"deep clash", map[string]string{"a": "", "a/b/c/d": ""}, "a/b/c/d"},
		{"bad name among good ones", map[string]string{"ok.py": "x", "also/ok": "y", "../bad": "z"}, "../bad"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := ValidateFiles(tc.files, lim)
			if tc.path == "-" {
				if err != nil {
					t.Fatalf("refused a valid payload: %v", err)
				}
				return
			}
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v (%T), want *FileError", err, err)
			}
			if fe.Path != tc.path || fe.Msg == "" {
				t.Fatalf("FileError %+v, want path %q", fe, tc.path)
			}
		})
	}
	// Exactly at the limits is fine.
	at := map[string]string{"a": strings.Repeat("x", 500), "b": strings.Repeat("x", 500)}
	if err := ValidateFiles(at, lim); err != nil {
		t.Fatalf("payload at the byte limit refused: %v", err)
	}
}

// tree writes files (path → content; a value starting with "->" makes a
// symlink to the rest) under a new directory.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// contents reads every entry under dir: files by content, directories as
// "<dir>", anything else by its type.
func contents(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			out[rel] = "<dir>"
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = string(data)
		default:
			out[rel] = "<" + d.Type().String() + ">"
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameMap(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: %q = %q, want %q (all: %v)", what, k, got[k], v, got)
		}
	}
}

func TestCopyWorkspace(t *testing.T) {
	t.Parallel()
	outside := tree(t, map[string]string{"secret.txt": "host secret"})
	src := tree(t, map[string]string{
		"main.py":          "print(1)",
		"env.json":         `{"token":"bpt_secret"}`,
		"lib/env.json":     "a nested env.json is the agent's own file",
		"lib/util.py":      "X = 1",
		"link-to-secret":   "->" + filepath.Join(outside, "secret.txt"),
		"link-to-dir":      "->" + outside,
		"dangling":         "->/nonexistent",
		"lib/relative":     "->../main.py",
		"empty/.keep":      "",
		"deep/a/b/c/d.txt": "deep",
	})
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "main.py"), 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "child")
	if err := CopyWorkspace(src, dst, Limits{MaxFiles: 100, MaxBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	sameMap(t, "copy", contents(t, dst), map[string]string{
		"main.py": "print(1)", "lib": "<dir>", "lib/env.json": "a nested env.json is the agent's own file",
		"lib/util.py": "X = 1", "empty": "<dir>", "empty/.keep": "", "deep": "<dir>", "deep/a": "<dir>",
		"deep/a/b": "<dir>", "deep/a/b/c": "<dir>", "deep/a/b/c/d.txt": "deep",
	})
	if info, err := os.Stat(filepath.Join(dst, "main.py")); err != nil || info.Mode().Perm()&0o100 == 0 {
		t.Fatalf("executable bit lost: %v %v", info.Mode(), err)
	}
	if info, _ := os.Stat(filepath.Join(dst, "lib/util.py")); info.Mode().Perm()&0o111 != 0 {
		t.Fatalf("plain file became executable: %v", info.Mode())
	}

	// dst must not exist: a copy never merges into an existing workspace.
	if err := CopyWorkspace(src, dst, Limits{MaxFiles: 100, MaxBytes: 1 << 20}); err == nil {
		t.Fatal("copied into an existing directory")
	}
	if got := contents(t, dst); got["main.py"] != "print(1)" {
		t.Fatalf("failed copy damaged the existing workspace: %v", got)
	}
}

func TestCopyWorkspaceLimits(t *testing.T) {
	t.Parallel()
	src := tree(t, map[string]string{"a": strings.Repeat("x", 400), "b": strings.Repeat("y", 400),
		"sub/c": strings.Repeat("z", 200), "env.json": strings.Repeat("e", 5000)})
	tests := []struct {
		name string
		lim  Limits
		ok   bool
	}{
		{"fits exactly", Limits{MaxFiles: 3, MaxBytes: 1000}, true},
		{"env.json does not count", Limits{MaxFiles: 3, MaxBytes: 1000}, true},
		{"one file too many", Limits{MaxFiles: 2, MaxBytes: 1 << 20}, false},
		{"one byte too many", Limits{MaxFiles: 100, MaxBytes: 999}, false},
		{"nothing allowed", Limits{MaxFiles: 0, MaxBytes: 0}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dst := filepath.Join(t.TempDir(), "child")
			err := CopyWorkspace(src, dst, tc.lim)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("err = %v, want ErrTooLarge", err)
			}
			if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a refused copy left %s behind: %v", dst, err)
			}
		})
	}
}

func TestCopyWorkspaceMissingSource(t *testing.T) {
	t.Parallel()
	dst := filepath.Join(t.TempDir(), "child")
	if err := CopyWorkspace(filepath.Join(t.TempDir(), "nope"), dst, lim); err == nil {
		t.Fatal("copied a missing workspace")
	}
	if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("failed copy left %s: %v", dst, err)
	}
}

func TestInstall(t *testing.T) {
	t.Parallel()
	project := fstest.MapFS{
		"main.py":      {Data: []byte("print('genesis')"), Mode: 0o755},
		"lib/util.py":  {Data: []byte("X = 1"), Mode: 0o644},
		"docs/README":  {Data: []byte("read me"), Mode: 0o644},
		"empty-dir":    {Mode: fs.ModeDir | 0o755},
		"weird-socket": {Mode: fs.ModeSocket},
	}
	dst := filepath.Join(t.TempDir(), "genesis")
	ok, err := Install(project, dst, lim)
	if err != nil || !ok {
		t.Fatalf("Install = %v, %v", ok, err)
	}
	sameMap(t, "installed", contents(t, dst), map[string]string{
		"main.py": "print('genesis')", "lib": "<dir>", "lib/util.py": "X = 1", "docs": "<dir>",
		"docs/README": "read me", "empty-dir": "<dir>",
	})
	if info, _ := os.Stat(filepath.Join(dst, "main.py")); info.Mode().Perm()&0o100 == 0 {
		t.Fatalf("executable bit lost: %v", info.Mode())
	}

	// The agent rewrites its code; a second install leaves it alone.
	if err := os.WriteFile(filepath.Join(dst, "main.py"), []byte("evolved"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dst, "lib", "util.py")); err != nil {
		t.Fatal(err)
	}
	ok, err = Install(project, dst, lim)
	if err != nil || ok {
		t.Fatalf("second Install = %v, %v; want false, nil", ok, err)
	}
	got := contents(t, dst)
	if got["main.py"] != "evolved" || got["lib/util.py"] != "" {
		t.Fatalf("Install touched a non-empty workspace: %v", got)
	}

	// A workspace that holds only a hidden file is not empty either.
	hidden := tree(t, map[string]string{".history": "x"})
	if ok, err := Install(project, hidden, lim); err != nil || ok {
		t.Fatalf("Install into a workspace with a dotfile = %v, %v", ok, err)
	}
	// An existing empty directory is filled.
	emptyDir := t.TempDir()
	if ok, err := Install(project, emptyDir, lim); err != nil || !ok {
		t.Fatalf("Install into an empty directory = %v, %v", ok, err)
	}
	// Limits apply.
	_, err = Install(project, filepath.Join(t.TempDir(), "small"), Limits{MaxFiles: 2, MaxBytes: 1 << 20})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Install over the file limit: %v", err)
	}
}

func TestIsEmpty(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cases := []struct {
		name  string
		path  string
		empty bool
	}{
		{"missing", filepath.Join(dir, "missing"), true},
		{"empty", t.TempDir(), true},
		{"one file", tree(t, map[string]string{"x": ""}), false},
		{"one empty subdirectory", tree(t, map[string]string{"sub/.keep": ""}), false},
	}
	for _, tc := range cases {
		if got, err := IsEmpty(tc.path); err != nil || got != tc.empty {
			t.Errorf("IsEmpty(%s) = %v, %v; want %v", tc.name, got, err, tc.empty)
		}
	}
}

func TestWorkspacesDir(t *testing.T) {
	t.Parallel()
	w := Workspaces{Root: "/srv/ws"}
	if w.Dir("genesis") != "/srv/ws/genesis" || w.Dir("k3x9") != "/srv/ws/agent-k3x9" {
		t.Fatalf("Dir: %s %s", w.Dir("genesis"), w.Dir("k3x9"))
	}
	root := filepath.Join(t.TempDir(), "a", "b")
	if err := (Workspaces{Root: root}).Prepare(); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(root); err != nil || !info.IsDir() {
		t.Fatalf("Prepare did not create %s: %v", root, err)
	}
}

func TestWriteFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := map[string]string{"main.py": "#!/usr/bin/env python3\nprint(1)\n", "a/b/c.txt": "c", "empty": ""}
	if err := ValidateFiles(files, lim); err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(dir, files); err != nil {
		t.Fatal(err)
	}
	sameMap(t, "written", contents(t, dir), map[string]string{"main.py": files["main.py"], "a": "<dir>", "a/b": "<dir>",
		"a/b/c.txt": "c", "empty": ""})
	if info, _ := os.Stat(filepath.Join(dir, "main.py")); info.Mode().Perm()&0o100 == 0 {
		t.Fatalf("script with a shebang is not executable: %v", info.Mode())
	}
	// Overwrite a regular file.
	if err := WriteFiles(dir, map[string]string{"a/b/c.txt": "new"}); err != nil {
		t.Fatal(err)
	}
	// Never write through a link the workspace holds.
	outside := tree(t, map[string]string{"target": "untouched"})
	if err := os.Symlink(filepath.Join(outside, "target"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	err := WriteFiles(dir, map[string]string{"link": "overwritten"})
	var fe *FileError
	if !errors.As(err, &fe) || fe.Path != "link" {
		t.Fatalf("writing over a link: err = %v, want *FileError for link", err)
	}
	if data, _ := os.ReadFile(filepath.Join(outside, "target")); string(data) != "untouched" {
		t.Fatalf("wrote through the link: %q", data)
	}
	if leftovers := tmpFiles(t, dir); len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
}

// tmpFiles lists WriteEnv/WriteFiles temporaries anywhere under dir.
func tmpFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for name := range contents(t, dir) {
		if strings.Contains(filepath.Base(name), ".bpagents-") {
			out = append(out, name)
		}
	}
	return out
}

func TestWriteEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]any{"schema_version": 1, "agent_id": "genesis", "credits": 812.5}
	path, err := WriteEnv(dir, env)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, EnvFile) {
		t.Fatalf("path %s", path)
	}
	var got map[string]any
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &got); err != nil || got["agent_id"] != "genesis" || got["credits"] != 812.5 {
		t.Fatalf("env.json = %s, %v", data, err)
	}
	info, _ := os.Stat(path)
	if info.Mode().Perm() != 0o644 {
		t.Fatalf("env.json mode %v, want 0644", info.Mode().Perm())
	}
	// Unmarshalable input fails without touching the existing file.
	if _, err := WriteEnv(dir, map[string]any{"bad": make(chan int)}); err == nil {
		t.Fatal("WriteEnv accepted a value JSON cannot encode")
	}
	if again, _ := os.ReadFile(path); string(again) != string(data) {
		t.Fatal("a failed WriteEnv changed env.json")
	}
	if _, err := WriteEnv(filepath.Join(dir, "missing"), env); err == nil {
		t.Fatal("WriteEnv into a missing directory succeeded")
	}
	if leftovers := tmpFiles(t, dir); len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
}

func TestWriteEnvReplacesLinkWithoutFollowing(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"file", "dangling", "directory"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			outside := tree(t, map[string]string{"victim": "do not touch"})
			target := filepath.Join(outside, "victim")
			switch kind {
			case "dangling":
				target = filepath.Join(outside, "would-be-created")
			case "directory":
				target = outside
			}
			if err := os.Symlink(target, filepath.Join(dir, EnvFile)); err != nil {
				t.Fatal(err)
			}
			if _, err := WriteEnv(dir, map[string]any{"agent_id": "a"}); err != nil {
				t.Fatal(err)
			}
			info, err := os.Lstat(filepath.Join(dir, EnvFile))
			if err != nil || !info.Mode().IsRegular() {
				t.Fatalf("env.json is %v after WriteEnv, want a regular file (%v)", info.Mode(), err)
			}
			sameMap(t, "outside the workspace", contents(t, outside), map[string]string{"victim": "do not touch"})
		})
	}
}

// TestWriteEnvIsAtomic rewrites env.json many times while readers watch: a
// reader must always see one complete document, never a partial one.
func TestWriteEnvIsAtomic(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	big := strings.Repeat("x", 64<<10) // large enough that a plain write is not atomic
	if _, err := WriteEnv(dir, map[string]any{"n": 0, "pad": big}); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var bad atomic.Int64
	var reads atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				data, err := os.ReadFile(filepath.Join(dir, EnvFile))
				if err != nil {
					bad.Add(1)
					continue
				}
				var doc struct {
					N   int    `json:"n"`
					Pad string `json:"pad"`
				}
				if json.Unmarshal(data, &doc) != nil || len(doc.Pad) != len(big) {
					bad.Add(1)
				}
				reads.Add(1)
			}
		})
	}
	for i := 1; i <= 60; i++ {
		if _, err := WriteEnv(dir, map[string]any{"n": i, "pad": big}); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() > 0 {
		t.Fatalf("%d of %d reads saw a missing or partial env.json", bad.Load(), reads.Load())
	}
	if leftovers := tmpFiles(t, dir); len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
}
