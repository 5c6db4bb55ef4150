// Package basicauth implements the "basicauth" filter: HTTP Basic authentication (RFC 7617)
// against the consumers' Basic users and an optional htpasswd file, bcrypt hashes only, with a
// short cache of successful verifications and a bound on concurrent bcrypt work.
package basicauth

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
)

// Filter authenticates requests with Basic credentials. It is safe for concurrent use; its
// cache and semaphore belong to this snapshot's filter and go with it.
type Filter struct {
	// decisions count verdicts in weir_auth_decisions_total (README.md, Metrics).
	decisions telemetry.AuthDecisions
	consumers *filter.Consumers
	files     map[string]fileUser
	anonymous *filter.Consumer
	hide      bool
	challenge []byte

	sem      chan struct{}
	cache    *cache
	cacheKey [32]byte // keys cache entries, so they are no unsalted digest of a password
}

type fileUser struct {
	c    *filter.Consumer
	hash []byte
}

// Reasons for the access log; static, so a refusal allocates nothing and never quotes a
// credential.
var (
	errMissing   = errors.New("basicauth: no credentials")
	errMalformed = errors.New("basicauth: malformed Basic credentials")
	errUnknown   = errors.New("basicauth: unknown user or wrong password")
	errAmbiguous = errors.New("basicauth: Authorization given more than once")
	errBusy      = errors.New("basicauth: too many password checks at once")
)

// maxCredentials bounds the decoded "user:password": bcrypt reads 72 bytes of a password at
// most, and a user name is short.
const maxCredentials = 512

var (
	hAuthorization     = []byte("Authorization")
	hAuthorizationName = "Authorization"
	hWWWAuthenticate   = []byte("Www-Authenticate") // as fasthttp stores it
	hRetryAfter        = []byte("Retry-After")
	vRetryAfter        = []byte("1")
)

// dummyHash is verified against for unknown users, so that a wrong user name takes as long as
// a wrong password and the timing does not tell which user names exist.
// Made on first use: generating it costs as much as a verification.
var dummyHash = sync.OnceValue(func() []byte {
	h, err := bcrypt.GenerateFromPassword([]byte("weir-no-such-user"), bcrypt.DefaultCost)
	if err != nil {
		panic(err)
	}
	return h
})

// OnRequest parses the credentials, answers from the cache when this user and password were
// verified lately, and otherwise runs bcrypt, at most max_concurrent at a time.
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	st := f.decide(c)
	f.decisions.Count(st == filter.Continue)
	return st
}

func (f *Filter) decide(c *filter.Ctx) filter.Status {
	// PeekAll keeps its result in the header's own buffer: no allocation, unlike a range over
	// Header.All, whose loop body the compiler makes into a closure.
	vals := c.Request.Header.PeekAll(hAuthorizationName)
	n := len(vals)
	var raw []byte
	if n > 0 {
		raw = vals[0]
	}
	switch {
	case n > 1:
		return f.refuse(c, errAmbiguous)
	case n == 0 || len(raw) == 0:
		if f.anonymous != nil {
			c.SetConsumer(f.anonymous)
			return filter.Continue
		}
		return f.refuse(c, errMissing)
	}
	var buf [maxCredentials]byte
	user, pass, ok := ParseBasic(raw, buf[:])
	if !ok {
		return f.refuse(c, errMalformed)
	}
	k, hash := f.lookup(user)

	cacheable := f.cache != nil && k != nil // user and password fit entryKey's buffer: maxCredentials
	if !cacheable {
		return f.answer(c, k, f.check(k, hash, pass))
	}
	key := f.entryKey(user, pass)
	if f.cache.get(key, k) {
		return f.accept(c, k)
	}
	// When an entry expires, every request a busy client has in flight misses at once: one of
	// them checks the password and the others wait for its verdict, rather than each taking a
	// bcrypt slot (and most getting 503 because the slots are few).
	fl, leader := f.cache.join(key)
	if leader {
		v := f.check(k, hash, pass)
		if v == verified {
			f.cache.put(key, k)
		}
		f.cache.land(key, fl, v)
	} else {
		<-fl.done
	}
	return f.answer(c, k, fl.v)
}

// verdict is the outcome of one password check.
type verdict uint8

const (
	verified verdict = iota
	wrong
	busy
)

// check runs bcrypt for user k (nil: unknown, checked against dummyHash for the same cost), at
// most max_concurrent at a time.
func (f *Filter) check(k *filter.Consumer, hash, pass []byte) verdict {
	select {
	case f.sem <- struct{}{}:
	default:
		// Queueing would let a flood of wrong passwords hold every request for seconds.
		return busy
	}
	if k == nil {
		hash = dummyHash()
	}
	err := bcrypt.CompareHashAndPassword(hash, pass)
	<-f.sem
	if err != nil || k == nil {
		return wrong
	}
	return verified
}

func (f *Filter) answer(c *filter.Ctx, k *filter.Consumer, v verdict) filter.Status {
	switch v {
	case verified:
		return f.accept(c, k)
	case busy:
		c.Response.Header.SetCanonical(hRetryAfter, vRetryAfter)
		return c.Fail(503, errBusy)
	}
	return f.refuse(c, errUnknown)
}

// OnResponse does nothing.
func (f *Filter) OnResponse(*filter.Ctx) {}

func (f *Filter) accept(c *filter.Ctx, k *filter.Consumer) filter.Status {
	c.SetConsumer(k)
	if f.hide {
		c.Request.Header.DelBytes(hAuthorization)
	}
	return filter.Continue
}

func (f *Filter) refuse(c *filter.Ctx, err error) filter.Status {
	c.Response.Header.SetCanonical(hWWWAuthenticate, f.challenge)
	return c.Fail(401, err)
}

// lookup returns the user's consumer and bcrypt hash, from the consumers or the htpasswd file.
func (f *Filter) lookup(user []byte) (*filter.Consumer, []byte) {
	if k, h := f.consumers.ByBasicUser(user); k != nil {
		return k, h
	}
	if u, ok := f.files[string(user)]; ok {
		return u.c, u.hash
	}
	return nil, nil
}

// entryKey is SHA-256 over the filter's random key, the user, a NUL and the password: it
// identifies a verified pair without keeping the password or a plain digest of it.
func (f *Filter) entryKey(user, pass []byte) [sha256.Size]byte {
	var buf [32 + 1 + maxCredentials]byte
	b := append(buf[:0], f.cacheKey[:]...)
	b = append(b, user...)
	b = append(b, 0)
	b = append(b, pass...)
	return sha256.Sum256(b)
}

// ParseBasic parses the value of an Authorization header holding Basic credentials: the scheme
// in any case, one or more spaces, then standard base64 with padding and nothing after it. The
// decoded text is "user:password" with a user that is not empty; the password may hold ':'.
// Neither may hold control bytes (RFC 7617). user and pass point into buf, which must be large
// enough for the decoded credentials, else the credentials are refused.
func ParseBasic(v, buf []byte) (user, pass []byte, ok bool) {
	const scheme = "basic"
	if len(v) < len(scheme)+2 {
		return nil, nil, false
	}
	for i := 0; i < len(scheme); i++ {
		if v[i]|0x20 != scheme[i] {
			return nil, nil, false
		}
	}
	rest := v[len(scheme):]
	if rest[0] != ' ' {
		return nil, nil, false
	}
	for len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	if len(rest) == 0 || base64.StdEncoding.DecodedLen(len(rest)) > len(buf) {
		return nil, nil, false
	}
	n, err := base64.StdEncoding.Strict().Decode(buf, rest)
	if err != nil {
		return nil, nil, false
	}
	cred := buf[:n]
	colon := -1
	for i, b := range cred {
		if b < ' ' || b == 0x7f {
			return nil, nil, false
		}
		if b == ':' && colon < 0 {
			colon = i
		}
	}
	if colon <= 0 {
		return nil, nil, false
	}
	return cred[:colon], cred[colon+1:], true
}

// cache remembers verified (user, password) pairs for a short time. It is a plain map under a
// lock, bounded by evicting an arbitrary entry when full: a few thousand entries need nothing
// more (a hit is one SHA-256 and one read-locked lookup), and it adds no dependency.
type cache struct {
	ttl time.Duration
	max int

	mu      sync.RWMutex
	entries map[[sha256.Size]byte]entry
	flights map[[sha256.Size]byte]*flight // checks under way, by key
}

// flight is one password check that other requests with the same credentials wait for.
type flight struct {
	done chan struct{} // closed once v is set
	v    verdict
}

// join returns the check under way for key, or starts one that the caller (leader) runs and
// ends with land.
func (c *cache) join(key [sha256.Size]byte) (fl *flight, leader bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fl := c.flights[key]; fl != nil {
		return fl, false
	}
	fl = &flight{done: make(chan struct{})}
	c.flights[key] = fl
	return fl, true
}

// land ends the check of key with v and wakes the requests waiting for it.
func (c *cache) land(key [sha256.Size]byte, fl *flight, v verdict) {
	c.mu.Lock()
	delete(c.flights, key)
	c.mu.Unlock()
	fl.v = v
	close(fl.done)
}

type entry struct {
	c       *filter.Consumer
	expires int64 // unix nanoseconds
}

func newCache(ttl time.Duration, max int) *cache {
	return &cache{ttl: ttl, max: max, entries: make(map[[sha256.Size]byte]entry), flights: make(map[[sha256.Size]byte]*flight)}
}

// get reports whether key was verified lately for consumer k.
func (c *cache) get(key [sha256.Size]byte, k *filter.Consumer) bool {
	c.mu.RLock()
	e, ok := c.entries[key]
	c.mu.RUnlock()
	return ok && e.c == k && time.Now().UnixNano() < e.expires
}

func (c *cache) put(key [sha256.Size]byte, k *filter.Consumer) {
	now := time.Now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		// Expired entries first; then any one, so the map never grows past max.
		evicted := false
		for k, e := range c.entries {
			if e.expires <= now {
				delete(c.entries, k)
				evicted = true
			}
		}
		if !evicted {
			for k := range c.entries {
				delete(c.entries, k)
				break
			}
		}
	}
	c.entries[key] = entry{c: k, expires: now + int64(c.ttl)}
}

// validBcrypt reports whether h parses as a bcrypt hash.
func validBcrypt(h string) bool {
	_, err := bcrypt.Cost([]byte(h))
	return err == nil
}
