// Package agents owns agents' places on the host: workspace directories, the
// genesis project installed into the first one, copies made for children,
// files given to children, and the env.json handshake file.
//
// Workspaces hold untrusted content, so this package never follows a symbolic
// link found in one, never writes outside the workspace it was given, and
// never overwrites a workspace that already has files. It does not touch the
// database or credits.
package agents

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// EnvFile is the handshake file written into a workspace before each execution.
const EnvFile = "env.json"

// Workspaces manages the directory that holds every agent's workspace.
type Workspaces struct {
	Root string
}

// Limits bound what may be copied or written into a workspace.
type Limits struct {
	MaxFiles int
	MaxBytes int64
}

// FileError says which given file was refused and why.
type FileError struct {
	Path string
	Msg  string
}

func (e *FileError) Error() string { return fmt.Sprintf("file %q: %s", e.Path, e.Msg) }

// ErrTooLarge means a copy or payload exceeds Limits.
var ErrTooLarge = errors.New("workspace content exceeds the limits")

// Dir returns the workspace path of an agent: "genesis" for genesis,
// "agent-<id>" for everyone else.
func (w Workspaces) Dir(agentID string) string {
	if agentID == "genesis" {
		return filepath.Join(w.Root, "genesis")
	}
	return filepath.Join(w.Root, "agent-"+agentID)
}

// Prepare creates the root directory.
func (w Workspaces) Prepare() error {
	if err := os.MkdirAll(w.Root, 0o755); err != nil {
		return fmt.Errorf("workspaces: %w", err)
	}
	return nil
}

// IsEmpty reports whether dir is missing or holds no entries.
func IsEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

// Install copies a project (for example the embedded genesis) into dst.
// When dst already has files it is left untouched and Install reports false:
// agents may have rewritten their own code.
func Install(project fs.FS, dst string, lim Limits) (bool, error) {
	empty, err := IsEmpty(dst)
	if err != nil {
		return false, err
	}
	if !empty {
		return false, nil
	}
	// Build the copy beside dst and rename it into place, so a failure never
	// leaves a half-installed workspace that a later start would keep.
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return false, err
	}
	stage, err := os.MkdirTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".installing-")
	if err != nil {
		return false, err
	}
	if err := os.Chmod(stage, 0o755); err != nil {
		os.RemoveAll(stage)
		return false, err
	}
	if err := installInto(project, stage, lim); err != nil {
		os.RemoveAll(stage)
		return false, fmt.Errorf("install into %s: %w", dst, err)
	}
	if err := os.Remove(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		os.RemoveAll(stage)
		return false, fmt.Errorf("install into %s: %w", dst, err)
	}
	if err := os.Rename(stage, dst); err != nil {
		os.RemoveAll(stage)
		return false, fmt.Errorf("install into %s: %w", dst, err)
	}
	return true, nil
}

func installInto(project fs.FS, dst string, lim Limits) error {
	files, total := 0, int64(0)
	return fs.WalkDir(project, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		target := filepath.Join(dst, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := fs.ReadFile(project, p)
		if err != nil {
			return err
		}
		files++
		total += int64(len(data))
		if files > lim.MaxFiles || total > lim.MaxBytes {
			return ErrTooLarge
		}
		mode := fs.FileMode(0o644)
		if info, err := d.Info(); err == nil && info.Mode().Perm()&0o111 != 0 {
			mode = 0o755
		}
		return os.WriteFile(target, data, mode)
	})
}

// CopyWorkspace copies src into a new directory dst, leaving out env.json,
// symbolic links and special files, within lim. dst must not exist.
func CopyWorkspace(src, dst string, lim Limits) error {
	if err := os.Mkdir(dst, 0o755); err != nil {
		return fmt.Errorf("copy workspace: %w", err)
	}
	files, total := 0, int64(0)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			return nil // never follow or reproduce links
		case d.IsDir():
			return os.Mkdir(target, 0o755)
		case !d.Type().IsRegular():
			return nil
		case rel == EnvFile:
			return nil
		}
		files++
		if files > lim.MaxFiles {
			return fmt.Errorf("%w: more than %d files", ErrTooLarge, lim.MaxFiles)
		}
		n, err := copyFile(p, target, lim.MaxBytes-total)
		total += n
		return err
	})
	if err != nil {
		os.RemoveAll(dst)
		return fmt.Errorf("copy workspace %s: %w", filepath.Base(src), err)
	}
	return nil
}

// copyFile copies one regular file without following links, refusing to
// copy more than budget bytes.
func copyFile(src, dst string, budget int64) (int64, error) {
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return 0, err
	}
	if !info.Mode().IsRegular() {
		return 0, nil
	}
	if info.Size() > budget {
		return 0, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, budget)
	}
	mode := fs.FileMode(0o644)
	if info.Mode().Perm()&0o111 != 0 {
		mode = 0o755
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, io.LimitReader(in, budget+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > budget {
		err = fmt.Errorf("%w: more than %d bytes", ErrTooLarge, budget)
	}
	return n, err
}

// ValidateFiles checks a files payload (relative path → content): each name
// must be a clean relative path inside the workspace, and the total within lim.
func ValidateFiles(files map[string]string, lim Limits) error {
	if len(files) > lim.MaxFiles {
		return &FileError{Path: "", Msg: fmt.Sprintf("%d files given, at most %d allowed", len(files), lim.MaxFiles)}
	}
	var total int64
	for name, content := range files {
		if err := validName(name); err != nil {
			return err
		}
		total += int64(len(content))
		// A name cannot be both a file and a directory holding another file.
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if _, clash := files[dir]; clash {
				return &FileError{Path: name, Msg: fmt.Sprintf("%q is also given as a file", dir)}
			}
		}
	}
	if total > lim.MaxBytes {
		return &FileError{Path: "", Msg: fmt.Sprintf("files total %d bytes, at most %d allowed", total, lim.MaxBytes)}
	}
	return nil
}

func validName(name string) error {
	bad := func(msg string) error { return &FileError{Path: name, Msg: msg} }
	switch {
	case name == "":
		return bad("empty name")
	case len(name) > 255:
		return bad("name longer than 255 bytes")
	case strings.ContainsRune(name, 0) || strings.Contains(name, "\\"):
		return bad("name contains a NUL or backslash")
	case strings.HasPrefix(name, "/"):
		return bad("absolute paths are not allowed")
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return bad("'..' is not allowed")
		}
	}
	if path.Clean(name) != name || name == "." {
		return bad("name must be a clean relative path (no '.', '//' or trailing '/')")
	}
	if name == EnvFile {
		return bad("env.json is written by the system")
	}
	return nil
}

// WriteFiles writes a validated files payload into dir, creating
// subdirectories. It refuses to write through an existing link.
func WriteFiles(dir string, files map[string]string) error {
	for name, content := range files {
		target := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		if fi, err := os.Lstat(target); err == nil && !fi.Mode().IsRegular() {
			return &FileError{Path: name, Msg: "exists and is not a regular file"}
		}
		mode := fs.FileMode(0o644)
		if strings.HasPrefix(content, "#!") {
			mode = 0o755
		}
		if err := writeAtomic(target, []byte(content), mode); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// WriteEnv writes env.json atomically: a new temporary file in the same
// directory, then a rename over the old one. A link the agent left at
// env.json is replaced, never followed.
func WriteEnv(dir string, env any) (string, error) {
	data, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return "", fmt.Errorf("env.json: %w", err)
	}
	target := filepath.Join(dir, EnvFile)
	if err := writeAtomic(target, append(data, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("env.json: %w", err)
	}
	return target, nil
}

func writeAtomic(target string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(target)
	f, err := os.CreateTemp(dir, ".bpagents-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, target); err != nil {
		return err
	}
	ok = true
	return nil
}
