package market

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// maxDigits bounds the significant digits of a parsed quantity; 10^18 still
// fits in an int64.
const maxDigits = 18

// ParseCores reads a CPU amount in cores ("0.5", "2", "1.25e1") and returns
// millicores. It refuses more than 3 decimals, negative values, NaN,
// infinities and anything that is not a plain decimal number.
func ParseCores(s string) (int64, error) {
	return parseScaled(s, 3)
}

// FormatCores writes millicores as cores with no trailing zeros: 500 → "0.5",
// 2000 → "2", 125 → "0.125".
func FormatCores(millis int64) string {
	sign := ""
	u := uint64(millis)
	if millis < 0 {
		sign, u = "-", -u
	}
	whole, frac := u/1000, u%1000
	if frac == 0 {
		return sign + strconv.FormatUint(whole, 10)
	}
	fs := strings.TrimRight(fmt.Sprintf("%03d", frac), "0")
	return sign + strconv.FormatUint(whole, 10) + "." + fs
}

// parseScaled reads the decimal number s (JSON number syntax, optionally with
// a leading '+') and returns s × 10^scale, which must be an exact
// non-negative integer below 10^18. Exponents are accepted when the result is
// exact ("1e3", "2.5e-1" with scale 3).
func parseScaled(s string, scale int) (int64, error) {
	neg, whole, frac, exp, err := splitNumber(s)
	if err != nil {
		return 0, err
	}
	digits := strings.TrimLeft(whole+frac, "0")
	if digits == "" {
		return 0, nil // any spelling of zero, including "-0" and "0e999"
	}
	if neg {
		return 0, fmt.Errorf("must not be negative (got %s)", shorten(s))
	}
	trimmed := strings.TrimRight(digits, "0")
	shift := len(digits) - len(trimmed) - len(frac) + scale
	digits = trimmed
	e, err := parseExponent(exp)
	switch {
	case err != nil && e < 0:
		return 0, precisionErr(s, scale)
	case err != nil:
		return 0, fmt.Errorf("%s is too large", shorten(s))
	}
	shift += e
	if shift < 0 {
		return 0, precisionErr(s, scale)
	}
	if len(digits)+shift > maxDigits {
		return 0, fmt.Errorf("%s is too large", shorten(s))
	}
	v, err := strconv.ParseInt(digits+strings.Repeat("0", shift), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s is too large", shorten(s))
	}
	return v, nil
}

func precisionErr(s string, scale int) error {
	if scale == 0 {
		return fmt.Errorf("%s is not a whole number", shorten(s))
	}
	return fmt.Errorf("%s has more than %d decimal places", shorten(s), scale)
}

var errNotNumber = errors.New("not a number")

// splitNumber checks the syntax of a decimal number and splits it into sign,
// integer digits, fraction digits and exponent text (sign included).
func splitNumber(s string) (neg bool, whole, frac, exp string, err error) {
	bad := fmt.Errorf("must be a number (got %s)", shorten(s))
	rest := s
	if rest != "" && (rest[0] == '-' || rest[0] == '+') {
		neg, rest = rest[0] == '-', rest[1:]
	}
	mant := rest
	if i := strings.IndexAny(rest, "eE"); i >= 0 {
		mant, exp = rest[:i], rest[i+1:]
		if digitsOnly(strings.TrimLeft(exp, "+-")) == "" || strings.LastIndexAny(exp, "+-") > 0 {
			return false, "", "", "", bad
		}
	}
	whole, frac, dot := strings.Cut(mant, ".")
	if digitsOnly(whole) == "" || (dot && digitsOnly(frac) == "") {
		return false, "", "", "", bad
	}
	return neg, whole, frac, exp, nil
}

// digitsOnly returns s if it is a non-empty run of ASCII digits, else "".
func digitsOnly(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return ""
		}
	}
	return s
}

// parseExponent reads an exponent such as "", "3", "-2" or "+07". An exponent
// too large to matter returns an error with e carrying its sign.
func parseExponent(exp string) (e int, err error) {
	if exp == "" {
		return 0, nil
	}
	sign := 1
	if exp[0] == '-' || exp[0] == '+' {
		if exp[0] == '-' {
			sign = -1
		}
		exp = exp[1:]
	}
	exp = strings.TrimLeft(exp, "0")
	if len(exp) > 4 {
		return sign, errNotNumber
	}
	n := 0
	if exp != "" {
		n, _ = strconv.Atoi(exp) // digits checked by splitNumber
	}
	return sign * n, nil
}
