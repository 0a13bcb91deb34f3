package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/bpagents/bpagents/internal/config"
)

// cmdServe runs one role of a deployment whose processes share a PostgreSQL
// database: api (HTTP API and dashboard), scheduler (leader-elected
// clearing), runner (claims and runs executions) or all.
func cmdServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	setUsage(fs, "serve")
	role := fs.String("role", "all", "what this process runs: "+strings.Join(config.Roles, ", "))
	runnerID := fs.String("runner-id", "", "runner role: this runner's stable identity (default: the host name; two runners on one host need their own)")
	slots := fs.Int("runner-slots", 0, "runner role: executions run at once; 0: no limit of its own (cluster.runner_slots)")
	publicURL := fs.String("public-url", "", "runner role: the API URL agents are given (an API replica or a load balancer in front of them)")
	cfg, err := loadConfig(fs, args, func(c *config.Config) {
		if *runnerID != "" {
			c.Cluster.RunnerID = *runnerID
		}
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "runner-slots" {
				c.Cluster.RunnerSlots = *slots
			}
		})
		if *publicURL != "" {
			c.PublicURL = *publicURL
		}
	})
	if err != nil {
		return err
	}
	if !slices.Contains(config.Roles, *role) {
		return fmt.Errorf("serve: --role must be one of %s, not %q", strings.Join(config.Roles, ", "), *role)
	}
	return serve(ctx, cfg, *role)
}
