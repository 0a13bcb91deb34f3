package app

import (
	"context"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/metrics"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/web"
)

// openObservability builds the Prometheus metrics and the dashboard, and
// hooks the runtime's observations (cycles, sandbox starts, finished
// executions) into the metrics. Call it once the economy and runtime exist.
func (a *App) openObservability(version string) error {
	reasons := []string{}
	for _, r := range []sandbox.Reason{sandbox.ReasonExited, sandbox.ReasonTimeout, sandbox.ReasonOOM,
		sandbox.ReasonKilled, sandbox.ReasonError, sandbox.ReasonNoEntrypoint} {
		reasons = append(reasons, string(r))
	}
	a.Metrics = metrics.New(metrics.Options{Snapshot: a.metricsSnapshot, Reasons: reasons, Log: a.Log})
	if a.Runtime != nil {
		a.Runtime.OnCycle(func(res economy.ClearResult) { a.Metrics.ObserveCycle(res.Took, res.Pending, res.Winners) })
		a.Runtime.OnSandboxStart(a.Metrics.SandboxStarted)
		a.Runtime.OnFinished(a.Metrics.ExecutionFinished)
	}
	dash, err := web.New(web.Options{Economy: a.Economy, OperatorToken: a.OperatorToken, Log: a.Log, Version: version,
		Runtime: func(ctx context.Context) web.RuntimeInfo {
			st := a.runtimeStatus(ctx)
			return web.RuntimeInfo{Sandbox: st.Sandbox, Running: st.Running, CycleSeconds: st.CycleSeconds}
		}})
	if err != nil {
		return err
	}
	a.Dashboard = dash
	return nil
}

// metricsSnapshot reads the gauges' figures for one scrape.
func (a *App) metricsSnapshot(ctx context.Context) (metrics.Snapshot, error) {
	t, err := a.Economy.Totals(ctx)
	if err != nil {
		return metrics.Snapshot{}, err
	}
	m, err := a.Economy.Market(ctx)
	if err != nil {
		return metrics.Snapshot{}, err
	}
	return metrics.Snapshot{Alive: t.Alive, Dead: t.Dead, Circulating: t.Money.Circulating.Float64(),
		Held: t.Money.Held.Float64(), Minted: t.Money.Minted.Float64(), Burned: t.Money.Burned.Float64(),
		Cycle: m.Cycle, PendingBids: m.PendingBids, Running: a.runtimeStatus(ctx).Running}, nil
}
