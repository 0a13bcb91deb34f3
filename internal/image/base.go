package image

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	dimage "github.com/docker/docker/api/types/image"
)

// agentUser is the image's non-root user; the docker sandbox runs agents
// under their own uid anyway, this one serves `docker run` by hand.
const (
	agentUID  = 1000
	agentName = "agent"
)

// trimmed are removed from the bootstrapped tree: package caches and
// indexes, documentation and translations nobody reads in a sandbox.
var trimmed = []string{
	"var/cache/apt", "var/lib/apt/lists", "var/cache/debconf/*-old", "var/log",
	"usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
}

// buildBase bootstraps the base root filesystem and imports it.
func buildBase(ctx context.Context, eng Engine, rec Recipe, src Source, opt Options, p *progress) error {
	if os.Geteuid() != 0 {
		return errors.New("image: building the base needs root (debootstrap creates device files and chroots); " +
			"run `bpagents image build` as root, or build runtime/Dockerfile on a host that can pull images")
	}
	tool, err := debootstrap(ctx, opt.InstallTools, p)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(opt.WorkDir, "bp-agent-base-")
	if err != nil {
		return fmt.Errorf("image: work directory: %w", err)
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "rootfs")
	args := []string{"--variant=minbase", "--components=main", "--include=" + strings.Join(rec.Packages, ",")}
	if src.Keyring != "" {
		args = append(args, "--keyring="+src.Keyring)
	}
	args = append(args, rec.Suite, root, src.URI)
	p.say("bootstrapping Debian %s with %s (debootstrap, from apt's configured archive)", rec.Suite, strings.Join(rec.Packages, ", "))
	start := time.Now()
	if err := runLogged(ctx, p, "debootstrap", tool, args...); err != nil {
		if log, rerr := os.ReadFile(filepath.Join(root, "debootstrap/debootstrap.log")); rerr == nil {
			p.say("debootstrap.log (end):\n%s", tailLines(string(log), 20))
		}
		return fmt.Errorf("image: debootstrap: %w", err)
	}
	p.say("bootstrapped in %s", time.Since(start).Round(time.Second))
	if err := prepareRoot(root); err != nil {
		return err
	}
	return importRoot(ctx, eng, root, rec, p)
}

// debootstrap returns the debootstrap program, installing it with apt-get
// when allowed.
func debootstrap(ctx context.Context, install bool, p *progress) (string, error) {
	if path, err := exec.LookPath("debootstrap"); err == nil {
		return path, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if path := filepath.Join(dir, "debootstrap"); isExecutable(path) {
			return path, nil
		}
	}
	apt, err := exec.LookPath("apt-get")
	if !install || err != nil {
		return "", errors.New("image: debootstrap is not installed; install it (apt-get install debootstrap) " +
			"or pass --install-tools")
	}
	p.say("installing debootstrap with apt-get")
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "--no-install-recommends", "debootstrap"}} {
		if err := runLoggedEnv(ctx, p, "apt-get", env, apt, args...); err != nil {
			return "", fmt.Errorf("image: apt-get %s: %w", args[0], err)
		}
	}
	for _, path := range []string{"/usr/sbin/debootstrap", "/sbin/debootstrap"} {
		if isExecutable(path) {
			return path, nil
		}
	}
	return "", errors.New("image: apt-get installed debootstrap but it is not in /usr/sbin")
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// prepareRoot trims the tree, forgets the host's apt and DNS settings and
// adds the agent user.
func prepareRoot(root string) error {
	for _, pattern := range trimmed {
		matches, _ := filepath.Glob(filepath.Join(root, pattern))
		for _, m := range matches {
			if err := os.RemoveAll(m); err != nil {
				return fmt.Errorf("image: trim: %w", err)
			}
		}
	}
	for _, d := range []string{"var/cache/apt/archives/partial", "var/lib/apt/lists/partial", "var/log/apt", "workspace"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return fmt.Errorf("image: %w", err)
		}
	}
	// The host's archive and resolver are nobody's business inside a sandbox
	// (the engine mounts its own resolv.conf over the file anyway).
	for _, f := range []string{"etc/apt/sources.list", "etc/resolv.conf", "etc/hostname"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			return fmt.Errorf("image: %w", err)
		}
	}
	adds := []struct{ file, line string }{
		{"etc/passwd", fmt.Sprintf("%s:x:%d:%d:bpagents agent:/workspace:/usr/sbin/nologin\n", agentName, agentUID, agentUID)},
		{"etc/group", fmt.Sprintf("%s:x:%d:\n", agentName, agentUID)},
		{"etc/shadow", agentName + ":!:19000:0:99999:7:::\n"},
	}
	for _, a := range adds {
		if err := appendAccount(filepath.Join(root, a.file), a.line); err != nil {
			return err
		}
	}
	return nil
}

// appendAccount adds line to an account file unless its name is there.
func appendAccount(path, line string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	name, _, _ := strings.Cut(line, ":")
	for l := range strings.Lines(string(data)) {
		if strings.HasPrefix(l, name+":") {
			return nil
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	_, err = f.WriteString(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	return nil
}

// importRoot streams root as a tar archive into the engine as the base image.
func importRoot(ctx context.Context, eng Engine, root string, rec Recipe, p *progress) error {
	p.say("importing the root filesystem as %s", rec.BaseRef())
	start := time.Now()
	pr, pw := io.Pipe()
	counter := &countingWriter{w: pw, p: p, every: 32 << 20, what: "imported"}
	go func() { pw.CloseWithError(writeTree(counter, root)) }()
	rc, err := eng.ImageImport(ctx, dimage.ImportSource{SourceName: "-", Source: pr}, rec.BaseRef(), dimage.ImportOptions{
		Changes: []string{
			fmt.Sprintf("LABEL %s=%s", LabelBaseHash, rec.BaseHash),
			fmt.Sprintf("LABEL org.bpagents.suite=%s", rec.Suite),
		},
		Message: "bpagents image build: Debian " + rec.Suite + " with " + strings.Join(rec.Packages, ", "),
	})
	if err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("image: import base: %w", err)
	}
	defer rc.Close()
	if err := readMessages(rc, p, ""); err != nil {
		return fmt.Errorf("image: import base: %w", err)
	}
	p.say("imported %s (%d MiB) in %s", rec.BaseRef(), counter.n>>20, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// runLogged runs a tool, passing its output to p a phase at a time.
func runLogged(ctx context.Context, p *progress, name, path string, args ...string) error {
	return runLoggedEnv(ctx, p, name, nil, path, args...)
}

func runLoggedEnv(ctx context.Context, p *progress, name string, env []string, path string, args ...string) error {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	phases := &phaseLog{p: p, name: name}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		phases.line(sc.Text())
	}
	phases.flush()
	return cmd.Wait()
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
