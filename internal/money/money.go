// Package money owns the representation of credits: an exact integer count of
// micro-credits, and its one parser and one formatter.
//
// Floats never touch a balance: every amount that enters the system is parsed
// from its decimal text, and every amount that leaves it is formatted from the
// integer. This package must never round silently.
package money

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Micro is an amount of credits counted in micro-credits (1 credit = 1,000,000).
type Micro int64

const (
	// Scale is the number of micro-credits in one credit.
	Scale = 1_000_000
	// Decimals is the number of decimal places an amount may carry.
	Decimals = 6
	// Max is the largest amount the system accepts: one trillion credits.
	// Keeping amounts far below the int64 limit means sums of many balances
	// cannot overflow.
	Max Micro = 1_000_000_000_000 * Scale
)

// Parse errors. Callers check them with errors.Is.
var (
	ErrSyntax    = errors.New("not a decimal number")
	ErrPrecision = errors.New("more than 6 decimal places")
	ErrRange     = errors.New("out of range")
)

// Credits returns n whole credits.
func Credits(n int64) Micro { return Micro(n * Scale) }

// Parse reads a decimal amount such as "12", "-0.5" or "812.250000".
// Exponents, NaN, infinities, hex and more than six decimals are refused.
func Parse(s string) (Micro, error) {
	orig := s
	if s == "" {
		return 0, fmt.Errorf("%q: %w", orig, ErrSyntax)
	}
	neg := false
	switch s[0] {
	case '-':
		neg, s = true, s[1:]
	case '+':
		s = s[1:]
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" && (!hasDot || frac == "") {
		return 0, fmt.Errorf("%q: %w", orig, ErrSyntax)
	}
	if hasDot && frac == "" {
		return 0, fmt.Errorf("%q: %w", orig, ErrSyntax)
	}
	if !allDigits(whole) || !allDigits(frac) {
		return 0, fmt.Errorf("%q: %w", orig, ErrSyntax)
	}
	// Trailing zeros beyond six places carry no value and are accepted.
	frac = strings.TrimRight(frac, "0")
	if len(frac) > Decimals {
		return 0, fmt.Errorf("%q: %w", orig, ErrPrecision)
	}
	whole = strings.TrimLeft(whole, "0")
	if len(whole) > 13 { // more than 9,999,999,999,999 credits
		return 0, fmt.Errorf("%q: %w", orig, ErrRange)
	}
	var w int64
	if whole != "" {
		var err error
		w, err = strconv.ParseInt(whole, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q: %w", orig, ErrSyntax)
		}
	}
	var f int64
	if frac != "" {
		padded := frac + strings.Repeat("0", Decimals-len(frac))
		var err error
		f, err = strconv.ParseInt(padded, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q: %w", orig, ErrSyntax)
		}
	}
	if w > int64(Max/Scale) {
		return 0, fmt.Errorf("%q: %w (maximum is %s)", orig, ErrRange, Max)
	}
	v := Micro(w*Scale + f)
	if v > Max {
		return 0, fmt.Errorf("%q: %w (maximum is %s)", orig, ErrRange, Max)
	}
	if neg {
		v = -v
	}
	return v, nil
}

// MustParse is Parse for constants in code and tests; it panics on error.
func MustParse(s string) Micro {
	v, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return v
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String formats the amount as a decimal with no trailing zeros: "812.5", "3", "-0.000001".
func (m Micro) String() string {
	neg := m < 0
	u := uint64(m)
	if neg {
		u = uint64(-m)
	}
	whole := u / Scale
	frac := u % Scale
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	b.WriteString(strconv.FormatUint(whole, 10))
	if frac != 0 {
		fs := fmt.Sprintf("%06d", frac)
		b.WriteByte('.')
		b.WriteString(strings.TrimRight(fs, "0"))
	}
	return b.String()
}

// MarshalJSON writes the amount as a JSON number with at most six decimals.
func (m Micro) MarshalJSON() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalJSON accepts a JSON number, or a string holding a decimal number,
// and refuses anything that is not exact to the micro-credit.
func (m *Micro) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return fmt.Errorf("null: %w", ErrSyntax)
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	v, err := Parse(s)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Float64 returns an approximate value for display and for scoring functions
// that are not money (never store the result).
func (m Micro) Float64() float64 { return float64(m) / Scale }

// MulRatio returns m × num / den rounded up, computed without overflow for the
// ranges the system uses. It is how per-unit prices become costs.
func MulRatio(m Micro, num, den int64) Micro {
	if den <= 0 {
		panic("money: MulRatio with non-positive denominator")
	}
	// Split to keep intermediate products in range.
	q := int64(m) / den
	r := int64(m) % den
	// ceil(r×num/den): Go's division truncates toward zero, which is the
	// ceiling only for a negative quotient.
	rn := r * num
	up := rn / den
	if rn > 0 && rn%den != 0 {
		up++
	}
	return Micro(q*num + up)
}

// MarshalText writes the decimal form (used by YAML and text encodings).
func (m Micro) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText parses the decimal form (used by YAML and text encodings).
func (m *Micro) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}
