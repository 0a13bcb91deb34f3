package docker

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// ReapOrphans implements sandbox.ExecutionSandbox: it removes (killing
// first) every container labelled with this instance that this Sandbox did
// not start, and their parent cgroups, and returns their execution ids.
func (s *Sandbox) ReapOrphans(ctx context.Context) ([]string, error) {
	list, err := s.cli.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", LabelInstance+"="+s.cfg.InstanceID)),
	})
	if err != nil {
		return nil, fmt.Errorf("docker sandbox: reap orphans: list containers: %w", err)
	}
	found := map[string]bool{}
	var errs []error
	for _, c := range list {
		id := c.Labels[LabelExecution]
		if c.Labels[LabelInstance] != s.cfg.InstanceID || s.isActive(id) {
			continue
		}
		err := s.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.ID[:12], err))
			continue
		}
		if id != "" {
			found[id] = true
		}
	}
	if s.acct != nil {
		for _, id := range s.acct.executions() {
			if s.isActive(id) {
				continue
			}
			errs = append(errs, s.acct.remove(id))
			found[id] = true
		}
	}
	ids := make([]string, 0, len(found))
	for id := range found {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(ids) > 0 {
		s.log.Info("reaped orphaned sandboxes", "count", len(ids), "execution_ids", ids)
	}
	if err := errors.Join(errs...); err != nil {
		return ids, fmt.Errorf("docker sandbox: reap orphans: %w", err)
	}
	return ids, nil
}
