package market

import (
	"fmt"
	"strings"
)

// Resource names a market. Its string is the name used in JSON and configuration.
type Resource string

// The resources of the market. Each has a base unit used internally: CPU is
// counted in millicores (JSON speaks cores with at most 3 decimals), the others
// in whole units.
const (
	CPU       Resource = "cpu"       // cores; base unit millicores
	Memory    Resource = "memory_mb" // megabytes
	Tokens    Resource = "tokens"    // model tokens
	Attention Resource = "attention" // the operator's attention
)

const numResources = 4

// Resources lists every resource in its fixed display order.
var Resources = [numResources]Resource{CPU, Memory, Tokens, Attention}

// index returns r's position in Resources, or -1.
func (r Resource) index() int {
	switch r {
	case CPU:
		return 0
	case Memory:
		return 1
	case Tokens:
		return 2
	case Attention:
		return 3
	}
	return -1
}

// ParseResource returns the resource named s, or an error listing the known names.
func ParseResource(s string) (Resource, error) {
	if r := Resource(s); r.index() >= 0 {
		return r, nil
	}
	names := make([]string, len(Resources))
	for i, r := range Resources {
		names[i] = string(r)
	}
	return "", fmt.Errorf("unknown resource %q (known: %s)", shorten(s), strings.Join(names, ", "))
}

// Format writes a base-unit quantity of r in its JSON unit: cores for CPU
// ("0.5", "2"), plain integers otherwise.
func (r Resource) Format(q int64) string {
	if r == CPU {
		return FormatCores(q)
	}
	return fmt.Sprint(q)
}

// Capacity is an amount of every resource in base units: a total capacity,
// what is free, or what a clearing allocated.
type Capacity struct {
	CPUMillis int64
	MemoryMB  int64
	Tokens    int64
	Attention int64
}

// Of returns the amount of resource r (0 for an unknown resource).
func (c Capacity) Of(r Resource) int64 {
	v := c.vector()
	if i := r.index(); i >= 0 {
		return v[i]
	}
	return 0
}

// Sub returns c minus d, resource by resource; the free capacity is the total
// minus the Demand of every bundle still running.
func (c Capacity) Sub(d Capacity) Capacity {
	a, b := c.vector(), d.vector()
	for i := range a {
		a[i] -= b[i]
	}
	return a.capacity()
}

// Validate checks a configured total capacity: CPU and memory must be
// positive (every bundle needs both), tokens and attention must not be
// negative (zero means the resource is not offered).
func (c Capacity) Validate() error {
	if c.CPUMillis <= 0 {
		return &FieldError{Field: string(CPU), Problem: "capacity must be greater than 0"}
	}
	if c.MemoryMB <= 0 {
		return &FieldError{Field: string(Memory), Problem: "capacity must be greater than 0"}
	}
	if c.Tokens < 0 {
		return &FieldError{Field: string(Tokens), Problem: "capacity must not be negative"}
	}
	if c.Attention < 0 {
		return &FieldError{Field: string(Attention), Problem: "capacity must not be negative"}
	}
	return nil
}

// vector is a per-resource amount indexed like Resources; clearing works on
// vectors because indexing beats field switches in hot loops.
type vector [numResources]int64

func (c Capacity) vector() vector {
	return vector{c.CPUMillis, c.MemoryMB, c.Tokens, c.Attention}
}

func (v vector) capacity() Capacity {
	return Capacity{CPUMillis: v[0], MemoryMB: v[1], Tokens: v[2], Attention: v[3]}
}

// fits reports whether demand v fits in free; callers clamp free at zero so
// that a zero demand always fits.
func (v *vector) fits(free *vector) bool {
	return v[0] <= free[0] && v[1] <= free[1] && v[2] <= free[2] && v[3] <= free[3]
}

// take subtracts demand d from v.
func (v *vector) take(d *vector) {
	for i := range v {
		v[i] -= d[i]
	}
}

// FieldError is a problem with one named field of a bundle, capacity or rule
// set. Its message names the field first ("cpu: must be greater than 0") so it
// can be shown to an agent as the detail of an HTTP 400 response.
type FieldError struct {
	Field   string // JSON name of the field, e.g. "cpu" or "duration_seconds"
	Problem string // what is wrong with it
}

// Error returns "field: problem".
func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// shorten keeps hostile input from flooding an error message.
func shorten(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
