package money

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
)

func TestParseAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Micro
	}{
		{"0", 0},
		{"-0", 0},
		{"0.000001", 1},
		{"-0.000001", -1},
		{"1", Scale},
		{"-5", -5 * Scale},
		{"+3", 3 * Scale},
		{"12.5", 12_500_000},
		{"812.250000", 812_250_000},
		{"1.500000000", 1_500_000}, // zeros beyond six places carry no value
		{"0.1000000000000000000000", 100_000},
		{".5", 500_000},
		{"007", 7 * Scale},
		{"0000000000000000000001", Scale}, // leading zeros do not count toward the range
		{"999999999999.999999", Max - 1},
		{"1000000000000", Max},
		{"-1000000000000", -Max},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("Parse(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want error
	}{
		{"", ErrSyntax},
		{"abc", ErrSyntax},
		{"1e3", ErrSyntax},
		{"1E3", ErrSyntax},
		{"NaN", ErrSyntax},
		{"Inf", ErrSyntax},
		{"-Inf", ErrSyntax},
		{"+Inf", ErrSyntax},
		{"0x10", ErrSyntax},
		{"1.", ErrSyntax},
		{".", ErrSyntax},
		{"-.", ErrSyntax},
		{"-", ErrSyntax},
		{"+", ErrSyntax},
		{"--1", ErrSyntax},
		{"+-1", ErrSyntax},
		{"-+1", ErrSyntax},
		{" 1", ErrSyntax},
		{"1 ", ErrSyntax},
		{"1,5", ErrSyntax},
		{"1_000", ErrSyntax},
		{"1.2.3", ErrSyntax},
		{"١", ErrSyntax}, // a non-ASCII digit
		{"1.0000001", ErrPrecision},
		{"0.0000005", ErrPrecision},
		{"1000000000000.000001", ErrRange},
		{"1000000000001", ErrRange},
		{"9999999999999", ErrRange},
		{"10000000000001", ErrRange},
		{"-10000000000001", ErrRange},
		{"12345678901234567890", ErrRange},
		{"99999999999999999999", ErrRange},
		{"99999999999999999999.5", ErrRange},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %d, want an error", tc.in, got)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse(%q) error %v, want %v", tc.in, err, tc.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   Micro
		want string
	}{
		{0, "0"},
		{1, "0.000001"},
		{-1, "-0.000001"},
		{Scale, "1"},
		{812_500_000, "812.5"},
		{-5 * Scale, "-5"},
		{1_230_000, "1.23"},
		{10_000_001, "10.000001"},
		{Max, "1000000000000"},
		{-Max, "-1000000000000"},
		{Micro(math.MaxInt64), "9223372036854.775807"},
		{Micro(math.MinInt64), "-9223372036854.775808"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			if got := tc.in.String(); got != tc.want {
				t.Fatalf("Micro(%d).String() = %q, want %q", int64(tc.in), got, tc.want)
			}
		})
	}
}

// TestRoundTrip checks that formatting and parsing are inverse for values
// spread over the whole accepted range, through String, JSON and text.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	values := []Micro{0, 1, -1, 9, 10, 999_999, Scale, Scale + 1, 123_456_789, -987_654_321_012, Max, -Max, Max - 1}
	for v := Micro(7); v < Max/3; v = v*3 + 11 {
		values = append(values, v, -v)
	}
	for _, v := range values {
		s := v.String()
		got, err := Parse(s)
		if err != nil || got != v {
			t.Fatalf("Parse(%q) = %d, %v; want %d", s, got, err, v)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var back Micro
		if err := json.Unmarshal(b, &back); err != nil || back != v {
			t.Fatalf("JSON %s decoded to %d, %v; want %d", b, back, err, v)
		}
		text, err := v.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var fromText Micro
		if err := fromText.UnmarshalText(text); err != nil || fromText != v {
			t.Fatalf("text %s decoded to %d, %v; want %d", text, fromText, err, v)
		}
	}
}

func TestJSON(t *testing.T) {
	t.Parallel()
	type doc struct {
		Amount Micro `json:"amount"`
	}
	b, err := json.Marshal(doc{Amount: 812_500_000})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"amount":812.5}` {
		t.Fatalf("marshal = %s", b)
	}

	accept := []struct {
		in   string
		want Micro
	}{
		{`{"amount":12.5}`, 12_500_000},
		{`{"amount":"12.5"}`, 12_500_000},
		{`{"amount":"0.000001"}`, 1},
		{`{"amount":-3}`, -3 * Scale},
		{`{"amount":1.500000000}`, 1_500_000},
		{`{"amount": 7 }`, 7 * Scale},
	}
	for _, tc := range accept {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			var d doc
			if err := json.Unmarshal([]byte(tc.in), &d); err != nil {
				t.Fatalf("Unmarshal(%s): %v", tc.in, err)
			}
			if d.Amount != tc.want {
				t.Fatalf("Unmarshal(%s) = %d, want %d", tc.in, d.Amount, tc.want)
			}
		})
	}

	refuse := []string{
		`{"amount":null}`,
		`{"amount":1e3}`,
		`{"amount":"1e3"}`,
		`{"amount":1.0000001}`,
		`{"amount":"abc"}`,
		`{"amount":""}`,
		`{"amount":"NaN"}`,
		`{"amount":true}`,
		`{"amount":[1]}`,
		`{"amount":{}}`,
		`{"amount":10000000000001}`,
		`{"amount":"\u0031"}`,
	}
	for _, in := range refuse {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			d := doc{Amount: 42}
			if err := json.Unmarshal([]byte(in), &d); err == nil {
				t.Fatalf("Unmarshal(%s) accepted %d", in, d.Amount)
			}
		})
	}
}

func TestUnmarshalJSONLeavesValueOnError(t *testing.T) {
	t.Parallel()
	m := Micro(42)
	if err := m.UnmarshalJSON([]byte(`"1.0000001"`)); !errors.Is(err, ErrPrecision) {
		t.Fatalf("err = %v, want ErrPrecision", err)
	}
	if m != 42 {
		t.Fatalf("value changed to %d on error", m)
	}
	if err := m.UnmarshalText([]byte("x")); !errors.Is(err, ErrSyntax) || m != 42 {
		t.Fatalf("UnmarshalText: err %v value %d", err, m)
	}
}

func TestMustParse(t *testing.T) {
	t.Parallel()
	if got := MustParse("0.5"); got != 500_000 {
		t.Fatalf("MustParse(0.5) = %d", got)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("MustParse(\"x\") did not panic")
		}
	}()
	MustParse("x")
}

func TestCredits(t *testing.T) {
	t.Parallel()
	if Credits(1000) != 1000*Scale || Credits(-2) != -2*Scale {
		t.Fatalf("Credits wrong: %d %d", Credits(1000), Credits(-2))
	}
	if got := Micro(1_250_000).Float64(); got != 1.25 {
		t.Fatalf("Float64 = %v", got)
	}
}

func TestMulRatio(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		m        Micro
		num, den int64
		want     Micro
	}{
		{"exact", 10, 3, 1, 30},
		{"exact division", 10, 1, 2, 5},
		{"rounds up a third", 10, 1, 3, 4},
		{"rounds up one micro", 1, 1, 1000, 1},
		{"rounds up remainder times num", 7, 5, 3, 12}, // 35/3 = 11.67
		{"zero", 0, 5, 7, 0},
		{"zero num", 123, 0, 7, 0},
		{"price per millicore", 100_000, 500, 1000, 50_000},
		{"price per millicore rounded", 100_001, 333, 1000, 33_301}, // 33300.333
		{"large amount", Max, 3, 7, 428_571_428_571_428_572},        // 3e18/7 = 428571428571428571.43
		{"negative exact", -10, 1, 2, -5},
		{"negative rounds toward +inf", -10, 1, 3, -3},            // -3.33
		{"negative small remainder", -1, 1, 3, 0},                 // -0.33
		{"negative remainder times num", -2, 5, 3, -3},            // -3.33
		{"negative remainder below -den", -7, 5, 3, -11},          // -11.67
		{"negative num", 7, -5, 3, -11},                           // -11.67
		{"negative both", -7, -5, 3, 12},                          // 11.67
		{"negative large remainder", -1_000_001, 7, 10, -700_000}, // -700000.7
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := MulRatio(tc.m, tc.num, tc.den); got != tc.want {
				t.Fatalf("MulRatio(%d, %d, %d) = %d, want %d", tc.m, tc.num, tc.den, got, tc.want)
			}
		})
	}
}

// TestMulRatioMatchesCeiling compares MulRatio with an exact ceiling for
// small values of every sign.
func TestMulRatioMatchesCeiling(t *testing.T) {
	t.Parallel()
	for m := int64(-40); m <= 40; m++ {
		for num := int64(-9); num <= 9; num++ {
			for den := int64(1); den <= 9; den++ {
				p := m * num
				want := p / den
				if p%den != 0 && p > 0 {
					want++
				}
				if got := MulRatio(Micro(m), num, den); got != Micro(want) {
					t.Fatalf("MulRatio(%d, %d, %d) = %d, want %d", m, num, den, got, want)
				}
			}
		}
	}
}

func TestMulRatioPanicsOnBadDenominator(t *testing.T) {
	t.Parallel()
	for _, den := range []int64{0, -1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("MulRatio with den %d did not panic", den)
				}
			}()
			MulRatio(1, 1, den)
		}()
	}
}
