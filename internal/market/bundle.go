package market

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Bundle is an all-or-nothing request for resources: CPUMillis of CPU and
// MemoryMB of memory for DurationSeconds of wall clock, plus Tokens and
// Attention. In JSON it reads
//
//	{"cpu":0.5,"memory_mb":256,"duration_seconds":10,"tokens":0,"attention":0}
//
// with cpu in cores (at most 3 decimals) and every other field an integer.
type Bundle struct {
	CPUMillis       int64
	MemoryMB        int64
	DurationSeconds int64
	Tokens          int64
	Attention       int64
}

// Limits are what a valid bundle must respect.
type Limits struct {
	// Capacity is the total of each resource; no bundle may ask for more.
	Capacity Capacity
	// MaxDurationSeconds is the longest duration a bundle may ask for (≥ 1).
	MaxDurationSeconds int64
}

// Quantity returns the bundle's amount of r in base units (millicores for
// CPU), or 0 for an unknown resource. Duration is not a resource.
func (b Bundle) Quantity(r Resource) int64 {
	return b.Demand().Of(r)
}

// Demand returns the capacity the bundle occupies while it runs.
func (b Bundle) Demand() Capacity {
	return Capacity{CPUMillis: b.CPUMillis, MemoryMB: b.MemoryMB, Tokens: b.Tokens, Attention: b.Attention}
}

// Validate checks the bundle against l and returns a *FieldError naming the
// first field at fault: cpu and memory_mb must be positive, duration_seconds
// between 1 and l.MaxDurationSeconds, tokens and attention not negative, and
// no quantity above its resource's capacity.
func (b Bundle) Validate(l Limits) error {
	switch {
	case b.CPUMillis <= 0:
		return fieldErr("cpu", "must be greater than 0 (got %s)", FormatCores(b.CPUMillis))
	case b.MemoryMB <= 0:
		return fieldErr("memory_mb", "must be greater than 0 (got %d)", b.MemoryMB)
	case b.DurationSeconds < 1 || b.DurationSeconds > l.MaxDurationSeconds:
		return fieldErr("duration_seconds", "must be between 1 and %d (got %d)", l.MaxDurationSeconds, b.DurationSeconds)
	case b.Tokens < 0:
		return fieldErr("tokens", "must not be negative (got %d)", b.Tokens)
	case b.Attention < 0:
		return fieldErr("attention", "must not be negative (got %d)", b.Attention)
	}
	for _, r := range Resources {
		if q, c := b.Quantity(r), l.Capacity.Of(r); q > c {
			return fieldErr(string(r), "%s exceeds the capacity of %s", r.Format(q), r.Format(c))
		}
	}
	return nil
}

// bundleField describes one JSON field of a bundle.
type bundleField struct {
	name  string
	scale int // decimal places of the JSON unit: 3 for cores → millicores
	ptr   func(*Bundle) *int64
}

var bundleFields = [...]bundleField{
	{"cpu", 3, func(b *Bundle) *int64 { return &b.CPUMillis }},
	{"memory_mb", 0, func(b *Bundle) *int64 { return &b.MemoryMB }},
	{"duration_seconds", 0, func(b *Bundle) *int64 { return &b.DurationSeconds }},
	{"tokens", 0, func(b *Bundle) *int64 { return &b.Tokens }},
	{"attention", 0, func(b *Bundle) *int64 { return &b.Attention }},
}

// MarshalJSON writes the bundle with cpu in cores and every field present.
func (b Bundle) MarshalJSON() ([]byte, error) {
	buf := make([]byte, 0, 96)
	for i, f := range bundleFields {
		if i == 0 {
			buf = append(buf, '{')
		} else {
			buf = append(buf, ',')
		}
		buf = strconv.AppendQuote(buf, f.name)
		buf = append(buf, ':')
		v := *f.ptr(&b)
		if f.scale == 3 {
			buf = append(buf, FormatCores(v)...)
		} else {
			buf = strconv.AppendInt(buf, v, 10)
		}
	}
	return append(buf, '}'), nil
}

// UnmarshalJSON reads a bundle object exactly: numbers are parsed from their
// decimal text (cpu to the millicore, the rest as whole numbers), and strings,
// negative values, inexact exponents and unknown fields are refused with a
// *FieldError. Missing fields are zero; Validate decides whether that is
// acceptable. JSON null leaves the bundle unchanged.
func (b *Bundle) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return &FieldError{Field: "bundle", Problem: "must be a JSON object"}
	}
	if raw == nil {
		return nil
	}
	var out Bundle
	for _, f := range bundleFields {
		text, ok := raw[f.name]
		if !ok {
			continue
		}
		v, err := parseScaled(string(text), f.scale)
		if err != nil {
			return &FieldError{Field: f.name, Problem: err.Error()}
		}
		*f.ptr(&out) = v
	}
	if len(raw) > countPresent(raw) {
		return unknownFieldErr(raw)
	}
	*b = out
	return nil
}

func countPresent(raw map[string]json.RawMessage) int {
	n := 0
	for _, f := range bundleFields {
		if _, ok := raw[f.name]; ok {
			n++
		}
	}
	return n
}

// unknownFieldErr names the first unknown field in sorted order, so the
// message does not depend on map iteration.
func unknownFieldErr(raw map[string]json.RawMessage) error {
	known := make([]string, len(bundleFields))
	for i, f := range bundleFields {
		known[i] = f.name
	}
	var unknown []string
	for k := range raw {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	return &FieldError{Field: "bundle", Problem: fmt.Sprintf("unknown field %q (known: %s)",
		shorten(unknown[0]), strings.Join(known, ", "))}
}
