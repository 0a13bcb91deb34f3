package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a run measured.
type Report struct {
	Clients int
	Elapsed time.Duration
	// Requests counts every answered HTTP request, retries included.
	Requests int64
	// Ops holds one line per operation, in name order.
	Ops []OpStats
	// ServerErrors counts 5xx answers; TransportErrors requests that got no
	// answer (refused connection, timeout). Both must be zero.
	ServerErrors    int64
	TransportErrors int64
	// Samples of both, for the log.
	ServerErrorSamples    []string
	TransportErrorSamples []string
	// Keys is every Idempotency-Key sent, with what came back.
	Keys map[string]*KeyRecord
	// Retried counts keys sent more than once; ConcurrentRetried those
	// whose copies went out together.
	Retried           int
	ConcurrentRetried int
	// Violations lists keys whose answers broke the idempotency promise.
	Violations []string
}

// OpStats summarises one operation.
type OpStats struct {
	Op       Op
	Count    int64
	OK       int64 // 2xx
	Refused  int64 // 4xx
	Failed   int64 // 5xx and no answer
	PerSec   float64
	P50, P99 time.Duration
	Max      time.Duration
	// Statuses counts answers by status code.
	Statuses map[int]int64
}

func (r *runner) report(clients []*client, elapsed time.Duration) *Report {
	rep := &Report{Clients: len(clients), Elapsed: elapsed, Keys: r.keys,
		ServerErrorSamples: r.serverErrors, TransportErrorSamples: r.transport}
	lat := map[Op][]time.Duration{}
	stats := map[Op]*OpStats{}
	get := func(op Op) *OpStats {
		s, ok := stats[op]
		if !ok {
			s = &OpStats{Op: op, Statuses: map[int]int64{}}
			stats[op] = s
		}
		return s
	}
	for _, c := range clients {
		for op, l := range c.lat {
			lat[op] = append(lat[op], l...)
		}
		for _, oc := range c.counts {
			s := get(oc.op)
			s.Count++
			s.Statuses[oc.status]++
			rep.Requests++
			switch {
			case oc.status == 0:
				s.Failed++
				rep.TransportErrors++
			case oc.status >= 500:
				s.Failed++
				rep.ServerErrors++
			case oc.status >= 400:
				s.Refused++
			default:
				s.OK++
			}
		}
	}
	for op, s := range stats {
		l := lat[op]
		slices.Sort(l)
		s.P50, s.P99 = quantile(l, 0.50), quantile(l, 0.99)
		if len(l) > 0 {
			s.Max = l[len(l)-1]
		}
		s.PerSec = float64(s.Count) / elapsed.Seconds()
		rep.Ops = append(rep.Ops, *s)
	}
	sort.Slice(rep.Ops, func(i, j int) bool { return rep.Ops[i].Op < rep.Ops[j].Op })
	for _, k := range slices.Sorted(maps.Keys(r.keys)) {
		rec := r.keys[k]
		if rec.Sent > 1 {
			rep.Retried++
			if rec.Concurrent {
				rep.ConcurrentRetried++
			}
		}
		if rec.Violation != "" {
			rep.Violations = append(rep.Violations, fmt.Sprintf("%s (%s by %s): %s", k, rec.Op, rec.Agent, rec.Violation))
		}
	}
	return rep
}

// quantile returns the q-quantile of sorted (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Op returns the line of one operation (zero if it never ran).
func (r *Report) Op(op Op) OpStats {
	for _, s := range r.Ops {
		if s.Op == op {
			return s
		}
	}
	return OpStats{Op: op}
}

// Write prints the report as a table.
func (r *Report) Write(w io.Writer) {
	fmt.Fprintf(w, "%d clients, %s, %d requests (%.0f/s); 5xx: %d; no answer: %d; keys retried: %d (%d concurrently)\n",
		r.Clients, r.Elapsed.Round(time.Millisecond), r.Requests, float64(r.Requests)/r.Elapsed.Seconds(),
		r.ServerErrors, r.TransportErrors, r.Retried, r.ConcurrentRetried)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\trequests\tper s\t2xx\t4xx\tfailed\tp50 ms\tp99 ms\tmax ms\tstatuses\t")
	for _, s := range r.Ops {
		var st []string
		for _, code := range slices.Sorted(maps.Keys(s.Statuses)) {
			st = append(st, fmt.Sprintf("%d×%d", code, s.Statuses[code]))
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%d\t%d\t%d\t%.2f\t%.2f\t%.1f\t%s\t\n", s.Op, s.Count, s.PerSec, s.OK, s.Refused, s.Failed,
			ms(s.P50), ms(s.P99), ms(s.Max), strings.Join(st, " "))
	}
	tw.Flush()
	for _, s := range r.ServerErrorSamples {
		fmt.Fprintln(w, "5xx:", s)
	}
	for _, s := range r.TransportErrorSamples {
		fmt.Fprintln(w, "no answer:", s)
	}
	for _, v := range r.Violations {
		fmt.Fprintln(w, "idempotency violation:", v)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// jsonString returns the top-level string member name of a JSON object, or "".
func jsonString(body []byte, name string) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	var s string
	if json.Unmarshal(m[name], &s) != nil {
		return ""
	}
	return s
}
