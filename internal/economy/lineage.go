package economy

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/bpagents/bpagents/internal/store"
)

// Generation counts the agents at one depth of a lineage tree: depth 0 is
// the root itself (or every agent without a parent, for the whole economy).
type Generation struct {
	Depth int `json:"depth"`
	Alive int `json:"alive"`
	Dead  int `json:"dead"`
}

// Descendant is an agent below another, with its distance from it.
type Descendant struct {
	AgentView
	Depth int `json:"depth"`
}

// LineageView is an agent's subtree.
type LineageView struct {
	AgentID     string       `json:"agent_id"`
	Descendants []Descendant `json:"descendants"`
	// Generations counts the descendants by depth (1 = children).
	Generations []Generation `json:"generations"`
	MaxDepth    int          `json:"max_depth"`
}

// GenerationStats describes the whole population by generation.
type GenerationStats struct {
	Population  int          `json:"population"`
	Generations []Generation `json:"generations"`
	MaxDepth    int          `json:"max_depth"`
	// MeanDepth is the average generation of living agents (0 when none live).
	MeanDepth float64 `json:"mean_depth"`
}

// Descendants returns every agent whose lineage includes id, children first.
func (e *Economy) Descendants(ctx context.Context, id string) (LineageView, error) {
	out := LineageView{AgentID: id, Descendants: []Descendant{}, Generations: []Generation{}}
	err := e.st.Read(ctx, func(tx store.Tx) error {
		if _, err := tx.GetAgent(ctx, id); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return &Error{Code: CodeNotFound, Detail: fmt.Sprintf("agent %q does not exist", id), Err: err}
			}
			return err
		}
		all, err := tx.ListAgents(ctx, store.AgentFilter{})
		if err != nil {
			return err
		}
		for _, a := range all {
			i := slices.Index(a.Lineage, id)
			if i < 0 {
				continue
			}
			v, err := agentView(ctx, tx, a)
			if err != nil {
				return err
			}
			d := Descendant{AgentView: v, Depth: i + 1}
			out.Descendants = append(out.Descendants, d)
			out.Generations = countGeneration(out.Generations, 1, d.Depth, a.Status)
			out.MaxDepth = max(out.MaxDepth, d.Depth)
		}
		slices.SortStableFunc(out.Descendants, func(a, b Descendant) int { return a.Depth - b.Depth })
		return nil
	})
	return out, err
}

// Generations counts the whole population by generation (the length of each
// agent's lineage).
func (e *Economy) Generations(ctx context.Context) (GenerationStats, error) {
	out := GenerationStats{Generations: []Generation{}}
	err := e.st.Read(ctx, func(tx store.Tx) error {
		all, err := tx.ListAgents(ctx, store.AgentFilter{})
		if err != nil {
			return err
		}
		alive, depthSum := 0, 0
		for _, a := range all {
			d := len(a.Lineage)
			out.Generations = countGeneration(out.Generations, 0, d, a.Status)
			out.MaxDepth = max(out.MaxDepth, d)
			if a.Status == store.AgentAlive {
				alive++
				depthSum += d
			}
		}
		out.Population = len(all)
		if alive > 0 {
			out.MeanDepth = float64(depthSum) / float64(alive)
		}
		return nil
	})
	return out, err
}

// countGeneration adds one agent at depth to gens, which holds every depth
// from base up to the deepest seen, in order.
func countGeneration(gens []Generation, base, depth int, status string) []Generation {
	for len(gens) <= depth-base {
		gens = append(gens, Generation{Depth: base + len(gens)})
	}
	if status == store.AgentAlive {
		gens[depth-base].Alive++
	} else {
		gens[depth-base].Dead++
	}
	return gens
}
