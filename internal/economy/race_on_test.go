//go:build race

package economy_test

// raceEnabled is true when the race detector is on; tests that push volume
// through SQLite scale down, since it makes the pure-Go driver much slower.
const raceEnabled = true
