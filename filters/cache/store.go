package cache

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/weir-gateway/weir/core/telemetry"
)

// entry is one stored response. It is immutable once stored: a refresh stores a new entry, so
// a request serving the old one never sees it change. Every byte in it was copied out of
// fasthttp's buffers.
type entry struct {
	key    string // the full key, variant included
	url    string // host, path and query: what purge by key and prefix match
	tags   []string
	status int
	header []field
	body   []byte

	// vary, on a primary key's marker entry, names the request fields that select a variant;
	// a marker has no response.
	vary   []string
	marker bool
	// pass, on a key whose last response could not be stored, tells misses not to wait for
	// each other (the next response would not be shared either); it answers nothing.
	pass bool

	stored      time.Time     // response_time (RFC 9111 §4.2.3)
	initialAge  time.Duration // corrected_initial_age
	lifetime    time.Duration // freshness lifetime
	etag        []byte
	lastMod     []byte
	lastModTime time.Time
	noCache     bool // response no-cache: every use is revalidated
	mustReval   bool // must-revalidate or proxy-revalidate: never served stale
	swr, sie    time.Duration

	// gone is set when ristretto lets go of the entry (evicted, rejected, replaced, deleted),
	// so put never indexes an entry that left before it was indexed.
	gone *atomic.Bool
}

type field struct{ name, value []byte }

// age is the entry's current age (RFC 9111 §4.2.3).
func (e *entry) age(now time.Time) time.Duration {
	return e.initialAge + max(0, now.Sub(e.stored))
}

// cost is what the entry counts against max_bytes: its bytes plus a fixed overhead for the
// structures around them.
func (e *entry) cost() int64 {
	n := int64(len(e.key)+len(e.url)+len(e.body)+len(e.etag)+len(e.lastMod)) + 256
	for _, f := range e.header {
		n += int64(len(f.name)+len(f.value)) + 48
	}
	for _, v := range e.vary {
		n += int64(len(v)) + 16
	}
	for _, t := range e.tags {
		n += int64(len(t)) + 16
	}
	return n
}

// store is the cost-bounded memory a cache definition keeps across reloads. Ristretto holds
// the entries and decides what to evict; index mirrors its keys, grouped by URL, so that a
// purge of one URL (or an unsafe request invalidating it) finds its entries at once and purges
// by prefix or tag can find theirs; inflight coalesces concurrent misses.
type store struct {
	c *ristretto.Cache[string, *entry]

	mu       sync.Mutex
	index    map[string]map[string]*entry // url → key → entry
	inflight map[string]*call

	// bytes and entries are the route's gauges: what the indexed entries cost, and how many.
	bytes, entries *telemetry.Metric
}

// call is one miss in flight; followers wait on done, then look the key up again.
type call struct{ done chan struct{} }

func newStore(maxBytes int64, route string) (*store, error) {
	s := &store{index: map[string]map[string]*entry{}, inflight: map[string]*call{},
		bytes:   telemetry.Metrics.Gauge(MetricsGroup, route, "bytes"),
		entries: telemetry.Metrics.Gauge(MetricsGroup, route, "entries")}
	// Ristretto wants about ten counters per item it may hold; items are assumed to be at
	// least 1 KiB on average, bounded below and above so a tiny or huge budget stays sane.
	counters := min(max(maxBytes/1024*10, 1000), 10_000_000)
	c, err := ristretto.NewCache(&ristretto.Config[string, *entry]{
		NumCounters:        counters,
		MaxCost:            maxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
		OnExit: func(e *entry) {
			if e == nil {
				return
			}
			e.gone.Store(true)
			s.mu.Lock()
			if m := s.index[e.url]; m[e.key] == e {
				delete(m, e.key)
				if len(m) == 0 {
					delete(s.index, e.url)
				}
				s.bytes.Add(-e.cost())
				s.entries.Add(-1)
			}
			s.mu.Unlock()
		},
	})
	if err != nil {
		return nil, err
	}
	s.c = c
	return s, nil
}

// Close frees the entries; the last snapshot using this definition has retired.
func (s *store) Close() error {
	unregister(s)
	s.c.Close()
	s.mu.Lock()
	for _, m := range s.index {
		for _, e := range m {
			s.bytes.Add(-e.cost())
			s.entries.Add(-1)
		}
	}
	clear(s.index)
	s.mu.Unlock()
	return nil
}

func (s *store) get(key string) *entry {
	e, ok := s.c.Get(key)
	if !ok || e.key != key {
		return nil
	}
	return e
}

// put stores e for ttl and waits until ristretto applied it, so that a request arriving after
// put returns finds it (unless the admission policy rejected it).
func (s *store) put(e *entry, ttl time.Duration) {
	e.gone = new(atomic.Bool)
	if !s.c.SetWithTTL(e.key, e, e.cost(), ttl) {
		return
	}
	s.c.Wait()
	// Ristretto is never called with mu held: it may call OnExit, which takes mu, under its own
	// locks. An entry that left between Get and here has gone set (before OnExit takes mu).
	got, ok := s.c.Get(e.key)
	s.mu.Lock()
	if ok && got == e && !e.gone.Load() {
		m := s.index[e.url]
		if m == nil {
			m = map[string]*entry{}
			s.index[e.url] = m
		}
		m[e.key] = e
		s.bytes.Add(e.cost())
		s.entries.Add(1)
	}
	s.mu.Unlock()
}

// purge removes every entry matching: url equal to key, url starting with prefix, or carrying
// tag (the empty ones match nothing). It returns how many entries went.
func (s *store) purge(key, prefix, tag string) int {
	var keys []string
	n := 0
	collect := func(m map[string]*entry, match func(*entry) bool) {
		for k, e := range m {
			if match(e) {
				keys = append(keys, k)
				if !e.marker {
					n++
				}
			}
		}
	}
	s.mu.Lock()
	if key != "" {
		collect(s.index[key], func(*entry) bool { return true })
	}
	if prefix != "" || tag != "" {
		for url, m := range s.index {
			if prefix != "" && strings.HasPrefix(url, prefix) {
				collect(m, func(*entry) bool { return true })
			} else if tag != "" {
				collect(m, func(e *entry) bool { return hasTag(e.tags, tag) })
			}
		}
	}
	s.mu.Unlock()
	// Del runs OnExit, which takes mu: never called with mu held.
	for _, k := range keys {
		s.c.Del(k)
	}
	s.c.Wait()
	return n
}

func hasTag(tags []string, t string) bool {
	for _, x := range tags {
		if x == t {
			return true
		}
	}
	return false
}

// lead registers a miss for key. It returns (c, true) when the caller leads (it must call
// finish), or the leader's call to wait on.
func (s *store) lead(key string) (*call, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.inflight[key]; ok {
		return c, false
	}
	c := &call{done: make(chan struct{})}
	s.inflight[key] = c
	return c, true
}

// finish ends a led miss and wakes its followers.
func (s *store) finish(key string, c *call) {
	s.mu.Lock()
	if s.inflight[key] == c {
		delete(s.inflight, key)
	}
	s.mu.Unlock()
	close(c.done)
}

// passTTL is how long a key whose response could not be stored skips coalescing.
const passTTL = 10 * time.Second

// putPass marks key as not storable for passTTL, unless an entry arrived meanwhile.
func (s *store) putPass(key, url string) {
	if s.get(key) != nil {
		return
	}
	s.put(&entry{key: key, url: url, pass: true}, passTTL)
}

// abandon forgets a led miss that outlasted a follower's wait, so the next miss leads anew.
// Only the leader closes done (finish), so this never closes it.
func (s *store) abandon(key string, c *call) {
	s.mu.Lock()
	if s.inflight[key] == c {
		delete(s.inflight, key)
	}
	s.mu.Unlock()
}

// stores are the live stores, for purges through the admin API.
var (
	storesMu sync.Mutex
	stores   = map[*store]struct{}{}
)

func register(s *store) {
	storesMu.Lock()
	stores[s] = struct{}{}
	storesMu.Unlock()
}

func unregister(s *store) {
	storesMu.Lock()
	delete(stores, s)
	storesMu.Unlock()
}

// Purge removes matching entries from every live cache and reports how many went.
func Purge(key, prefix, tag string) int {
	storesMu.Lock()
	list := make([]*store, 0, len(stores))
	for s := range stores {
		list = append(list, s)
	}
	storesMu.Unlock()
	n := 0
	for _, s := range list {
		n += s.purge(key, prefix, tag)
	}
	return n
}
