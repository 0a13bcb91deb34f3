package config

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"time"
)

// Roles are what `bpagents serve --role` runs: the HTTP API and dashboard,
// the scheduler (leader-elected market clearing), a runner (claims and runs
// executions), or all three in one process (`bpagents up`).
var Roles = []string{"api", "scheduler", "runner", "all"}

// Cluster configures processes that share one economy (PostgreSQL): the
// runners' identity and heartbeats and the scheduler's election.
type Cluster struct {
	// RunnerID is this runner's stable identity: a restarted runner with the
	// same id closes what its previous process left and removes its
	// orphaned sandboxes. Empty means this host's name; two runners on one
	// host need ids of their own. Letters, digits, '.', '_', '-' (at most 27).
	RunnerID string `yaml:"runner_id"`
	// RunnerSlots bounds how many executions a runner runs at once; 0 means
	// no limit of its own (the market's capacity still bounds them).
	RunnerSlots int `yaml:"runner_slots"`
	// Heartbeat is how often a runner tells the database it lives.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// Poll is how often a runner looks for queued executions when the
	// scheduler is not in its process to wake it.
	Poll time.Duration `yaml:"poll"`
	// RunnerTimeout is how long a runner's heartbeat may stay unchanged
	// before the leader declares it lost and closes its executions as killed.
	RunnerTimeout time.Duration `yaml:"runner_timeout"`
	// LeaderRetry is how often a standby scheduler tries to take the lead
	// (and the leader checks it still holds it).
	LeaderRetry time.Duration `yaml:"leader_retry"`
}

func defaultCluster() Cluster {
	return Cluster{Heartbeat: 2 * time.Second, Poll: 200 * time.Millisecond, RunnerTimeout: 10 * time.Second,
		LeaderRetry: time.Second}
}

// maxRunnerID keeps sandbox names (instance + "-" + runner id) within what
// the backends accept.
const maxRunnerID = 27

func (c *Config) validateCluster(bad badFunc) {
	k := c.Cluster
	if k.RunnerID != "" && !validRunnerID(k.RunnerID) {
		bad("cluster.runner_id", "must start with a letter or digit and hold only letters, digits, '_', '.' and '-' "+
			"(at most %d), got %q", maxRunnerID, k.RunnerID)
	}
	if k.RunnerSlots < 0 || k.RunnerSlots > 100000 {
		bad("cluster.runner_slots", "must be between 0 and 100000, got %d", k.RunnerSlots)
	}
	if k.Heartbeat < 50*time.Millisecond || k.Heartbeat > time.Minute {
		bad("cluster.heartbeat", "must be between 50ms and 1m, got %s", k.Heartbeat)
	}
	if k.Poll < 10*time.Millisecond || k.Poll > time.Minute {
		bad("cluster.poll", "must be between 10ms and 1m, got %s", k.Poll)
	}
	if k.RunnerTimeout < 3*k.Heartbeat || k.RunnerTimeout > time.Hour {
		bad("cluster.runner_timeout", "must be at least 3 heartbeats (%s) and at most 1h, got %s", 3*k.Heartbeat, k.RunnerTimeout)
	}
	if k.LeaderRetry < 10*time.Millisecond || k.LeaderRetry > time.Minute {
		bad("cluster.leader_retry", "must be between 10ms and 1m, got %s", k.LeaderRetry)
	}
}

func validRunnerID(s string) bool { return len(s) <= maxRunnerID && validDockerName(s) }

// RunnerIdentity is the runner id in force: cluster.runner_id, else this
// host's name made valid (letters, digits, '.', '_', '-'; a long name is
// shortened with a hash so that it stays unique).
func (c *Config) RunnerIdentity() string {
	if c.Cluster.RunnerID != "" {
		return c.Cluster.RunnerID
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	id := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '-'
	}, host)
	if !validRunnerID(id) {
		sum := sha256.Sum256([]byte(host))
		id = strings.Trim(id, "._-")
		if len(id) > 18 {
			id = id[:18]
		}
		id = "h" + id + "-" + hex.EncodeToString(sum[:4])
		if len(id) > maxRunnerID {
			id = id[:maxRunnerID]
		}
	}
	return id
}
