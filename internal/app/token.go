package app

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/bpagents/bpagents/internal/ids"
)

// OperatorTokenFile is the operator token's file name in the data directory.
const OperatorTokenFile = "operator.token"

// EnsureOperatorToken returns the operator token kept in dataDir, creating it
// with mode 0600 on first start. A token file readable by others is refused.
// Processes sharing the directory may start together: the file appears
// whole (written aside, then linked into place) and the first one wins.
func EnsureOperatorToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, OperatorTokenFile)
	tok, err := ReadOperatorToken(path)
	if err == nil {
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	tok = ids.Token()
	f, err := os.CreateTemp(dataDir, "."+OperatorTokenFile+"-*")
	if err != nil {
		return "", fmt.Errorf("operator token: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("operator token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("operator token: %w", err)
	}
	// CreateTemp made it 0600; a link never replaces an existing file.
	if err := os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
		return ReadOperatorToken(path)
	} else if err != nil {
		return "", fmt.Errorf("operator token: %w", err)
	}
	return tok, nil
}

// ReadOperatorToken reads a token file, refusing one that group or others can read.
func ReadOperatorToken(path string) (string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if info.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("operator token %s has mode %o: it must be 0600", path, info.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("operator token %s is empty", path)
	}
	return tok, nil
}
