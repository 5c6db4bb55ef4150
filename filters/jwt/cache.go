package jwt

import (
	"crypto/sha256"
	"sync"

	"github.com/weir-gateway/weir/core/filter"
)

// verified is what the filter keeps about a token it has verified: enough to accept the same
// token again with a hash, a map lookup and a few comparisons, and without touching JSON or a
// signature. It is immutable and shared by every request presenting the token.
type verified struct {
	iss     *issuer
	set     *keySet // the set the key came from; a key no longer in the issuer's set voids it
	key     *key
	exp     int64 // Unix seconds; hasExp false when the token has none
	nbf     int64
	hasExp  bool
	hasNbf  bool
	until   int64 // Unix seconds after which the entry is dropped
	claims  *claimSet
	headers []header // forwarded claims, in the filter's forward order; value nil: claim absent
	cons    *filter.Consumer
}

type header struct{ name, value []byte }

// claimSet implements filter.Claims over a token's claims, each kept as text.
type claimSet struct{ m map[string]string }

// Claim returns the named claim as text (numbers as written in the token, booleans as true or
// false, lists of strings or numbers joined with commas, objects as JSON).
func (c *claimSet) Claim(name string) (string, bool) {
	v, ok := c.m[name]
	return v, ok
}

// tokenCache maps a token's SHA-256 to its verification. It is bounded: each shard holds at
// most perShard entries, evicting expired ones first and then any one, so a flood of distinct
// valid tokens costs verification time but never unbounded memory. Keys are digests, so the
// cache never holds request memory or the tokens themselves.
type tokenCache struct {
	shards   [cacheShards]cacheShard
	perShard int
}

const cacheShards = 16

type cacheShard struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]*verified
}

func newTokenCache(size int) *tokenCache {
	if size <= 0 {
		return nil
	}
	c := &tokenCache{perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]*verified)
	}
	return c
}

func (c *tokenCache) shard(sum *[sha256.Size]byte) *cacheShard { return &c.shards[sum[0]%cacheShards] }

func (c *tokenCache) get(sum *[sha256.Size]byte) *verified {
	if c == nil {
		return nil
	}
	s := c.shard(sum)
	s.mu.RLock()
	v := s.m[*sum]
	s.mu.RUnlock()
	return v
}

func (c *tokenCache) put(sum *[sha256.Size]byte, v *verified, now int64) {
	if c == nil {
		return
	}
	s := c.shard(sum)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= c.perShard {
		for k, e := range s.m {
			if e.until < now {
				delete(s.m, k)
			}
		}
		for k := range s.m {
			if len(s.m) < c.perShard {
				break
			}
			delete(s.m, k) // map order is random enough to spread evictions
		}
	}
	s.m[*sum] = v
}

func (c *tokenCache) drop(sum *[sha256.Size]byte) {
	if c == nil {
		return
	}
	s := c.shard(sum)
	s.mu.Lock()
	delete(s.m, *sum)
	s.mu.Unlock()
}

// Len counts the cached tokens (tests).
func (c *tokenCache) Len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
