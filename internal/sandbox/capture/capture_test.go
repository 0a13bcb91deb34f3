package capture

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestBuffer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		limit  int
		chunks []string
	}{
		{"empty", 10, nil},
		{"fits exactly", 10, []string{"0123456789"}},
		{"fits in pieces", 10, []string{"01", "234", "", "56789"}},
		{"one big write", 10, []string{"abcdefghijklmnopqrstuvwxyz"}},
		{"head then many small", 6, []string{"abc", "d", "e", "f", "g", "h", "i", "j", "k"}},
		{"wraps the ring", 8, []string{"aaaa", "bb", "cc", "dd", "ee", "ff", "g"}},
		{"big write after wrap", 8, []string{"aaaa", "bbb", "cccccccccccc", "d"}},
		{"odd limit", 7, []string{"0123456789abcdef"}},
		{"limit one", 1, []string{"abc", "def"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := New(tt.limit)
			var stream []byte
			for _, ch := range tt.chunks {
				if n, err := c.Write([]byte(ch)); n != len(ch) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", ch, n, err)
				}
				stream = append(stream, ch...)
			}
			want, dropped := Expected(stream, tt.limit)
			if got := c.Bytes(); !bytes.Equal(got, want) {
				t.Errorf("Bytes() = %q, want %q", got, want)
			}
			if got := c.Dropped(); got != dropped {
				t.Errorf("Dropped() = %d, want %d", got, dropped)
			}
		})
	}
}

func TestBufferDefaultLimit(t *testing.T) {
	t.Parallel()
	c := New(0)
	big := bytes.Repeat([]byte("x"), DefaultLimit+100)
	c.Write(big)
	if got := len(c.Bytes()); got != DefaultLimit {
		t.Errorf("kept %d bytes, want %d", got, DefaultLimit)
	}
	if got := c.Dropped(); got != 100 {
		t.Errorf("Dropped() = %d, want 100", got)
	}
}

// TestBufferRandom checks random write sequences against the model.
func TestBufferRandom(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		limit := 1 + rng.IntN(64)
		c := New(limit)
		var stream []byte
		for range rng.IntN(20) {
			chunk := make([]byte, rng.IntN(3*limit))
			for j := range chunk {
				chunk[j] = byte('a' + rng.IntN(26))
			}
			c.Write(chunk)
			stream = append(stream, chunk...)
		}
		want, dropped := Expected(stream, limit)
		if got := c.Bytes(); !bytes.Equal(got, want) || c.Dropped() != dropped {
			t.Fatalf("case %d (limit %d, %d bytes): got %q dropped %d, want %q dropped %d",
				i, limit, len(stream), got, c.Dropped(), want, dropped)
		}
	}
}
