// Package capture owns the capped output buffer every sandbox backend uses
// for an execution's stdout and stderr: it keeps the head and the tail of a
// stream of any length in a fixed amount of memory and counts what it cut.
//
// It never blocks, fails a write or grows beyond its limit, and knows nothing
// of processes, containers or executions.
package capture

// DefaultLimit is the output cap used when a Spec sets none.
const DefaultLimit = 64 << 10

// Buffer keeps the first half and the last half of a byte stream of
// any length in limit bytes and counts what it had to drop from the middle.
// It is not safe for concurrent use: one goroutine writes, and readers wait
// until writing is over.
type Buffer struct {
	head    []byte // the first headCap bytes
	headCap int
	tail    []byte // ring buffer holding the latest bytes after the head
	tailCap int
	tailPos int // next write position in tail once it is full
	total   int64
}

// New returns a buffer that keeps at most limit bytes;
// limit <= 0 means DefaultLimit.
func New(limit int) *Buffer {
	if limit <= 0 {
		limit = DefaultLimit
	}
	headCap := limit / 2
	return &Buffer{headCap: headCap, tailCap: limit - headCap}
}

// Write stores p; it never fails.
func (c *Buffer) Write(p []byte) (int, error) {
	n := len(p)
	c.total += int64(n)
	if room := c.headCap - len(c.head); room > 0 {
		k := min(room, len(p))
		c.head = append(c.head, p[:k]...)
		p = p[k:]
	}
	if len(p) == 0 || c.tailCap == 0 {
		return n, nil
	}
	if len(p) >= c.tailCap {
		// p alone fills the tail: keep its end and restart the ring.
		c.tail = append(c.tail[:0], p[len(p)-c.tailCap:]...)
		c.tailPos = 0
		return n, nil
	}
	if room := c.tailCap - len(c.tail); room > 0 {
		k := min(room, len(p))
		c.tail = append(c.tail, p[:k]...)
		p = p[k:]
	}
	for len(p) > 0 { // the ring is full: overwrite the oldest bytes
		k := copy(c.tail[c.tailPos:], p)
		p = p[k:]
		c.tailPos = (c.tailPos + k) % c.tailCap
	}
	return n, nil
}

// Bytes returns the kept head followed by the kept tail, in stream order.
func (c *Buffer) Bytes() []byte {
	out := make([]byte, 0, len(c.head)+len(c.tail))
	out = append(out, c.head...)
	out = append(out, c.tail[c.tailPos:]...)
	return append(out, c.tail[:c.tailPos]...)
}

// Dropped is how many bytes were cut from the middle of the stream.
func (c *Buffer) Dropped() int64 {
	return c.total - int64(len(c.head)+len(c.tail))
}

// Expected is what a Buffer of the given limit keeps of stream, and how many
// bytes it drops: the whole stream when it fits, else its first limit/2 bytes
// and its last limit-limit/2 bytes. It is the model the buffer, and backends
// that capture output through it, are tested against.
func Expected(stream []byte, limit int) ([]byte, int64) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	if len(stream) <= limit {
		return stream, 0
	}
	h := limit / 2
	out := append(append([]byte{}, stream[:h]...), stream[len(stream)-(limit-h):]...)
	return out, int64(len(stream) - limit)
}
