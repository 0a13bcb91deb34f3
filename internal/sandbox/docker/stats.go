package docker

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/docker/docker/api/types/container"
)

// statsSample keeps what the engine's stats stream last said about a
// container: the fallback when cgroup files cannot be read (an engine with
// the systemd cgroup driver). The engine samples once a second, so the last
// second of CPU time and short memory peaks between samples can be missed.
type statsSample struct {
	mu      sync.Mutex
	cpuNs   uint64
	peak    uint64
	current uint64
}

func (s *statsSample) get() usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return usage{cpuSeconds: float64(s.cpuNs) / 1e9, peak: int64(s.peak), current: int64(s.current)}
}

// sampleStats follows the container's stats stream until it ends with the
// container.
func (h *handle) sampleStats() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-h.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	resp, err := h.sb.cli.ContainerStats(ctx, h.id, true)
	if err != nil {
		h.sb.log.Debug("no stats stream", "execution_id", h.spec.ExecutionID, "err", err)
		return
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var st container.StatsResponse
		if err := dec.Decode(&st); err != nil {
			return
		}
		h.stats.mu.Lock()
		if c := st.CPUStats.CPUUsage.TotalUsage; c > h.stats.cpuNs {
			h.stats.cpuNs = c
		}
		h.stats.peak = max(h.stats.peak, st.MemoryStats.MaxUsage, st.MemoryStats.Usage)
		h.stats.current = st.MemoryStats.Usage
		h.stats.mu.Unlock()
	}
}
