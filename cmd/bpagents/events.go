package main

// `bpagents events`: the audit log, and with --follow the live stream
// (/events/stream, Server-Sent Events) until interrupted.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/client"
)

func cmdEvents(ctx context.Context, args []string) error {
	return runEvents(ctx, args, os.Stdout)
}

func runEvents(ctx context.Context, args []string, out io.Writer) error {
	fs, cf := clientCommand("events")
	after := fs.Int64("after", 0, "only events after this sequence number (with --follow: stream from there)")
	typ := fs.String("type", "", "event type, or a prefix ending in '.'")
	agent := fs.String("agent", "", "only this agent's events")
	limit := fs.Int("limit", 100, "how many (with --follow: how many recent events to show first)")
	follow := fs.Bool("follow", false, "keep running and print new events as they happen")
	if _, err := parseWithArgs(fs, args, 0); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	filter := url.Values{}
	if *typ != "" {
		filter.Set("type", *typ)
	}
	if *agent != "" {
		filter.Set("agent", *agent)
	}
	if !*follow {
		q := url.Values{"limit": {fmt.Sprint(*limit)}}
		for k, v := range filter {
			q[k] = v
		}
		if *after > 0 {
			q.Set("after", fmt.Sprint(*after))
		}
		var page api.EventPage
		if err := c.Get(ctx, "/events?"+q.Encode(), &page); err != nil {
			return err
		}
		if *cf.json {
			return writeJSON(out, page)
		}
		for _, e := range page.Events {
			printEvent(out, e, false)
		}
		return nil
	}
	afterGiven := false
	fs.Visit(func(f *flag.Flag) { afterGiven = afterGiven || f.Name == "after" })
	start := *after
	if !afterGiven {
		if start, err = recentEvents(ctx, c, filter, *limit, out, *cf.json); err != nil {
			return err
		}
	}
	q := url.Values{"after": {fmt.Sprint(start)}}
	for k, v := range filter {
		q[k] = v
	}
	return c.Stream(ctx, "/events/stream?"+q.Encode(), "", func(ev client.StreamEvent) error {
		var e api.EventView
		if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
			return fmt.Errorf("event stream: %w", err)
		}
		printEvent(out, e, *cf.json)
		return nil
	})
}

// recentEvents prints the last n events matching filter, oldest first, and
// returns the log's last seq, where following continues.
func recentEvents(ctx context.Context, c *client.Client, filter url.Values, n int, out io.Writer, asJSON bool) (int64, error) {
	var head api.EventPage
	if err := c.Get(ctx, "/events?limit=1", &head); err != nil {
		return 0, err
	}
	if n <= 0 {
		return head.LastSeq, nil
	}
	q := url.Values{"before": {fmt.Sprint(head.LastSeq + 1)}, "limit": {fmt.Sprint(n)}}
	for k, v := range filter {
		q[k] = v
	}
	var page api.EventPage
	if err := c.Get(ctx, "/events?"+q.Encode(), &page); err != nil {
		return 0, err
	}
	slices.Reverse(page.Events)
	for _, e := range page.Events {
		printEvent(out, e, asJSON)
	}
	return head.LastSeq, nil
}

// printEvent prints one event as a table row, or as one JSON line.
func printEvent(out io.Writer, e api.EventView, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(e)
		fmt.Fprintf(out, "%s\n", b)
		return
	}
	fmt.Fprintf(out, "%6d  %s  cycle %-5d %-20s %-12s %s\n", e.Seq, e.Time, e.Cycle, e.Type, e.AgentID, compact(e.Data))
}
