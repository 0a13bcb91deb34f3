package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// StreamEvent is one Server-Sent Event.
type StreamEvent struct {
	ID    string
	Event string // "" for the default "message"
	Data  string
}

// Stream reads the Server-Sent Events at path and calls fn for each, until
// ctx ends or fn returns an error. A dropped connection is reopened after a
// pause, resuming after the last event id received (Last-Event-ID), as a
// browser's EventSource does; answers other than 200 end the stream with
// their problem. lastID, when set, is where the first connection resumes.
func (c *Client) Stream(ctx context.Context, path, lastID string, fn func(StreamEvent) error) error {
	// Client.HTTP has an overall timeout, fatal to a stream: use the same
	// transport without one.
	hc := &http.Client{Transport: c.HTTP.Transport}
	retry := 2 * time.Second
	for {
		err := c.streamOnce(ctx, hc, path, &lastID, &retry, fn)
		var pe *ProblemError
		var fe fnError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &pe):
			return err
		case errors.As(err, &fe):
			return fe.err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retry):
		}
	}
}

// fnError carries an error returned by the caller's function.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

func (c *Client) streamOnce(ctx context.Context, hc *http.Client, path string, lastID *string, retry *time.Duration,
	fn func(StreamEvent) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if *lastID != "" {
		req.Header.Set("Last-Event-ID", *lastID)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return problemFrom(resp.StatusCode, data)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var ev StreamEvent
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" { // dispatch
			if len(data) > 0 {
				ev.Data = strings.Join(data, "\n")
				if ev.ID != "" {
					*lastID = ev.ID
				}
				if err := fn(ev); err != nil {
					return fnError{err}
				}
			}
			ev, data = StreamEvent{}, nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue // a comment: heartbeat
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.ID = value
		case "event":
			ev.Event = value
		case "data":
			data = append(data, value)
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil && ms > 0 {
				*retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return io.ErrUnexpectedEOF
}
