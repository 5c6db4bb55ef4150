//go:build race

package edge

// raceEnabled skips allocation counts: the race detector makes sync.Pool drop items on purpose.
const raceEnabled = true
