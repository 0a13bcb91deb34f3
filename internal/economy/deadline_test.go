package economy_test

import (
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/sandbox"
	"github.com/bpagents/bpagents/internal/store"
)

// A sandbox that started late gets its full running time: the deadline
// moves later (never earlier), and the token works until then.
func TestExtendDeadline(t *testing.T) {
	w := newWorld(t, nil)
	ctx := t.Context()
	res := w.clear()
	st, err := w.eco.StartExecution(ctx, res.Queued[0].ID, "test", "http://x")
	if err != nil {
		t.Fatal(err)
	}
	id, before := st.Execution.ID, st.Execution.Deadline
	if err := w.eco.ExtendDeadline(ctx, id, before.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := w.getExecution(id).Deadline; !got.Equal(before) {
		t.Fatalf("an earlier deadline moved it: %s → %s", before, got)
	}
	later := before.Add(3 * time.Second)
	if err := w.eco.ExtendDeadline(ctx, id, later); err != nil {
		t.Fatal(err)
	}
	if got := w.getExecution(id).Deadline; !got.Equal(later.Truncate(time.Microsecond)) {
		t.Fatalf("deadline %s, want %s", got, later)
	}
	// The token is valid past the original deadline.
	w.clock.Advance(before.Sub(w.clock.Now()) + time.Second)
	if _, err := w.eco.Authenticate(ctx, st.Token); err != nil {
		t.Fatalf("token refused before the moved deadline: %v", err)
	}
	if _, err := w.eco.FinishExecution(ctx, id, sandbox.Result{Reason: sandbox.ReasonExited}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "extend a finished execution", w.eco.ExtendDeadline(ctx, id, later.Add(time.Second)), economy.CodeConflict)
	if w.getExecution(id).Status != store.ExecFinished {
		t.Fatal("not finished")
	}
	w.audit()
}
