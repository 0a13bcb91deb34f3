// Package ids owns the shape of identifiers the system hands out: prefixed,
// time-ordered, unguessable strings ("ex_01hv…"), short agent ids, and secret
// tokens. It must never be used to derive anything secret from a public id.
package ids

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"regexp"
	"strings"
	"time"
)

var enc = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// New returns prefix + "_" + 48 bits of milliseconds + 80 random bits, in a
// lower-case Crockford-style base32 that sorts in creation order.
func New(prefix string) string {
	var b [16]byte
	ms := uint64(time.Now().UnixMilli())
	binary.BigEndian.PutUint64(b[:8], ms<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic("ids: crypto/rand failed: " + err.Error())
	}
	return prefix + "_" + enc.EncodeToString(b[:])
}

// Agent returns a new short agent id: 10 base32 characters.
func Agent() string {
	var b [7]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("ids: crypto/rand failed: " + err.Error())
	}
	return enc.EncodeToString(b[:])[:10]
}

// Token returns a new secret bearer token with 256 bits of entropy.
func Token() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("ids: crypto/rand failed: " + err.Error())
	}
	return "bpt_" + enc.EncodeToString(b[:])
}

// HashToken returns the hex SHA-256 of a token; only hashes are stored.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

var agentIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// reserved names cannot be agent ids: they name system parties or accounts.
var reserved = map[string]bool{"human": true, "system": true, "operator": true, "mint": true, "burn": true}

// ValidAgentID reports whether s may name an agent: 1–63 characters of
// lower-case letters, digits, '-' and '_', starting with a letter or digit, and
// not a reserved name.
func ValidAgentID(s string) bool {
	return agentIDPattern.MatchString(s) && !reserved[s] && !strings.HasPrefix(s, "system")
}
