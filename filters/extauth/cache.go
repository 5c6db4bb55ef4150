package extauth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// cache keeps allow decisions by the digest of the credential, for ttl, at most max entries.
// Denials are never cached: a client fixing its credential must not wait, and a flood of bad
// credentials would only fill the cache. It is split in shards so that concurrent requests
// rarely wait on one lock.
type cache struct {
	ttl      time.Duration
	perShard int
	shards   [16]shard
}

type shard struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]*entry
}

// entry is one allow decision: when it expires, and the headers to add upstream (copies).
type entry struct {
	expires int64
	headers [][2][]byte
}

func newCache(max int, ttl time.Duration) *cache {
	c := &cache{ttl: ttl, perShard: max / 16}
	if c.perShard < 1 {
		c.perShard = 1
	}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]*entry)
	}
	return c
}

// get returns the live entry for key, or nil.
func (c *cache) get(key [sha256.Size]byte) *entry {
	s := &c.shards[key[0]&15]
	s.mu.RLock()
	e := s.m[key]
	s.mu.RUnlock()
	if e == nil || time.Now().UnixNano() >= e.expires {
		return nil
	}
	return e
}

// put stores e, first making room: expired entries go, and if none had, one at random (Go's
// map order), which keeps memory bounded without any bookkeeping per hit.
func (c *cache) put(key [sha256.Size]byte, e *entry) {
	s := &c.shards[key[0]&15]
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; !ok && len(s.m) >= c.perShard {
		now := time.Now().UnixNano()
		evicted, scanned := false, 0
		for k, v := range s.m {
			if now >= v.expires {
				delete(s.m, k)
				evicted = true
			}
			if scanned++; scanned >= 8 {
				break
			}
		}
		if !evicted {
			for k := range s.m {
				delete(s.m, k)
				break
			}
		}
	}
	s.m[key] = e
}
