package docker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/client"
)

// probeTimeout bounds each question Probe asks the engine.
const probeTimeout = 5 * time.Second

// NewClient returns a client of the engine at host (empty: DOCKER_HOST or
// the local socket) that negotiates the API version with its first request,
// so it works with engines older than the SDK.
func NewClient(host string) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return cli, nil
}

// Probe asks the engine at host for real: a ping, then whether it holds
// image. It returns nil when both answer yes, else an error wrapping
// ErrEngineUnavailable or ErrImageMissing that says what is missing.
func Probe(ctx context.Context, host, image string) error {
	cli, err := NewClient(host)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrEngineUnavailable, err)
	}
	defer cli.Close()
	return probe(ctx, cli, image)
}

func probe(ctx context.Context, cli *client.Client, image string) error {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	ping, err := cli.Ping(pctx)
	if err != nil {
		return fmt.Errorf("%w: ping %s: %w", ErrEngineUnavailable, cli.DaemonHost(), err)
	}
	if ping.APIVersion == "" {
		return fmt.Errorf("%w: %s answered the ping without an API version", ErrEngineUnavailable, cli.DaemonHost())
	}
	cli.NegotiateAPIVersionPing(ping)
	if _, err := cli.ImageInspect(pctx, image); err != nil {
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("%w: no image %s (build it with `bpagents image build`)", ErrImageMissing, image)
		}
		return fmt.Errorf("%w: inspect image %s: %w", ErrEngineUnavailable, image, err)
	}
	return nil
}

// IsUnavailable reports whether err says the engine or the image is absent
// (as opposed to a failure while using them).
func IsUnavailable(err error) bool {
	return errors.Is(err, ErrEngineUnavailable) || errors.Is(err, ErrImageMissing)
}
