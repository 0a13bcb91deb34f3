package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/bpagents/bpagents"
	"github.com/bpagents/bpagents/internal/config"
	"github.com/bpagents/bpagents/internal/image"
	"github.com/bpagents/bpagents/internal/sandbox/docker"
)

func cmdImage(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "build" {
		fmt.Fprintln(os.Stderr, "Usage: bpagents image build [flags]")
		return fmt.Errorf("unknown image command %v (known: build)", args)
	}
	fs := flag.NewFlagSet("image build", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: bpagents image build [--tag NAME] [--suite SUITE] [--mirror URL] [--force] [--no-install]")
		fmt.Fprintln(fs.Output(), "\nBuilds the bp-agent-runner image without a container registry: a minimal Debian base")
		fmt.Fprintln(fs.Output(), "(debootstrap, from the archive in apt's configuration) with python3 and the packages of")
		fmt.Fprintln(fs.Output(), "runtime/pyproject.toml, imported into the Docker Engine, with runtime/Dockerfile.debian")
		fmt.Fprintln(fs.Output(), "built on top. Does nothing when an image built from the same content exists. Needs root.")
		fs.PrintDefaults()
	}
	var (
		cfgPath   = fs.String("config", "", "YAML configuration file (for docker.image and docker.host)")
		tag       = fs.String("tag", "", "image name (default: docker.image, bp-agent-runner:latest)")
		suite     = fs.String("suite", "", "Debian suite (default: the release suite in apt's sources)")
		mirror    = fs.String("mirror", "", "Debian archive URL (default: the one in apt's sources)")
		workDir   = fs.String("workdir", "/var/tmp", "directory for the temporary root filesystem (on disk)")
		force     = fs.Bool("force", false, "rebuild even when an image of the same content exists")
		noInstall = fs.Bool("no-install", false, "fail instead of installing debootstrap with apt-get when it is missing")
	)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath, os.Environ())
	if err != nil {
		return err
	}
	if *tag == "" {
		*tag = cfg.Docker.Image
	}
	cli, err := docker.NewClient(cfg.Docker.Host)
	if err != nil {
		return err
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx); err != nil {
		return fmt.Errorf("docker engine at %s: %w", cli.DaemonHost(), err)
	}
	res, err := image.Build(ctx, cli, bpagents.RunnerImage(), image.Options{
		Tag: *tag, Suite: *suite, Mirror: *mirror, WorkDir: *workDir, Force: *force,
		InstallTools: !*noInstall, Progress: os.Stderr,
	})
	if err != nil {
		return err
	}
	state := "built"
	if res.Reused {
		state = "reused"
	}
	fmt.Printf("%s %s %s (content %s, base %s)\n", state, res.Tag, res.ID, res.ContentHash[:12], res.Base)
	return nil
}
