package economy_test

import (
	"testing"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/money"
)

func TestDescendantsAndGenerations(t *testing.T) {
	w := newWorld(t, nil)
	ctx := t.Context()
	spawn := func(parent string, credits int64) string {
		t.Helper()
		res, err := w.eco.Spawn(ctx, parent, economy.SpawnRequest{InitialCredits: money.Credits(credits)}, nil)
		if err != nil {
			t.Fatalf("spawn from %s: %v", parent, err)
		}
		return res.ChildID
	}
	w.agent("root", money.Credits(1000))
	c1, c2 := spawn("root", 300), spawn("root", 120)
	g1 := spawn(c1, 50)
	if err := w.eco.Kill(ctx, c2); err != nil {
		t.Fatal(err)
	}
	v, err := w.eco.Descendants(ctx, "root")
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Descendants) != 3 || v.MaxDepth != 2 || v.Descendants[0].Depth != 1 || v.Descendants[2].ID != g1 ||
		v.Descendants[2].Depth != 2 {
		t.Fatalf("descendants of root: %+v", v)
	}
	want := []economy.Generation{{Depth: 1, Alive: 1, Dead: 1}, {Depth: 2, Alive: 1}}
	if len(v.Generations) != 2 || v.Generations[0] != want[0] || v.Generations[1] != want[1] {
		t.Fatalf("generations of root = %+v, want %+v", v.Generations, want)
	}
	if v, err := w.eco.Descendants(ctx, g1); err != nil || len(v.Descendants) != 0 || v.MaxDepth != 0 {
		t.Fatalf("a leaf has descendants: %+v, %v", v, err)
	}
	_, err = w.eco.Descendants(ctx, "nobody")
	wantCode(t, "descendants of an unknown agent", err, economy.CodeNotFound)

	g, err := w.eco.Generations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// genesis and root at depth 0, c1 and c2 at 1, g1 at 2.
	if g.Population != 5 || g.MaxDepth != 2 || len(g.Generations) != 3 || g.Generations[0].Alive != 2 ||
		g.Generations[1] != (economy.Generation{Depth: 1, Alive: 1, Dead: 1}) || g.Generations[2].Alive != 1 {
		t.Fatalf("generations = %+v", g)
	}
	if g.MeanDepth != 0.75 { // alive: genesis 0, root 0, c1 1, g1 2
		t.Fatalf("mean depth = %v, want 0.75", g.MeanDepth)
	}
	w.audit()
}
