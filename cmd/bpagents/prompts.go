package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/bpagents/bpagents/internal/api"
	"github.com/bpagents/bpagents/internal/client"
	"github.com/bpagents/bpagents/internal/economy"
	"github.com/bpagents/bpagents/internal/ids"
	"github.com/bpagents/bpagents/internal/money"
)

// The operator's side of human attention: the prompt queue, rating (by flags
// or interactively) and the messages agents sent to "human". Everything an
// agent wrote is shown through safeText: agents are hostile, and a terminal
// obeys escape sequences.

func cmdPrompts(ctx context.Context, args []string) error {
	return runPrompts(ctx, args, os.Stdout)
}

func cmdRate(ctx context.Context, args []string) error {
	return runRate(ctx, args, os.Stdin, os.Stdout)
}

func cmdMessages(ctx context.Context, args []string) error {
	return runMessages(ctx, args, os.Stdout)
}

func runPrompts(ctx context.Context, args []string, out io.Writer) error {
	fs, cf := clientCommand("prompts")
	status := fs.String("status", "pending", "pending, rated or expired")
	agent := fs.String("agent", "", "only this agent's prompts")
	limit := fs.Int("limit", 100, "how many (at most 500)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	q := url.Values{"status": {*status}, "limit": {strconv.Itoa(*limit)}}
	if *agent != "" {
		q.Set("agent", *agent)
	}
	var list api.PromptList
	if err := c.Get(ctx, "/human/prompts?"+q.Encode(), &list); err != nil {
		return err
	}
	if *cf.json {
		return writeJSON(out, list)
	}
	if len(list.Prompts) == 0 {
		fmt.Fprintf(out, "no %s prompts\n", *status)
		return nil
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if *status == "rated" {
		fmt.Fprintln(w, "ID\tAGENT\tBID\tSCORES\tREWARD\tAGE\tPROMPT")
	} else {
		fmt.Fprintln(w, "ID\tAGENT\tBID\tAGE\tPROMPT")
	}
	now := time.Now()
	for _, p := range list.Prompts {
		if p.Scores != nil {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d/%d/%d\t%s\t%s\t%s\n", p.ID, p.AgentID, p.BidAmount, p.Scores.Interesting,
				p.Scores.Useful, p.Scores.Understandable, p.Reward, age(now, p.CreatedAt), firstLine(p.Content, 60))
			continue
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", p.ID, p.AgentID, p.BidAmount, age(now, p.CreatedAt), firstLine(p.Content, 60))
	}
	return w.Flush()
}

// rateUsage explains both ways of rating.
const rateUsage = `Usage:
  bpagents rate [PROMPT_ID]        interactive: show each pending prompt (or the given one) in full
                                   and ask for the three scores and a reason
  bpagents rate PROMPT_ID --interesting N --useful N --understandable N [--reason TEXT]

Scores are whole numbers from 0 to 10. A rating mints
(interesting + useful + understandable) × economy.reward_weight credits to the prompt's agent.
`

func runRate(ctx context.Context, args []string, in io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("rate", flag.ContinueOnError)
	cf := addClientFlags(fs)
	interesting := fs.Int("interesting", -1, "score 0-10")
	useful := fs.Int("useful", -1, "score 0-10")
	understandable := fs.Int("understandable", -1, "score 0-10")
	reason := fs.String("reason", "", "why (optional)")
	setUsage(fs, "rate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Flags may come after the prompt id too.
	var id string
	if fs.NArg() > 0 {
		id = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("rate: unexpected argument %q\n%s", fs.Arg(0), rateUsage)
		}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	c, err := cf.client()
	if err != nil {
		return err
	}
	if given["interesting"] || given["useful"] || given["understandable"] {
		if id == "" || !given["interesting"] || !given["useful"] || !given["understandable"] {
			return errors.New("rate: with score flags, give PROMPT_ID and all of --interesting, --useful and --understandable\n" + rateUsage)
		}
		res, err := postRating(ctx, c, economy.RatingRequest{PromptID: id, Interesting: interesting, Useful: useful,
			Understandable: understandable, Reason: *reason})
		if err != nil {
			return err
		}
		if *cf.json {
			return writeJSON(out, res)
		}
		fmt.Fprintln(out, ratedLine(res))
		return nil
	}
	var queue []economy.PromptView
	if id != "" {
		var p economy.PromptView
		if err := c.Get(ctx, "/human/prompts/"+url.PathEscape(id), &p); err != nil {
			return err
		}
		if p.Status != "pending" {
			return fmt.Errorf("prompt %s is %s: only pending prompts can be rated", p.ID, p.Status)
		}
		queue = []economy.PromptView{p}
	} else {
		var list api.PromptList
		if err := c.Get(ctx, "/human/prompts?status=pending&limit=500", &list); err != nil {
			return err
		}
		queue = list.Prompts
	}
	return rateInteractively(ctx, c, queue, bufio.NewReader(in), out)
}

// errQuit ends an interactive session at the operator's request.
var errQuit = errors.New("quit")

// errSkip passes over the prompt being rated.
var errSkip = errors.New("skip")

// rateInteractively shows each prompt in full and asks for its rating.
func rateInteractively(ctx context.Context, c *client.Client, queue []economy.PromptView, in *bufio.Reader, out io.Writer) error {
	if len(queue) == 0 {
		fmt.Fprintln(out, "no prompts await a rating")
		return nil
	}
	fmt.Fprintf(out, "%d prompt(s) await a rating, highest bid first. At any question: s skips the prompt, q quits.\n", len(queue))
	rated, skipped := 0, 0
	var minted money.Micro
	var failed error
	for i, p := range queue {
		showPrompt(out, p, i+1, len(queue))
		req, err := askRating(in, out, p.ID)
		if errors.Is(err, errSkip) {
			fmt.Fprintf(out, "skipped %s\n", p.ID)
			skipped++
			continue
		}
		if errors.Is(err, errQuit) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %s was not rated", err, p.ID)
		}
		res, err := postRating(ctx, c, req)
		if err != nil {
			// Another operator may have rated it, or it expired meanwhile: say so and go on.
			fmt.Fprintf(out, "could not rate %s: %v\n", p.ID, err)
			failed = errors.Join(failed, err)
			continue
		}
		fmt.Fprintln(out, ratedLine(res))
		rated++
		minted += res.Reward
	}
	fmt.Fprintf(out, "\nrated %d, skipped %d; minted %s credits\n", rated, skipped, minted)
	if failed != nil && rated == 0 {
		return failed
	}
	return nil
}

func showPrompt(out io.Writer, p economy.PromptView, n, of int) {
	now := time.Now()
	fmt.Fprintf(out, "\n── prompt %d of %d: %s ──\n", n, of, p.ID)
	fmt.Fprintf(out, "from     %s (execution %s, cycle %d)\n", p.AgentID, p.ExecutionID, p.Cycle)
	fmt.Fprintf(out, "bid      %s credits\n", p.BidAmount)
	fmt.Fprintf(out, "age      %s, expires in %s\n\n", age(now, p.CreatedAt), until(now, p.ExpiresAt))
	content := safeText(p.Content)
	fmt.Fprint(out, content)
	if !strings.HasSuffix(content, "\n") {
		fmt.Fprintln(out)
	}
	fmt.Fprintln(out)
}

// askRating asks for the three scores (re-asking until each is a whole
// number from 0 to 10) and a reason.
func askRating(in *bufio.Reader, out io.Writer, id string) (economy.RatingRequest, error) {
	req := economy.RatingRequest{PromptID: id}
	for _, q := range []struct {
		name string
		dst  **int
	}{{"interesting", &req.Interesting}, {"useful", &req.Useful}, {"understandable", &req.Understandable}} {
		for {
			fmt.Fprintf(out, "%s (0-10): ", q.name)
			line, err := readLine(in)
			if err != nil {
				return req, err
			}
			switch strings.ToLower(line) {
			case "s", "skip":
				return req, errSkip
			case "q", "quit":
				return req, errQuit
			}
			n, err := strconv.Atoi(line)
			if err != nil || n < economy.MinScore || n > economy.MaxScore {
				fmt.Fprintf(out, "  %q is not a whole number from 0 to 10 (s skips this prompt, q quits)\n", line)
				continue
			}
			*q.dst = &n
			break
		}
	}
	fmt.Fprint(out, "reason (optional, one line): ")
	line, err := readLine(in)
	if err != nil {
		return req, err
	}
	req.Reason = line
	return req, nil
}

// readLine reads one line without its line ending. A last line without a
// newline counts; end of input before any character is an error.
func readLine(in *bufio.Reader) (string, error) {
	line, err := in.ReadString('\n')
	if errors.Is(err, io.EOF) && line != "" {
		err = nil
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			return "", errors.New("input ended")
		}
		return "", err
	}
	return strings.TrimSpace(line), nil
}

func postRating(ctx context.Context, c *client.Client, req economy.RatingRequest) (economy.RatingResult, error) {
	var res economy.RatingResult
	// A fresh key per rating: should the request be retried, nothing is minted twice.
	err := c.Do(ctx, "POST", "/human/reward", req, &res, map[string]string{"Idempotency-Key": ids.New("rate")})
	return res, err
}

func ratedLine(res economy.RatingResult) string {
	s := res.Prompt.Scores
	if s == nil {
		return fmt.Sprintf("rated %s: %s", res.Prompt.ID, res.Detail)
	}
	return fmt.Sprintf("rated %s: %d+%d+%d = %d points; %s", res.Prompt.ID, s.Interesting, s.Useful, s.Understandable,
		res.Points, res.Detail)
}

func runMessages(ctx context.Context, args []string, out io.Writer) error {
	fs, cf := clientCommand("messages")
	limit := fs.Int("limit", 100, "how many (at most 500)")
	before := fs.Int64("before", 0, "continue a listing: only messages older than this (next_before)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	q := url.Values{"limit": {strconv.Itoa(*limit)}}
	if *before > 0 {
		q.Set("before", strconv.FormatInt(*before, 10))
	}
	var page economy.MessagePage
	if err := c.Get(ctx, "/human/messages?"+q.Encode(), &page); err != nil {
		return err
	}
	if *cf.json {
		return writeJSON(out, page)
	}
	if len(page.Messages) == 0 {
		fmt.Fprintln(out, "no messages to human")
		return nil
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tFROM\tAGE\tMESSAGE")
	now := time.Now()
	for _, m := range page.Messages {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", m.ID, m.From, age(now, m.Timestamp), firstLine(m.Content, 80))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if page.NextBefore > 0 {
		fmt.Fprintf(out, "older: bpagents messages --before %d\n", page.NextBefore)
	}
	return nil
}

func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// safeText makes agent-written text safe to print on a terminal: control
// characters other than newline and tab, and the bidirectional-override
// characters that can make text read differently than it is, are shown as
// escapes instead of being obeyed.
func safeText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r < 0x80 && unicode.IsControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// firstLine is the first non-empty line of s, made safe, cut to max runes.
func firstLine(s string, max int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	line := strings.TrimSpace(lines[0])
	more := len(lines) > 1
	line = strings.ReplaceAll(safeText(line), "\t", " ")
	if utf8.RuneCountInString(line) > max {
		line = string([]rune(line)[:max-1])
		more = true
	}
	if more {
		line += "…"
	}
	return line
}

// age is how long ago an RFC 3339 time was, compactly.
func age(now time.Time, when string) string {
	t, err := time.Parse(time.RFC3339Nano, when)
	if err != nil {
		return "?"
	}
	return compactDuration(now.Sub(t))
}

// until is how long until an RFC 3339 time, compactly.
func until(now time.Time, when string) string {
	t, err := time.Parse(time.RFC3339Nano, when)
	if err != nil {
		return "?"
	}
	if !t.After(now) {
		return "0s (expired)"
	}
	return compactDuration(t.Sub(now))
}

func compactDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
