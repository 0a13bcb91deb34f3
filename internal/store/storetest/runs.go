package storetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/bpagents/bpagents/internal/market"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

func execution(id, agent string, cycle int64) store.Execution {
	return store.Execution{ID: id, AgentID: agent, BidID: "bid-" + id, Status: store.ExecQueued, Cycle: cycle,
		Bundle: market.Bundle{CPUMillis: 250, MemoryMB: 128, DurationSeconds: 30, Tokens: 7, Attention: 0},
		Paid:   1_500_000, Created: at(int(cycle))}
}

func insertExecutions(t *testing.T, st store.Store, list ...store.Execution) []store.Execution {
	t.Helper()
	out := slices.Clone(list)
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		for i := range out {
			if err := tx.InsertExecution(ctx, &out[i]); err != nil {
				return err
			}
		}
		return nil
	})
	return out
}

func getExecution(t *testing.T, st store.Store, id string) store.Execution {
	t.Helper()
	var e store.Execution
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		var err error
		e, err = tx.GetExecution(ctx, id)
		return err
	})
	return e
}

// sameExecution compares executions, times by instant.
func sameExecution(t *testing.T, got, want store.Execution) {
	t.Helper()
	for _, p := range []struct {
		name string
		g, w time.Time
	}{{"Created", got.Created, want.Created}, {"Started", got.Started, want.Started},
		{"Deadline", got.Deadline, want.Deadline}, {"Ended", got.Ended, want.Ended},
		{"Claimed", got.Claimed, want.Claimed}, {"KillRequested", got.KillRequested, want.KillRequested}} {
		if !p.g.Equal(p.w) || p.g.IsZero() != p.w.IsZero() {
			t.Fatalf("execution %s %s = %v, want %v", want.ID, p.name, p.g, p.w)
		}
	}
	got.Created, got.Started, got.Deadline, got.Ended = want.Created, want.Started, want.Deadline, want.Ended
	got.Claimed, got.KillRequested = want.Claimed, want.KillRequested
	if got != want {
		t.Fatalf("execution = %+v\nwant        %+v", got, want)
	}
}

func testExecutions(t *testing.T, st store.Store) {
	// Executions without a token yet: any number may wait at once.
	exs := insertExecutions(t, st, execution("ex1", "a", 1), execution("ex2", "b", 1), execution("ex3", "a", 2))
	if !(exs[0].Seq > 0 && exs[1].Seq > exs[0].Seq && exs[2].Seq > exs[1].Seq) {
		t.Fatalf("execution seqs not increasing")
	}
	ctx := t.Context()
	err := st.Write(ctx, func(tx store.Tx) error { e := execution("ex1", "z", 9); return tx.InsertExecution(ctx, &e) })
	wantErr(t, "InsertExecution of a taken id", err, store.ErrConflict)
	sameExecution(t, getExecution(t, st, "ex2"), exs[1])
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.GetExecution(ctx, "nope")
		wantErr(t, "GetExecution of a missing id", err, store.ErrNotFound)
		return nil
	})

	// UpdateExecution writes every mutable field.
	run := exs[0]
	run.Status, run.TokenHash, run.Sandbox = store.ExecRunning, "hash-1", "process"
	run.Started, run.Deadline = at(10), at(40)
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.UpdateExecution(ctx, run) })
	sameExecution(t, getExecution(t, st, "ex1"), run)
	fin := run
	fin.Status, fin.Ended, fin.ExitCode, fin.Reason, fin.Detail = store.ExecFinished, at(25), 3, "exited", "exit status 3"
	fin.CPUSeconds, fin.PeakMemory, fin.OutputSize, fin.Dropped = 1.25, 64<<20, 4096, 17
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.UpdateExecution(ctx, fin) })
	sameExecution(t, getExecution(t, st, "ex1"), fin)

	err = st.Write(ctx, func(tx store.Tx) error { return tx.UpdateExecution(ctx, execution("nope", "a", 1)) })
	wantErr(t, "UpdateExecution of a missing id", err, store.ErrNotFound)

	list := func(f store.ExecutionFilter) []string {
		var out []string
		read(t, st, func(ctx context.Context, tx store.Tx) error {
			l, err := tx.ListExecutions(ctx, f)
			for _, e := range l {
				out = append(out, e.ID)
			}
			return err
		})
		return out
	}
	cases := []struct {
		name string
		f    store.ExecutionFilter
		want []string
	}{
		{"all, newest first", store.ExecutionFilter{}, []string{"ex3", "ex2", "ex1"}},
		{"agent", store.ExecutionFilter{AgentID: "a"}, []string{"ex3", "ex1"}},
		{"queued", store.ExecutionFilter{Statuses: []string{store.ExecQueued}}, []string{"ex3", "ex2"}},
		{"queued or running", store.ExecutionFilter{Statuses: []string{store.ExecQueued, store.ExecRunning}}, []string{"ex3", "ex2"}},
		{"finished", store.ExecutionFilter{Statuses: []string{store.ExecFinished}}, []string{"ex1"}},
		{"agent and status", store.ExecutionFilter{AgentID: "a", Statuses: []string{store.ExecQueued}}, []string{"ex3"}},
		{"limit", store.ExecutionFilter{Limit: 1}, []string{"ex3"}},
		{"none", store.ExecutionFilter{AgentID: "nobody"}, nil},
	}
	for _, tc := range cases {
		if got := list(tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("ListExecutions %s = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func testExecutionByToken(t *testing.T, st store.Store) {
	insertExecutions(t, st, execution("ex1", "a", 1), execution("ex2", "b", 1))
	find := func(hash string) (store.Execution, error) {
		var e store.Execution
		ctx := t.Context()
		err := st.Read(ctx, func(tx store.Tx) error {
			var err error
			e, err = tx.ExecutionByToken(ctx, hash)
			return err
		})
		return e, err
	}
	for _, h := range []string{"", "unknown"} {
		_, err := find(h)
		wantErr(t, fmt.Sprintf("ExecutionByToken(%q)", h), err, store.ErrNotFound)
	}
	for i, id := range []string{"ex1", "ex2"} {
		e := getExecution(t, st, id)
		e.Status, e.TokenHash, e.Started, e.Deadline = store.ExecRunning, fmt.Sprintf("hash-%d", i), at(5), at(35)
		write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.UpdateExecution(ctx, e) })
	}
	e, err := find("hash-1")
	if err != nil || e.ID != "ex2" || e.Status != store.ExecRunning {
		t.Fatalf("ExecutionByToken(hash-1) = %s %s, %v; want running ex2", e.ID, e.Status, err)
	}
	// The token still names its execution after it ends, so callers can say
	// that it expired rather than that it never existed.
	e.Status, e.Ended = store.ExecFinished, at(20)
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.UpdateExecution(ctx, e) })
	if got, err := find("hash-1"); err != nil || got.ID != "ex2" || got.Status != store.ExecFinished {
		t.Fatalf("ExecutionByToken after finish = %s %s, %v", got.ID, got.Status, err)
	}
	// Two executions cannot share a token hash.
	ctx := t.Context()
	err = st.Write(ctx, func(tx store.Tx) error {
		x, err := tx.GetExecution(ctx, "ex1")
		if err != nil {
			return err
		}
		x.TokenHash = "hash-1"
		return tx.UpdateExecution(ctx, x)
	})
	wantErr(t, "UpdateExecution reusing a token hash", err, store.ErrConflict)
}

func testOutput(t *testing.T, st store.Store) {
	insertExecutions(t, st, execution("ex1", "a", 1), execution("ex2", "a", 2))
	get := func(id string) ([]byte, error) {
		var out []byte
		ctx := t.Context()
		err := st.Read(ctx, func(tx store.Tx) error {
			var err error
			out, err = tx.GetOutput(ctx, id)
			return err
		})
		return out, err
	}
	_, err := get("ex1")
	wantErr(t, "GetOutput before SaveOutput", err, store.ErrNotFound)
	binary := []byte("line 1\n\x00\xff\xfe binary \r\n" + string(bytes.Repeat([]byte("x"), 70_000)))
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		if err := tx.SaveOutput(ctx, "ex1", []byte("first")); err != nil {
			return err
		}
		if err := tx.SaveOutput(ctx, "ex1", binary); err != nil { // replaces
			return err
		}
		return tx.SaveOutput(ctx, "ex2", nil)
	})
	if got, err := get("ex1"); err != nil || !bytes.Equal(got, binary) {
		t.Fatalf("GetOutput(ex1) = %d bytes, %v; want the %d bytes saved last", len(got), err, len(binary))
	}
	if got, err := get("ex2"); err != nil || len(got) != 0 {
		t.Fatalf("GetOutput of empty output = %q, %v", got, err)
	}
}

func testTokensUsed(t *testing.T, st store.Store) {
	insertExecutions(t, st, execution("ex1", "a", 1))
	var totals []int64
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		for _, n := range []int64{0, 120, 30} {
			total, err := tx.AddTokensUsed(ctx, "ex1", n)
			if err != nil {
				return err
			}
			totals = append(totals, total)
		}
		return nil
	})
	if fmt.Sprint(totals) != "[0 120 150]" {
		t.Fatalf("AddTokensUsed totals = %v, want [0 120 150]", totals)
	}
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		e, err := tx.GetExecution(ctx, "ex1")
		if err != nil {
			return err
		}
		if e.TokensUsed != 150 {
			t.Fatalf("TokensUsed = %d, want 150", e.TokensUsed)
		}
		return nil
	})
	// A write, in a write transaction: a backend may refuse writes in Read.
	ctx := t.Context()
	err := st.Write(ctx, func(tx store.Tx) error {
		_, err := tx.AddTokensUsed(ctx, "nope", 1)
		return err
	})
	wantErr(t, "AddTokensUsed of an unknown execution", err, store.ErrNotFound)
}

func testMessages(t *testing.T, st store.Store) {
	msgs := []store.Message{
		{ID: "m1", From: "a", To: "b", Content: "hello", Created: at(1), Cycle: 1},
		{ID: "m2", From: "c", To: "b", Content: "ünïcode ✓", Created: at(2), Cycle: 2},
		{ID: "m3", From: "b", To: "human", Content: "for the operator", Created: at(3), Cycle: 2},
		{ID: "m4", From: "a", To: "b", Content: "third", Created: at(4), Cycle: 3},
		{ID: "m5", From: "a", To: "b", Content: "fourth", Created: at(5), Cycle: 3},
	}
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		for i := range msgs {
			if err := tx.InsertMessage(ctx, &msgs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	for i := 1; i < len(msgs); i++ {
		if msgs[i].Seq <= msgs[i-1].Seq {
			t.Fatal("message seqs not increasing")
		}
	}
	ctx := t.Context()
	err := st.Write(ctx, func(tx store.Tx) error {
		return tx.InsertMessage(ctx, &store.Message{ID: "m1", From: "x", To: "y", Content: "dup", Created: T0})
	})
	wantErr(t, "InsertMessage of a taken id", err, store.ErrConflict)

	inbox := func(agent string, limit int) []store.Message {
		var out []store.Message
		read(t, st, func(ctx context.Context, tx store.Tx) error {
			var err error
			out, err = tx.Inbox(ctx, agent, limit)
			return err
		})
		return out
	}
	msgIDs := func(list []store.Message) []string {
		out := make([]string, len(list))
		for i, m := range list {
			out[i] = m.ID
		}
		return out
	}
	if got := msgIDs(inbox("b", 0)); !slices.Equal(got, []string{"m5", "m4", "m2", "m1"}) {
		t.Fatalf("Inbox(b) = %v, want newest first", got)
	}
	first := inbox("b", 0)[2]
	if first.From != "c" || first.To != "b" || first.Content != "ünïcode ✓" || first.Cycle != 2 || !first.Read.IsZero() {
		t.Fatalf("message = %+v", first)
	}
	sameTime(t, "message Created", first.Created, at(2))

	write(t, st, func(ctx context.Context, tx store.Tx) error {
		return tx.MarkRead(ctx, []string{"m5", "m1", "missing"}, at(10))
	})
	got := inbox("b", 0)
	if ids := msgIDs(got); !slices.Equal(ids, []string{"m4", "m2", "m5", "m1"}) {
		t.Fatalf("Inbox(b) after reading m5, m1 = %v, want unread (m4 m2) first, then read, each newest first", ids)
	}
	for _, m := range got {
		if read := m.ID == "m5" || m.ID == "m1"; read != !m.Read.IsZero() {
			t.Fatalf("message %s read at %v", m.ID, m.Read)
		}
	}
	sameTime(t, "Read", got[2].Read, at(10))
	// Marking again keeps the first read time.
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.MarkRead(ctx, []string{"m5"}, at(99)) })
	sameTime(t, "Read after a second MarkRead", inbox("b", 0)[2].Read, at(10))
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.MarkRead(ctx, nil, at(99)) })

	if ids := msgIDs(inbox("b", 3)); !slices.Equal(ids, []string{"m4", "m2", "m5"}) {
		t.Fatalf("Inbox(b, 3) = %v", ids)
	}
	if ids := msgIDs(inbox("human", 0)); !slices.Equal(ids, []string{"m3"}) {
		t.Fatalf("Inbox(human) = %v", ids)
	}
	if len(inbox("nobody", 0)) != 0 {
		t.Fatal("Inbox of an unknown agent is not empty")
	}
}

func testResourceStates(t *testing.T, st store.Store) {
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		if l, err := tx.ListResourceStates(ctx); err != nil || len(l) != 0 {
			t.Fatalf("ListResourceStates of an empty store = %v, %v", l, err)
		}
		return nil
	})
	want := map[market.Resource]store.ResourceState{
		market.CPU:       {Resource: market.CPU, Price: 100_000, Capacity: 2000, Utilization: 0.25},
		market.Memory:    {Resource: market.Memory, Price: 100, Capacity: 4096},
		market.Tokens:    {Resource: market.Tokens, Price: 1000, Capacity: 100_000, Utilization: 1},
		market.Attention: {Resource: market.Attention, Price: 5_000_000, Capacity: 1, Utilization: 0.5},
	}
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		for _, s := range want {
			if err := tx.SaveResourceState(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	cpu := want[market.CPU]
	cpu.Price, cpu.Capacity, cpu.Utilization = 110_000, 3000, 0.875
	want[market.CPU] = cpu
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.SaveResourceState(ctx, cpu) }) // update
	read(t, st, func(ctx context.Context, tx store.Tx) error {
		list, err := tx.ListResourceStates(ctx)
		if err != nil {
			return err
		}
		if len(list) != len(want) {
			t.Fatalf("ListResourceStates returned %d states, want %d", len(list), len(want))
		}
		for _, got := range list {
			if got != want[got.Resource] {
				t.Fatalf("state %+v, want %+v", got, want[got.Resource])
			}
		}
		return nil
	})
}

func clearing(cycle int64) store.Clearing {
	return store.Clearing{Cycle: cycle, Time: at(int(cycle)), Mechanism: "first-price", Pending: 10 + cycle,
		Winners: 2, Expired: 1, Revenue: money.Micro(3_500_000 + cycle),
		Allocated:   map[market.Resource]int64{market.CPU: 1500, market.Memory: 512, market.Tokens: 0, market.Attention: 1},
		Utilization: map[market.Resource]float64{market.CPU: 0.75, market.Memory: 0.125, market.Tokens: 0, market.Attention: 1},
		Prices:      map[market.Resource]money.Micro{market.CPU: 110_000, market.Memory: 100, market.Tokens: 1000, market.Attention: 5_500_000},
		DurationUS:  1234}
}

func testClearings(t *testing.T, st store.Store) {
	write(t, st, func(ctx context.Context, tx store.Tx) error {
		for c := int64(1); c <= 5; c++ {
			if err := tx.InsertClearing(ctx, clearing(c)); err != nil {
				return err
			}
		}
		return nil
	})
	ctx := t.Context()
	err := st.Write(ctx, func(tx store.Tx) error { return tx.InsertClearing(ctx, clearing(3)) })
	wantErr(t, "InsertClearing of a recorded cycle", err, store.ErrConflict)

	list := func(before int64, limit int) []store.Clearing {
		var out []store.Clearing
		read(t, st, func(ctx context.Context, tx store.Tx) error {
			var err error
			out, err = tx.ListClearings(ctx, before, limit)
			return err
		})
		return out
	}
	cycles := func(l []store.Clearing) []int64 {
		out := make([]int64, len(l))
		for i, c := range l {
			out[i] = c.Cycle
		}
		return out
	}
	cases := []struct {
		before int64
		limit  int
		want   []int64
	}{
		{0, 0, []int64{5, 4, 3, 2, 1}},
		{0, 2, []int64{5, 4}},
		{4, 0, []int64{3, 2, 1}},
		{4, 2, []int64{3, 2}},
		{1, 0, nil},
	}
	for _, tc := range cases {
		if got := cycles(list(tc.before, tc.limit)); !slices.Equal(got, tc.want) {
			t.Errorf("ListClearings(%d, %d) = %v, want %v", tc.before, tc.limit, got, tc.want)
		}
	}
	got := list(4, 1)[0]
	want := clearing(3)
	sameTime(t, "clearing Time", got.Time, want.Time)
	got.Time = want.Time
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) { // maps print sorted
		t.Fatalf("clearing = %+v\nwant       %+v", got, want)
	}
}

func testIdempotency(t *testing.T, st store.Store) {
	ctx := t.Context()
	get := func(principal, key string) (store.IdempotencyRecord, error) {
		var r store.IdempotencyRecord
		err := st.Read(ctx, func(tx store.Tx) error {
			var err error
			r, err = tx.GetIdempotency(ctx, principal, key)
			return err
		})
		return r, err
	}
	_, err := get("a", "k1")
	wantErr(t, "GetIdempotency of an unknown key", err, store.ErrNotFound)
	rec := store.IdempotencyRecord{Principal: "a", Key: "k1", RequestHash: "h1", Status: 200,
		Body: []byte(`{"transfer_id":7,"amount":1.5}`), Created: at(3)}
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.PutIdempotency(ctx, rec) })
	got, err := get("a", "k1")
	if err != nil {
		t.Fatal(err)
	}
	sameTime(t, "record Created", got.Created, rec.Created)
	if got.Principal != "a" || got.Key != "k1" || got.RequestHash != "h1" || got.Status != 200 ||
		!bytes.Equal(got.Body, rec.Body) {
		t.Fatalf("GetIdempotency = %+v, want %+v", got, rec)
	}
	// The first record stands: a second one under the same key is refused.
	dup := rec
	dup.RequestHash, dup.Body = "h2", []byte(`{}`)
	err = st.Write(ctx, func(tx store.Tx) error { return tx.PutIdempotency(ctx, dup) })
	wantErr(t, "PutIdempotency of a used key", err, store.ErrConflict)
	if got, _ := get("a", "k1"); got.RequestHash != "h1" {
		t.Fatalf("a refused record replaced the first: %+v", got)
	}
	// Keys are per principal.
	other := rec
	other.Principal, other.RequestHash = "b", "hb"
	write(t, st, func(ctx context.Context, tx store.Tx) error { return tx.PutIdempotency(ctx, other) })
	if got, err := get("b", "k1"); err != nil || got.RequestHash != "hb" {
		t.Fatalf("GetIdempotency(b, k1) = %+v, %v", got, err)
	}
	_, err = get("a", "k2")
	wantErr(t, "GetIdempotency of another key", err, store.ErrNotFound)
}
