package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

func prompt(id, agent, exec string, bid money.Micro, created int) store.Prompt {
	return store.Prompt{ID: id, AgentID: agent, ExecutionID: exec, Content: "prompt " + id + " ✓", BidAmount: bid,
		Status: store.PromptPending, Created: at(created), Cycle: int64(created), ExpiresAt: at(created + 3600)}
}

func getPrompt(t *testing.T, st store.Store, id string) store.Prompt {
	t.Helper()
	var p store.Prompt
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		var err error
		p, err = tx.GetPrompt(ctx, id)
		return err
	})
	return p
}

// samePrompt compares prompts, times by instant.
func samePrompt(t *testing.T, got, want store.Prompt) {
	t.Helper()
	for _, p := range []struct {
		name string
		g, w time.Time
	}{{"Created", got.Created, want.Created}, {"ExpiresAt", got.ExpiresAt, want.ExpiresAt}, {"RatedAt", got.RatedAt, want.RatedAt}} {
		if !p.g.Equal(p.w) || p.g.IsZero() != p.w.IsZero() {
			t.Fatalf("prompt %s %s = %v, want %v", want.ID, p.name, p.g, p.w)
		}
	}
	got.Created, got.ExpiresAt, got.RatedAt = want.Created, want.ExpiresAt, want.RatedAt
	if got != want {
		t.Fatalf("prompt = %+v\nwant     %+v", got, want)
	}
}

func testPrompts(t *testing.T, st store.Store) {
	ctx := t.Context()
	ps := []store.Prompt{
		prompt("p1", "a", "ex1", 0, 1),
		prompt("p2", "b", "ex2", 2_000_000, 2),
		prompt("p3", "a", "ex3", 2_000_000, 3),
		prompt("p4", "c", "ex4", 500_000, 4),
	}
	ps[3].ExpiresAt = at(100) // due early
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		for i := range ps {
			if err := tx.InsertPrompt(ctx, &ps[i]); err != nil {
				return err
			}
		}
		return nil
	})
	for i := 1; i < len(ps); i++ {
		if ps[i].Seq <= ps[i-1].Seq {
			t.Fatal("prompt seqs not increasing")
		}
	}
	samePrompt(t, getPrompt(t, st, "p2"), ps[1])

	// One prompt per execution; ids are unique.
	dupExec := prompt("p9", "a", "ex1", 0, 9)
	err := st.Write(ctx, func(tx store.Tx) error { return tx.InsertPrompt(ctx, &dupExec) })
	wantErr(t, "InsertPrompt for an execution that has a prompt", err, store.ErrConflict)
	dupID := prompt("p1", "a", "ex9", 0, 9)
	err = st.Write(ctx, func(tx store.Tx) error { return tx.InsertPrompt(ctx, &dupID) })
	wantErr(t, "InsertPrompt of a taken id", err, store.ErrConflict)

	read(t, st, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.GetPrompt(ctx, "nope")
		wantErr(t, "GetPrompt of a missing id", err, store.ErrNotFound)
		p, err := tx.PromptOfExecution(ctx, "ex3")
		if err != nil || p.ID != "p3" {
			t.Fatalf("PromptOfExecution(ex3) = %s, %v", p.ID, err)
		}
		_, err = tx.PromptOfExecution(ctx, "ex-none")
		wantErr(t, "PromptOfExecution without a prompt", err, store.ErrNotFound)
		return nil
	})

	list := func(f store.PromptFilter) []string {
		var out []string
		read(t, st, func(ctx context.Context, tx store.Tx) error {
			l, err := tx.ListPrompts(ctx, f)
			for _, p := range l {
				out = append(out, p.ID)
			}
			return err
		})
		return out
	}
	cases := []struct {
		name string
		f    store.PromptFilter
		want []string
	}{
		{"queue: highest bid first, then oldest", store.PromptFilter{Status: store.PromptPending, Queue: true}, []string{"p2", "p3", "p4", "p1"}},
		{"queue with limit", store.PromptFilter{Status: store.PromptPending, Queue: true, Limit: 2}, []string{"p2", "p3"}},
		{"all, newest first", store.PromptFilter{}, []string{"p4", "p3", "p2", "p1"}},
		{"agent", store.PromptFilter{AgentID: "a"}, []string{"p3", "p1"}},
		{"agent in queue order", store.PromptFilter{AgentID: "a", Queue: true}, []string{"p3", "p1"}},
		{"rated: none yet", store.PromptFilter{Status: store.PromptRated}, nil},
		{"nobody", store.PromptFilter{AgentID: "nobody"}, nil},
	}
	for _, tc := range cases {
		if got := list(tc.f); !slices.Equal(got, tc.want) {
			t.Fatalf("ListPrompts %s = %v, want %v", tc.name, got, tc.want)
		}
	}

	// Due prompts: pending and past their expiry, oldest first.
	due := func(now time.Time) []string {
		var out []string
		read(t, st, func(ctx context.Context, tx store.Tx) error {
			l, err := tx.DuePrompts(ctx, now)
			for _, p := range l {
				out = append(out, p.ID)
			}
			return err
		})
		return out
	}
	if got := due(at(99)); len(got) != 0 {
		t.Fatalf("DuePrompts before any expiry = %v", got)
	}
	if got := due(at(100)); !slices.Equal(got, []string{"p4"}) {
		t.Fatalf("DuePrompts at p4's expiry = %v, want [p4] (expiry is inclusive)", got)
	}
	if got := due(at(3602)); !slices.Equal(got, []string{"p1", "p2", "p4"}) {
		t.Fatalf("DuePrompts at 3602 = %v, want [p1 p2 p4]", got)
	}

	// Rating writes every closing field; a closed prompt cannot close again.
	rated := ps[1]
	rated.Status, rated.Interesting, rated.Useful, rated.Understandable = store.PromptRated, 10, 0, 7
	rated.Reason, rated.Reward, rated.RatedAt = "clear and new", 850_000_000, at(50)
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.ClosePrompt(ctx, rated) })
	samePrompt(t, getPrompt(t, st, "p2"), rated)
	again := rated
	again.Reward = 1
	err = st.Write(ctx, func(tx store.Tx) error { return tx.ClosePrompt(ctx, again) })
	wantErr(t, "ClosePrompt of a rated prompt", err, store.ErrConflict)
	samePrompt(t, getPrompt(t, st, "p2"), rated)

	expired := ps[3]
	expired.Status = store.PromptExpired
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.ClosePrompt(ctx, expired) })
	samePrompt(t, getPrompt(t, st, "p4"), expired)
	err = st.Write(ctx, func(tx store.Tx) error {
		e := expired
		e.Status = store.PromptRated
		return tx.ClosePrompt(ctx, e)
	})
	wantErr(t, "ClosePrompt of an expired prompt", err, store.ErrConflict)
	err = st.Write(ctx, func(tx store.Tx) error { return tx.ClosePrompt(ctx, prompt("nope", "a", "x", 0, 1)) })
	wantErr(t, "ClosePrompt of a missing prompt", err, store.ErrNotFound)

	for _, tc := range []struct {
		f    store.PromptFilter
		want []string
	}{
		{store.PromptFilter{Status: store.PromptPending, Queue: true}, []string{"p3", "p1"}},
		{store.PromptFilter{Status: store.PromptRated}, []string{"p2"}},
		{store.PromptFilter{Status: store.PromptExpired}, []string{"p4"}},
	} {
		if got := list(tc.f); !slices.Equal(got, tc.want) {
			t.Fatalf("ListPrompts(%+v) after closing = %v, want %v", tc.f, got, tc.want)
		}
	}
	if got := due(at(3602)); !slices.Equal(got, []string{"p1"}) {
		t.Fatalf("DuePrompts after closing = %v, want only the pending p1", got)
	}
}

func testListMessages(t *testing.T, st store.Store) {
	var msgs []store.Message
	for i, to := range []string{"human", "b", "human", "human", "b", "human"} {
		msgs = append(msgs, store.Message{ID: "m" + string(rune('1'+i)), From: "a", To: to, Content: "c",
			Created: at(i), Cycle: int64(i)})
	}
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		for i := range msgs {
			if err := tx.InsertMessage(ctx, &msgs[i]); err != nil {
				return err
			}
		}
		return tx.MarkRead(ctx, []string{"m3"}, at(10))
	})
	list := func(f store.MessageFilter) []string {
		var out []string
		read(t, st, func(ctx context.Context, tx store.Tx) error {
			l, err := tx.ListMessages(ctx, f)
			for _, m := range l {
				out = append(out, m.ID)
			}
			return err
		})
		return out
	}
	cases := []struct {
		name string
		f    store.MessageFilter
		want []string
	}{
		{"to human, newest first whatever is read", store.MessageFilter{To: "human"}, []string{"m6", "m4", "m3", "m1"}},
		{"first page", store.MessageFilter{To: "human", Limit: 2}, []string{"m6", "m4"}},
		{"next page", store.MessageFilter{To: "human", BeforeSeq: msgs[3].Seq, Limit: 2}, []string{"m3", "m1"}},
		{"past the end", store.MessageFilter{To: "human", BeforeSeq: msgs[0].Seq}, nil},
		{"all", store.MessageFilter{}, []string{"m6", "m5", "m4", "m3", "m2", "m1"}},
		{"nobody", store.MessageFilter{To: "nobody"}, nil},
		{"party as recipient", store.MessageFilter{Party: "b"}, []string{"m5", "m2"}},
		{"party as sender, paged", store.MessageFilter{Party: "a", BeforeSeq: msgs[4].Seq, Limit: 3}, []string{"m4", "m3", "m2"}},
	}
	for _, tc := range cases {
		if got := list(tc.f); !slices.Equal(got, tc.want) {
			t.Fatalf("ListMessages %s = %v, want %v", tc.name, got, tc.want)
		}
	}
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		l, err := tx.ListMessages(ctx, store.MessageFilter{To: "human", Limit: 2, BeforeSeq: msgs[3].Seq})
		if err != nil {
			return err
		}
		if l[0].Read.IsZero() || !l[1].Read.IsZero() || l[1].From != "a" || l[1].Content != "c" {
			t.Fatalf("messages %+v", l)
		}
		sameTime(t, "message Created", l[1].Created, at(0))
		return nil
	})
}
