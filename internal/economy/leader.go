package economy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/bpagents/bpagents/internal/store"
)

// ErrNotLeader means a scheduler that is not the recorded leader tried to
// clear the market: another scheduler took over since it became leader.
var ErrNotLeader = errors.New("this scheduler is not the leader")

// metaLeader holds the leader scheduler (a LeaderInfo as JSON).
const metaLeader = "scheduler_leader"

// LeaderInfo identifies a scheduler process.
type LeaderInfo struct {
	ID    string `json:"scheduler_id"`
	Host  string `json:"host"`
	PID   int64  `json:"pid"`
	Since string `json:"since,omitempty"`
	// CycleSeconds is the clearing period it runs.
	CycleSeconds float64 `json:"cycle_seconds,omitempty"`
}

// TakeLeadership records scheduler l as the leader and writes a
// scheduler.leader event naming it and the one it replaces. From then on
// only ClearAsLeader(l.ID) clears: a former leader that still believes it
// leads is fenced off by the record, whatever its lock says. It returns the
// previous leader (zero if none).
func (e *Economy) TakeLeadership(ctx context.Context, l LeaderInfo) (LeaderInfo, error) {
	var prev LeaderInfo
	err := e.write(ctx, func(tx store.Tx) error {
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		if prev, err = readLeader(ctx, tx); err != nil {
			return err
		}
		me := l
		me.Since = rfc3339(s.now)
		raw, err := json.Marshal(me)
		if err != nil {
			return err
		}
		if err := tx.SetMeta(ctx, metaLeader, string(raw)); err != nil {
			return err
		}
		return emit(ctx, tx, s, "scheduler.leader", "", "scheduler:"+l.ID, map[string]any{"scheduler_id": l.ID,
			"host": l.Host, "pid": l.PID, "cycle_seconds": l.CycleSeconds, "previous": prev.ID,
			"previous_host": prev.Host, "previous_pid": prev.PID})
	})
	return prev, err
}

// Leader returns the recorded leader scheduler (zero if none ever led).
func (e *Economy) Leader(ctx context.Context) (LeaderInfo, error) {
	var l LeaderInfo
	err := e.st.Read(ctx, func(tx store.Tx) error {
		var err error
		l, err = readLeader(ctx, tx)
		return err
	})
	return l, err
}

func readLeader(ctx context.Context, tx store.Tx) (LeaderInfo, error) {
	raw, err := tx.GetMeta(ctx, metaLeader)
	if errors.Is(err, store.ErrNotFound) {
		return LeaderInfo{}, nil
	}
	if err != nil {
		return LeaderInfo{}, err
	}
	var l LeaderInfo
	if err := json.Unmarshal([]byte(raw), &l); err != nil {
		return LeaderInfo{}, fmt.Errorf("meta %s: %w", metaLeader, err)
	}
	return l, nil
}

// ClearAsLeader is Clear for the leader scheduler schedulerID: in the same
// transaction it checks that schedulerID is still the recorded leader and
// fails with ErrNotLeader otherwise, so two schedulers never both clear.
func (e *Economy) ClearAsLeader(ctx context.Context, schedulerID string) (ClearResult, error) {
	return e.clear(ctx, func(tx store.Tx) error {
		l, err := readLeader(ctx, tx)
		if err != nil {
			return err
		}
		if l.ID != schedulerID {
			return fmt.Errorf("scheduler %s: %w (the leader is %q)", schedulerID, ErrNotLeader, l.ID)
		}
		return nil
	})
}

// ClusterView is what the processes of an economy are doing, read from the
// database (so any API replica can tell).
type ClusterView struct {
	Queued  int          `json:"queued"`
	Running int          `json:"running"`
	Runners []RunnerView `json:"runners"`
	Leader  LeaderInfo   `json:"leader"`
}

// RunnerView is an active runner.
type RunnerView struct {
	ID        string `json:"id"`
	Host      string `json:"host"`
	PID       int64  `json:"pid"`
	Sandbox   string `json:"sandbox"`
	Slots     int64  `json:"slots"`
	Running   int    `json:"running"`
	Started   string `json:"started"`
	Heartbeat string `json:"heartbeat"`
}

// Cluster reads the executions in flight, the active runners and the leader
// in one snapshot.
func (e *Economy) Cluster(ctx context.Context) (ClusterView, error) {
	var v ClusterView
	err := e.st.Read(ctx, func(tx store.Tx) error {
		v = ClusterView{Runners: []RunnerView{}}
		active, err := tx.ListExecutions(ctx, store.ExecutionFilter{Statuses: []string{store.ExecQueued, store.ExecRunning}})
		if err != nil {
			return err
		}
		perRunner := map[string]int{}
		for _, ex := range active {
			if ex.Status == store.ExecRunning {
				v.Running++
				perRunner[ex.RunnerID]++
			} else {
				v.Queued++
			}
		}
		runners, err := tx.ListRunners(ctx, store.RunnerActive)
		if err != nil {
			return err
		}
		for _, r := range runners {
			v.Runners = append(v.Runners, RunnerView{ID: r.ID, Host: r.Host, PID: r.PID, Sandbox: r.Sandbox,
				Slots: r.Slots, Running: perRunner[r.ID], Started: rfc3339(r.Started), Heartbeat: rfc3339(r.Heartbeat)})
		}
		v.Leader, err = readLeader(ctx, tx)
		return err
	})
	return v, err
}
