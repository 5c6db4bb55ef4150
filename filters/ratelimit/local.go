package ratelimit

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

const (
	shards = 64
	// sample is how many entries a full shard looks at to find one to evict.
	sample = 8
	// sweepEvery is how often the janitor drops idle keys, so the key count (and the memory a
	// shard's map keeps in use) follows the live clients.
	sweepEvery = 10 * time.Second
)

// keyHash identifies a key by 128 bits of two independently seeded hashes of its bytes. Keys
// are never stored: no allocation per request, and an API key or token used as a rate-limit
// key is not kept in memory. Two different keys sharing a slot needs a 128-bit collision of
// hashes whose seeds are random per process and unknown to clients: at the default bound of
// 100,000 keys the chance is about 10^-29, far below that of a memory error, so a collision
// (two clients sharing a limit) is accepted rather than paid for by storing keys.
type keyHash [2]uint64

// entry is one key's state: a theoretical arrival time per limit. last is the largest of
// them: once it is in the past the key is idle, exactly as if it had never been seen, so its
// slot may be dropped without changing any decision.
type entry struct {
	tats [maxLimits]int64
	last int64
}

type shard struct {
	mu sync.Mutex
	m  map[keyHash]entry
	_  [48]byte // keeps each shard's lock on its own cache line
}

// localStore is the in-memory limiter of one filter definition: 64 shards, each a map under
// its own mutex, holding at most maxKeys keys in all.
type localStore struct {
	limits   []limit
	seed1    maphash.Seed
	seed2    maphash.Seed
	perShard int
	now      func() int64
	shards   [shards]shard

	evicted atomic.Int64 // keys dropped to make room while still limiting
	stop    chan struct{}
	done    chan struct{}
}

// epoch anchors the local clock: time.Since reads the monotonic clock, so a wall-clock step
// (NTP, a VM resume) neither frees nor blocks every client at once.
var epoch = time.Now()

func monotonicNow() int64 { return int64(time.Since(epoch)) + int64(time.Hour) }

func newLocalStore(limits []limit, maxKeys int, now func() int64, janitor bool) *localStore {
	s := &localStore{
		limits:   limits,
		seed1:    maphash.MakeSeed(),
		seed2:    maphash.MakeSeed(),
		perShard: max(1, (maxKeys+shards-1)/shards),
		now:      now,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if s.now == nil {
		s.now = monotonicNow
	}
	hint := min(s.perShard, 256)
	for i := range s.shards {
		s.shards[i].m = make(map[keyHash]entry, hint)
	}
	if janitor {
		go s.janitor()
	} else {
		close(s.done)
	}
	return s
}

// hash returns the key's 128-bit identity; kind separates key spaces (a header value that
// happens to spell an IP address is not that IP).
func (s *localStore) hash(kind byte, b []byte, str string) keyHash {
	var h maphash.Hash
	h.SetSeed(s.seed1)
	h.WriteByte(kind)
	h.Write(b)
	h.WriteString(str)
	a := h.Sum64()
	h.SetSeed(s.seed2)
	h.WriteByte(kind)
	h.Write(b)
	h.WriteString(str)
	return keyHash{a, h.Sum64()}
}

// take decides one request of key k and records it when allowed.
func (s *localStore) take(k keyHash) decision {
	sh := &s.shards[k[0]%shards]
	now := s.now()
	sh.mu.Lock()
	e, ok := sh.m[k]
	if !ok && len(sh.m) >= s.perShard {
		s.makeRoom(sh, now)
	}
	d := decide(s.limits, &e.tats, now)
	if d.allowed {
		e.last = 0
		for i := range s.limits {
			e.last = max(e.last, e.tats[i])
		}
		sh.m[k] = e
	}
	sh.mu.Unlock()
	return d
}

// makeRoom frees one slot of a full shard. It looks at a few entries (map iteration starts
// at a random place): an idle one is dropped at no cost; failing that, the one closest to
// idle is dropped, which forgets the least of any client's history. Refusing new keys
// instead would let a flood of fresh keys (random header values) lock every new client out.
func (s *localStore) makeRoom(sh *shard, now int64) {
	var victim keyHash
	best := int64(-1)
	n := 0
	for k, e := range sh.m {
		if e.last <= now {
			delete(sh.m, k)
			return
		}
		if best < 0 || e.last < best {
			victim, best = k, e.last
		}
		if n++; n == sample {
			break
		}
	}
	if best >= 0 {
		delete(sh.m, victim)
		s.evicted.Add(1)
	}
}

// sweep drops every idle key.
func (s *localStore) sweep() {
	for i := range s.shards {
		sh := &s.shards[i]
		now := s.now()
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.last <= now {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

func (s *localStore) janitor() {
	defer close(s.done)
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep()
		}
	}
}

// keys reports how many keys are held.
func (s *localStore) keys() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// Close stops the janitor; the last snapshot using this definition has retired.
func (s *localStore) Close() error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return nil
}
