package config

import (
	"slices"
	"testing"
	"time"
)

func TestValidateCluster(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*Cluster)
		field  string // "" when valid
	}{
		{"defaults", func(*Cluster) {}, ""},
		{"runner id", func(k *Cluster) { k.RunnerID = "gpu-box.2" }, ""},
		{"runner id with a slash", func(k *Cluster) { k.RunnerID = "a/b" }, "cluster.runner_id"},
		{"runner id starting with a dash", func(k *Cluster) { k.RunnerID = "-a" }, "cluster.runner_id"},
		{"runner id too long", func(k *Cluster) { k.RunnerID = "abcdefghijklmnopqrstuvwxyz01" }, "cluster.runner_id"},
		{"negative slots", func(k *Cluster) { k.RunnerSlots = -1 }, "cluster.runner_slots"},
		{"heartbeat too fast", func(k *Cluster) { k.Heartbeat = time.Millisecond }, "cluster.heartbeat"},
		{"poll too fast", func(k *Cluster) { k.Poll = time.Millisecond }, "cluster.poll"},
		{"timeout under three heartbeats", func(k *Cluster) { k.RunnerTimeout = 5 * time.Second }, "cluster.runner_timeout"},
		{"leader retry zero", func(k *Cluster) { k.LeaderRetry = 0 }, "cluster.leader_retry"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mutate(&c.Cluster)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var names []string
			for _, fe := range fieldErrors(t, err) {
				names = append(names, fe.Field)
			}
			if !slices.Equal(names, []string{tc.field}) {
				t.Fatalf("Validate named %v, want [%s]", names, tc.field)
			}
		})
	}
}

func TestLoadClusterFromEnv(t *testing.T) {
	t.Parallel()
	c, err := Load("", []string{"BPAGENTS_CLUSTER_RUNNER_TIMEOUT=1500ms", "BPAGENTS_CLUSTER_RUNNER_ID=r1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster.RunnerTimeout != 1500*time.Millisecond || c.Cluster.RunnerID != "r1" {
		t.Fatalf("cluster from the environment: %+v", c.Cluster)
	}
}
