package filter

import (
	"sort"
	"sync"
)

// PurgeRequest names stored responses to remove: those whose URL (host, path and query, as the
// cache keys them) equals Key, starts with Prefix, or that carry Tag. Exactly one is set.
type PurgeRequest struct {
	Key    string `json:"key,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Tag    string `json:"tag,omitempty"`
}

// A Purger removes the stored responses a request names and reports how many it removed. A
// filter that stores responses registers one from init, so the admin API, which imports no
// filter, can purge through it.
type Purger func(PurgeRequest) int

var (
	purgersMu sync.RWMutex
	purgers   = map[string]Purger{}
)

// RegisterPurger makes p reachable under name; a duplicate name panics (a programming error).
func RegisterPurger(name string, p Purger) {
	purgersMu.Lock()
	defer purgersMu.Unlock()
	if _, dup := purgers[name]; dup {
		panic("filter: purger " + name + " registered twice")
	}
	purgers[name] = p
}

// Purge runs every registered purger and returns how many responses each removed, by name
// (empty when none is registered).
func Purge(r PurgeRequest) map[string]int {
	purgersMu.RLock()
	names := make([]string, 0, len(purgers))
	for n := range purgers {
		names = append(names, n)
	}
	purgersMu.RUnlock()
	sort.Strings(names)
	out := make(map[string]int, len(names))
	for _, n := range names {
		purgersMu.RLock()
		p := purgers[n]
		purgersMu.RUnlock()
		out[n] = p(r)
	}
	return out
}
