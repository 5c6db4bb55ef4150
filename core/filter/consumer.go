package filter

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"slices"
)

// Consumer is a caller declared under `consumers:`: a name, the groups it belongs to, headers
// that tell the upstream who it is, and the credentials that identify it. Auth filters resolve a
// request to a Consumer through Consumers and record it with Ctx.SetConsumer; later filters
// (acl, ratelimit) read it with Ctx.Consumer. A Consumer is built once per snapshot and never
// changed, so it is shared by every request without copying.
type Consumer struct {
	Name   string
	Groups []string
	// Headers are set on the upstream request when this consumer is authenticated, as
	// [canonical name, value]. The edge strips every such name from client requests, so only
	// the gateway ever sets them.
	Headers [][2]string

	// APIKeys are the SHA-256 digests of the consumer's API keys; keys themselves are never
	// kept, so a config dump or a core file reveals none.
	APIKeys [][sha256.Size]byte
	// Basic are the consumer's Basic auth users with their bcrypt hashes.
	Basic []BasicUser
	// JWT are the (issuer, subject) pairs of tokens that identify the consumer.
	JWT []JWTSubject
}

// BasicUser is one Basic auth user name and its bcrypt hash.
type BasicUser struct {
	User string
	Hash []byte
}

// JWTSubject names the tokens of one consumer: those issued by Issuer with subject Subject.
type JWTSubject struct {
	Issuer  string
	Subject string
}

// InGroup reports whether the consumer belongs to group g.
func (c *Consumer) InGroup(g string) bool { return slices.Contains(c.Groups, g) }

// Consumers indexes a snapshot's consumers by every credential, so a lookup costs one map access.
// It is immutable and safe for concurrent use; a nil *Consumers has no consumers.
type Consumers struct {
	byName  map[string]*Consumer
	byKey   map[[sha256.Size]byte]*Consumer
	byBasic map[string]basicEntry
	byJWT   map[JWTSubject]*Consumer
}

type basicEntry struct {
	c    *Consumer
	hash []byte
}

// NewConsumers indexes list. A credential claimed by two consumers is an error: a request
// presenting it could not be told apart.
func NewConsumers(list []*Consumer) (*Consumers, error) {
	cs := &Consumers{
		byName:  make(map[string]*Consumer, len(list)),
		byKey:   map[[sha256.Size]byte]*Consumer{},
		byBasic: map[string]basicEntry{},
		byJWT:   map[JWTSubject]*Consumer{},
	}
	for _, c := range list {
		if _, dup := cs.byName[c.Name]; dup {
			return nil, fmt.Errorf("consumer %q is declared twice", c.Name)
		}
		cs.byName[c.Name] = c
		for _, k := range c.APIKeys {
			if o := cs.byKey[k]; o != nil {
				return nil, fmt.Errorf("consumers %q and %q share an API key", o.Name, c.Name)
			}
			cs.byKey[k] = c
		}
		for _, b := range c.Basic {
			if o, dup := cs.byBasic[b.User]; dup {
				return nil, fmt.Errorf("consumers %q and %q share the Basic auth user %q", o.c.Name, c.Name, b.User)
			}
			cs.byBasic[b.User] = basicEntry{c: c, hash: b.Hash}
		}
		for _, j := range c.JWT {
			if o := cs.byJWT[j]; o != nil {
				return nil, fmt.Errorf("consumers %q and %q share the JWT issuer %q and subject %q", o.Name, c.Name, j.Issuer, j.Subject)
			}
			cs.byJWT[j] = c
		}
	}
	return cs, nil
}

// Named returns the consumer called name, or nil.
func (cs *Consumers) Named(name string) *Consumer {
	if cs == nil {
		return nil
	}
	return cs.byName[name]
}

// ByAPIKey returns the consumer owning the API key whose SHA-256 digest is sum, or nil. Callers
// hash the presented key first: the lookup then reveals nothing about stored keys through its
// timing, as comparing keys byte by byte would.
func (cs *Consumers) ByAPIKey(sum [sha256.Size]byte) *Consumer {
	if cs == nil {
		return nil
	}
	return cs.byKey[sum]
}

// ByBasicUser returns the consumer with the Basic auth user name and that user's bcrypt hash,
// or nil. Verifying the password is the caller's job.
func (cs *Consumers) ByBasicUser(user []byte) (*Consumer, []byte) {
	if cs == nil {
		return nil, nil
	}
	e := cs.byBasic[string(user)] // no allocation: the compiler converts in place for lookups
	return e.c, e.hash
}

// ByJWT returns the consumer identified by a token's issuer and subject, or nil.
func (cs *Consumers) ByJWT(issuer, subject string) *Consumer {
	if cs == nil {
		return nil
	}
	return cs.byJWT[JWTSubject{Issuer: issuer, Subject: subject}]
}

// All returns every consumer, in no particular order.
func (cs *Consumers) All() []*Consumer {
	if cs == nil {
		return nil
	}
	out := make([]*Consumer, 0, len(cs.byName))
	for _, c := range cs.byName {
		out = append(out, c)
	}
	return out
}

// Claims are the verified claims of a request's token, recorded by an auth filter (jwt) so
// that later filters can key on them (ratelimit's claim keys) without importing it.
type Claims interface {
	// Claim returns the named claim as text (numbers in decimal, strings as is) and whether
	// the token has it.
	Claim(name string) (string, bool)
}

// SetConsumer records the authenticated caller. An auth filter calls it once it has verified
// the credential; the engine sends the consumer's Headers upstream.
func (c *Ctx) SetConsumer(k *Consumer) { c.consumer = k }

// Consumer returns the caller an auth filter authenticated, or nil.
func (c *Ctx) Consumer() *Consumer { return c.consumer }

// SetClaims records the verified claims of the request's token. cl must stay valid until the
// request ends.
func (c *Ctx) SetClaims(cl Claims) { c.claims = cl }

// Claims returns the verified claims recorded by an auth filter, or nil.
func (c *Ctx) Claims() Claims { return c.claims }

// ClientIP returns the client's address as the edge resolved it: the peer's address, or for a
// peer in server.trusted_proxies the nearest address in X-Forwarded-For that is not a trusted
// proxy. Filters that decide on the client (ipfilter, ratelimit) use this, never a raw
// X-Forwarded-For, which any client can write.
func (c *Ctx) ClientIP() netip.Addr { return c.clientIP }

// SetClientIP records the client's address; the engine calls it once per request.
func (c *Ctx) SetClientIP(a netip.Addr) { c.clientIP = a }
