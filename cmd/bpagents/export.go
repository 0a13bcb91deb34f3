package main

// `bpagents export`: the whole audit log or ledger, paged through the API
// (/events, /admin/ledger), as JSON lines or CSV. Progress goes to stderr.

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"

	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/client"
)

// exportPage is how many rows one API call fetches.
const exportPage = 500

func cmdExport(ctx context.Context, args []string) error {
	return runExport(ctx, args, os.Stdout, os.Stderr)
}

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs, cf := clientCommand("export")
	what := fs.String("what", "events", "events or ledger")
	format := fs.String("format", "jsonl", "jsonl (one JSON object a line) or csv (with a header row)")
	outPath := fs.String("out", "", "file to write (default: stdout); written whole or not at all")
	after := fs.Int64("after", 0, "start after this event seq or transfer id")
	if _, err := parseWithArgs(fs, args, 0); err != nil {
		return err
	}
	if *what != "events" && *what != "ledger" {
		return fmt.Errorf("export: --what must be events or ledger, got %q", *what)
	}
	if *format != "jsonl" && *format != "csv" {
		return fmt.Errorf("export: --format must be jsonl or csv, got %q", *format)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	out := stdout
	var tmp *os.File
	if *outPath != "" {
		if tmp, err = os.CreateTemp(filepath.Dir(*outPath), "."+filepath.Base(*outPath)+".*"); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		defer func() {
			if tmp != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		out = tmp
	}
	bw := bufio.NewWriterSize(out, 256<<10)
	rows := newRowWriter(bw, *format, *what)
	prog := newProgress(stderr, *what)
	var n int64
	if *what == "events" {
		n, err = exportEvents(ctx, c, *after, rows, prog)
	} else {
		n, err = exportLedger(ctx, c, *after, rows, prog)
	}
	if err == nil {
		err = rows.flush()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		prog.abort()
		return fmt.Errorf("export: %w", err)
	}
	if tmp != nil {
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if err := os.Rename(tmp.Name(), *outPath); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		tmp = nil
	}
	prog.done(n, *outPath)
	return nil
}

func exportEvents(ctx context.Context, c *client.Client, after int64, rows *rowWriter, prog *progress) (int64, error) {
	var n int64
	for {
		var page api.EventPage
		if err := c.Get(ctx, fmt.Sprintf("/events?after=%d&limit=%d", after, exportPage), &page); err != nil {
			return n, err
		}
		for _, e := range page.Events {
			if err := rows.event(e); err != nil {
				return n, err
			}
			after = e.Seq
			n++
		}
		prog.update(n, after, page.LastSeq)
		if len(page.Events) < exportPage {
			return n, nil
		}
	}
}

func exportLedger(ctx context.Context, c *client.Client, after int64, rows *rowWriter, prog *progress) (int64, error) {
	var n int64
	for {
		var page api.LedgerPage
		if err := c.Get(ctx, fmt.Sprintf("/admin/ledger?after=%d&limit=%d", after, exportPage), &page); err != nil {
			return n, err
		}
		for _, t := range page.Entries {
			if err := rows.transfer(t); err != nil {
				return n, err
			}
			after = t.ID
			n++
		}
		prog.update(n, after, page.LastID)
		if page.NextAfter == 0 {
			return n, nil
		}
	}
}

// rowWriter writes events or transfers as JSON lines or CSV rows.
type rowWriter struct {
	w      io.Writer
	csv    *csv.Writer
	header []string
}

var (
	eventColumns  = []string{"seq", "time", "cycle", "type", "agent_id", "ref", "data"}
	ledgerColumns = []string{"id", "time", "cycle", "kind", "from", "to", "amount", "ref", "memo"}
)

func newRowWriter(w io.Writer, format, what string) *rowWriter {
	r := &rowWriter{w: w}
	if format == "csv" {
		r.csv = csv.NewWriter(w)
		r.header = eventColumns
		if what == "ledger" {
			r.header = ledgerColumns
		}
	}
	return r
}

func (r *rowWriter) row(v any, cells func() []string) error {
	if r.csv == nil {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(r.w, "%s\n", b)
		return err
	}
	if r.header != nil {
		if err := r.csv.Write(r.header); err != nil {
			return err
		}
		r.header = nil
	}
	return r.csv.Write(cells())
}

func (r *rowWriter) event(e api.EventView) error {
	return r.row(e, func() []string {
		return []string{strconv.FormatInt(e.Seq, 10), e.Time, strconv.FormatInt(e.Cycle, 10), e.Type, e.AgentID, e.Ref, string(e.Data)}
	})
}

func (r *rowWriter) transfer(t api.LedgerEntry) error {
	return r.row(t, func() []string {
		return []string{strconv.FormatInt(t.ID, 10), t.Time, strconv.FormatInt(t.Cycle, 10), t.Kind, t.From, t.To,
			t.Amount.String(), t.Ref, t.Memo}
	})
}

// flush writes the CSV header of an empty export and flushes the CSV writer.
func (r *rowWriter) flush() error {
	if r.csv == nil {
		return nil
	}
	if r.header != nil {
		if err := r.csv.Write(r.header); err != nil {
			return err
		}
	}
	r.csv.Flush()
	return r.csv.Error()
}

// progress reports an export's progress on stderr: a line rewritten in
// place on a terminal, a line every few seconds otherwise, and a summary.
type progress struct {
	w     io.Writer
	what  string
	tty   bool
	start time.Time
	last  time.Time
	shown bool
}

func newProgress(w io.Writer, what string) *progress {
	f, ok := w.(*os.File)
	now := time.Now()
	return &progress{w: w, what: what, tty: ok && isTerminal(f), start: now, last: now}
}

func (p *progress) update(n, at, last int64) {
	now := time.Now()
	every := 2 * time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	if now.Sub(p.last) < every {
		return
	}
	p.last = now
	pct := 100.0
	if last > 0 {
		pct = 100 * float64(at) / float64(last)
	}
	rate := float64(n) / now.Sub(p.start).Seconds()
	line := fmt.Sprintf("exporting %s: %d written, at %d of %d (%.0f%%), %.0f/s", p.what, n, at, last, pct, rate)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.shown = true
	} else {
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) abort() {
	if p.shown {
		fmt.Fprintln(p.w)
	}
}

func (p *progress) done(n int64, path string) {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
	dest := "stdout"
	if path != "" {
		dest = path
	}
	fmt.Fprintf(p.w, "exported %d %s to %s in %s\n", n, p.what, dest, time.Since(p.start).Round(time.Millisecond))
}
