package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// progress prints human-readable progress lines.
type progress struct {
	mu sync.Mutex
	w  io.Writer
}

func newProgress(w io.Writer) *progress {
	if w == nil {
		w = io.Discard
	}
	return &progress{w: w}
}

func (p *progress) say(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "image: "+format+"\n", args...)
}

// phaseLog condenses a tool's chatter ("I: Retrieving x", "I: Retrieving
// y", …) into one line per phase with a count, and passes warnings and
// errors through as they come.
type phaseLog struct {
	p     *progress
	name  string
	phase string
	first string
	n     int
}

func (l *phaseLog) line(s string) {
	s = strings.TrimSpace(s)
	if s == "" {
		return
	}
	if strings.HasPrefix(s, "W:") || strings.HasPrefix(s, "E:") || !strings.HasPrefix(s, "I:") {
		l.p.say("%s: %s", l.name, s)
		return
	}
	msg := strings.TrimSpace(strings.TrimPrefix(s, "I:"))
	verb, _, _ := strings.Cut(msg, " ")
	if verb == l.phase {
		l.n++
		return
	}
	l.flush()
	l.phase, l.first, l.n = verb, msg, 1
}

func (l *phaseLog) flush() {
	switch {
	case l.n == 1:
		l.p.say("%s: %s", l.name, l.first)
	case l.n > 1:
		l.p.say("%s: %s … (%d steps)", l.name, l.first, l.n)
	}
	l.n = 0
}

// countingWriter reports how many bytes went through every so often.
type countingWriter struct {
	w     io.Writer
	p     *progress
	every int64
	what  string
	n     int64
	next  int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	if c.n >= c.next {
		if c.next > 0 {
			c.p.say("%s %d MiB", c.what, c.n>>20)
		}
		c.next = c.n + c.every
	}
	return n, err
}

// message is one line of the engine's JSON progress stream (import, build).
type message struct {
	Stream      string `json:"stream"`
	Status      string `json:"status"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// readMessages follows the engine's progress stream to its end, passing
// build steps to p (with prefix) and returning the first error it reports.
func readMessages(r io.Reader, p *progress, prefix string) error {
	dec := json.NewDecoder(r)
	for {
		var m message
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read engine progress: %w", err)
		}
		switch {
		case m.ErrorDetail != nil && m.ErrorDetail.Message != "":
			return errors.New(m.ErrorDetail.Message)
		case m.Error != "":
			return errors.New(m.Error)
		}
		if prefix == "" {
			continue
		}
		for line := range strings.Lines(m.Stream) {
			if line = strings.TrimSpace(line); line != "" {
				p.say("%s: %s", prefix, line)
			}
		}
	}
}
