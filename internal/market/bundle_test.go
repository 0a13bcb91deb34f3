package market

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestBundleJSONRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		b    Bundle
		want string
	}{
		{Bundle{500, 256, 10, 0, 0}, `{"cpu":0.5,"memory_mb":256,"duration_seconds":10,"tokens":0,"attention":0}`},
		{Bundle{2000, 4096, 300, 100000, 1}, `{"cpu":2,"memory_mb":4096,"duration_seconds":300,"tokens":100000,"attention":1}`},
		{Bundle{125, 1, 1, 7, 0}, `{"cpu":0.125,"memory_mb":1,"duration_seconds":1,"tokens":7,"attention":0}`},
		{Bundle{1, 1, 1, 0, 0}, `{"cpu":0.001,"memory_mb":1,"duration_seconds":1,"tokens":0,"attention":0}`},
		{Bundle{12340, 1, 1, 0, 0}, `{"cpu":12.34,"memory_mb":1,"duration_seconds":1,"tokens":0,"attention":0}`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			got, err := json.Marshal(tt.b)
			if err != nil || string(got) != tt.want {
				t.Fatalf("Marshal = %s, %v; want %s", got, err, tt.want)
			}
			var back Bundle
			if err := json.Unmarshal(got, &back); err != nil || back != tt.b {
				t.Fatalf("Unmarshal(%s) = %+v, %v; want %+v", got, back, err, tt.b)
			}
		})
	}
}

func TestBundleUnmarshal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		in        string
		want      Bundle
		wantField string // non-empty: a *FieldError on this field
		wantMsg   string
	}{
		{"plain", `{"cpu":0.5,"memory_mb":256,"duration_seconds":10}`, Bundle{CPUMillis: 500, MemoryMB: 256, DurationSeconds: 10}, "", ""},
		{"integer cpu", `{"cpu":2}`, Bundle{CPUMillis: 2000}, "", ""},
		{"three decimals", `{"cpu":1.234}`, Bundle{CPUMillis: 1234}, "", ""},
		{"trailing zeros", `{"cpu":0.5000000,"memory_mb":256.000}`, Bundle{CPUMillis: 500, MemoryMB: 256}, "", ""},
		{"exact exponent", `{"cpu":5e-1,"tokens":1e3,"memory_mb":2.56E2}`, Bundle{CPUMillis: 500, MemoryMB: 256, Tokens: 1000}, "", ""},
		{"exponent of zero", `{"tokens":0e99999}`, Bundle{}, "", ""},
		{"negative zero", `{"tokens":-0}`, Bundle{}, "", ""},
		{"empty object", `{}`, Bundle{}, "", ""},
		{"too many decimals", `{"cpu":0.0005}`, Bundle{}, "cpu", "cpu: 0.0005 has more than 3 decimal places"},
		{"inexact exponent", `{"cpu":1e-4}`, Bundle{}, "cpu", "more than 3 decimal places"},
		{"huge negative exponent", `{"cpu":1e-99999}`, Bundle{}, "cpu", "more than 3 decimal places"},
		{"fractional memory", `{"memory_mb":256.5}`, Bundle{}, "memory_mb", "memory_mb: 256.5 is not a whole number"},
		{"fractional tokens by exponent", `{"tokens":15e-1}`, Bundle{}, "tokens", "not a whole number"},
		{"negative cpu", `{"cpu":-0.5}`, Bundle{}, "cpu", "cpu: must not be negative (got -0.5)"},
		{"negative attention", `{"attention":-1}`, Bundle{}, "attention", "must not be negative"},
		{"too large", `{"tokens":1e30}`, Bundle{}, "tokens", "tokens: 1e30 is too large"},
		{"huge exponent", `{"tokens":1e99999}`, Bundle{}, "tokens", "is too large"},
		{"too many digits", `{"memory_mb":12345678901234567890}`, Bundle{}, "memory_mb", "is too large"},
		{"string", `{"cpu":"0.5"}`, Bundle{}, "cpu", `cpu: must be a number (got "0.5")`},
		{"null field", `{"tokens":null}`, Bundle{}, "tokens", "must be a number (got null)"},
		{"bool", `{"attention":true}`, Bundle{}, "attention", "must be a number"},
		{"unknown field", `{"cpu":1,"gpu":1,"Memory_MB":3}`, Bundle{}, "bundle", `bundle: unknown field "Memory_MB" (known: cpu, memory_mb, duration_seconds, tokens, attention)`},
		{"not an object", `[1,2]`, Bundle{}, "bundle", "bundle: must be a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got Bundle
			err := json.Unmarshal([]byte(tt.in), &got)
			if tt.wantField == "" {
				if err != nil || got != tt.want {
					t.Fatalf("Unmarshal(%s) = %+v, %v; want %+v", tt.in, got, err, tt.want)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Unmarshal(%s) error = %v; want field %q containing %q", tt.in, err, tt.wantField, tt.wantMsg)
			}
		})
	}
}

func TestBundleUnmarshalNullKeepsValue(t *testing.T) {
	t.Parallel()
	var v struct{ Bundle Bundle }
	v.Bundle = Bundle{CPUMillis: 1}
	if err := json.Unmarshal([]byte(`{"Bundle":null}`), &v); err != nil || v.Bundle.CPUMillis != 1 {
		t.Fatalf("null bundle: %+v, %v", v.Bundle, err)
	}
}

func TestBundleValidate(t *testing.T) {
	t.Parallel()
	limits := Limits{
		Capacity:           Capacity{CPUMillis: 2000, MemoryMB: 4096, Tokens: 100000, Attention: 1},
		MaxDurationSeconds: 300,
	}
	ok := Bundle{CPUMillis: 500, MemoryMB: 256, DurationSeconds: 10}
	with := func(f func(*Bundle)) Bundle { b := ok; f(&b); return b }
	tests := []struct {
		name string
		b    Bundle
		want string // "" means valid
	}{
		{"valid", ok, ""},
		{"full machine", Bundle{2000, 4096, 300, 100000, 1}, ""},
		{"zero cpu", with(func(b *Bundle) { b.CPUMillis = 0 }), "cpu: must be greater than 0 (got 0)"},
		{"negative cpu", with(func(b *Bundle) { b.CPUMillis = -500 }), "cpu: must be greater than 0 (got -0.5)"},
		{"zero memory", with(func(b *Bundle) { b.MemoryMB = 0 }), "memory_mb: must be greater than 0 (got 0)"},
		{"zero duration", with(func(b *Bundle) { b.DurationSeconds = 0 }), "duration_seconds: must be between 1 and 300 (got 0)"},
		{"long duration", with(func(b *Bundle) { b.DurationSeconds = 301 }), "duration_seconds: must be between 1 and 300 (got 301)"},
		{"negative tokens", with(func(b *Bundle) { b.Tokens = -1 }), "tokens: must not be negative (got -1)"},
		{"negative attention", with(func(b *Bundle) { b.Attention = -1 }), "attention: must not be negative (got -1)"},
		{"too much cpu", with(func(b *Bundle) { b.CPUMillis = 2500 }), "cpu: 2.5 exceeds the capacity of 2"},
		{"too much memory", with(func(b *Bundle) { b.MemoryMB = 8192 }), "memory_mb: 8192 exceeds the capacity of 4096"},
		{"too many tokens", with(func(b *Bundle) { b.Tokens = 100001 }), "tokens: 100001 exceeds the capacity of 100000"},
		{"too much attention", with(func(b *Bundle) { b.Attention = 2 }), "attention: 2 exceeds the capacity of 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.b.Validate(limits)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v; want nil", tt.b, err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || err.Error() != tt.want {
				t.Fatalf("Validate(%+v) = %v; want %q", tt.b, err, tt.want)
			}
		})
	}
}

func TestBundleQuantity(t *testing.T) {
	t.Parallel()
	b := Bundle{CPUMillis: 1500, MemoryMB: 256, DurationSeconds: 30, Tokens: 1000, Attention: 1}
	want := map[Resource]int64{CPU: 1500, Memory: 256, Tokens: 1000, Attention: 1, "gpu": 0}
	for r, q := range want {
		if got := b.Quantity(r); got != q {
			t.Errorf("Quantity(%s) = %d; want %d", r, got, q)
		}
	}
	if got := b.Demand(); got != (Capacity{1500, 256, 1000, 1}) {
		t.Errorf("Demand() = %+v", got)
	}
}

func TestParseCores(t *testing.T) {
	t.Parallel()
	good := map[string]int64{"0.5": 500, "2": 2000, "+1.25": 1250, "0.001": 1, "1.5e1": 15000, "0": 0}
	for in, want := range good {
		if got, err := ParseCores(in); err != nil || got != want {
			t.Errorf("ParseCores(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "NaN", "Inf", "-Infinity", "0x10", "1.", ".5", "1e", "1e+-3", "1_000", " 1", "0.0001", "-1", "1e19"} {
		if got, err := ParseCores(in); err == nil {
			t.Errorf("ParseCores(%q) = %d; want an error", in, got)
		}
	}
}

func TestFormatCores(t *testing.T) {
	t.Parallel()
	for millis, want := range map[int64]string{0: "0", 1: "0.001", 500: "0.5", 2000: "2", 1250: "1.25", -500: "-0.5"} {
		if got := FormatCores(millis); got != want {
			t.Errorf("FormatCores(%d) = %q; want %q", millis, got, want)
		}
	}
}

func TestParseResource(t *testing.T) {
	t.Parallel()
	for _, r := range Resources {
		if got, err := ParseResource(string(r)); err != nil || got != r {
			t.Errorf("ParseResource(%q) = %q, %v", r, got, err)
		}
	}
	_, err := ParseResource("gpu")
	if err == nil || err.Error() != `unknown resource "gpu" (known: cpu, memory_mb, tokens, attention)` {
		t.Errorf("ParseResource(gpu) error = %v", err)
	}
}

func TestCapacity(t *testing.T) {
	t.Parallel()
	c := Capacity{CPUMillis: 2000, MemoryMB: 4096, Tokens: 100, Attention: 1}
	free := c.Sub(Bundle{CPUMillis: 500, MemoryMB: 96, Tokens: 100}.Demand())
	if free != (Capacity{1500, 4000, 0, 1}) {
		t.Errorf("Sub = %+v", free)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", c, err)
	}
	for _, bad := range []Capacity{{0, 1, 0, 0}, {1, 0, 0, 0}, {1, 1, -1, 0}, {1, 1, 0, -1}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil; want an error", bad)
		}
	}
}
