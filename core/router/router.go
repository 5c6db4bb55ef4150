// Package router compiles the configured routes into an immutable table and matches requests
// against it. All parsing, validation and regular-expression compilation happens in Compile, at
// config build; Match runs per request, allocates nothing and never scans the routes linearly
// (only the regular-expression routes of one host are tried one by one, after a check of each
// pattern's literal prefix). Regular expressions allocate nothing either: regexp keeps its
// matching machines in a pool, so once warm a match on a []byte needs no memory; the tests
// prove zero allocations for every kind of route, regular expressions included.
//
// # What a route matches
//
// Host: "" (or "*") matches any host. An exact host ("api.example.com") matches the request's
// Host compared case-insensitively, after dropping a port (":8080", also after a bracketed IPv6
// literal) and one trailing dot. A wildcard ("*.example.com") matches any host with at least one
// more label in front ("a.example.com", "a.b.example.com"), never "example.com" itself. A "*"
// anywhere else ("a.*.com", "*example.com") is an error.
//
// Path, at most one of:
//   - Path without parameters: the request path must be equal, byte for byte.
//   - Path with parameters: "/users/{id}/posts/{post}". Segments are split at "/"; a {name}
//     segment matches exactly one non-empty segment; a final {name...} segment matches the
//     rest of the path, slashes included, and may be empty ("/static/{p...}" matches
//     "/static/" but not "/static"). At most filter.MaxParams parameters, names unique.
//   - PathPrefix: the request path starts with it (plain bytes, so "/v1" also matches "/v1beta";
//     write "/v1/" to stop at a segment).
//   - PathRegex: a Go regular expression (RE2) that must match the whole path; it is anchored
//     for you. Regular-expression routes capture no parameters.
//
// Methods: empty matches any method; otherwise the request method must be one of the list,
// compared exactly after the list is upper-cased at compile time (HTTP methods are
// case-sensitive, and HEAD does not match a GET-only route). TRACE matches only a route that
// allows it (Route.AllowTrace, or TRACE in its method list): it echoes the request, cookies
// and credentials included, back to whoever can make a client send it.
//
// When no route matches, Allowed names the methods with which some route would have matched,
// for a 405 answer.
//
// Headers: every matcher must hold. Names are case-insensitive; the value is compared exactly
// with the first header of that name; the value "*" requires the header to be present with a
// non-empty value (fasthttp does not tell an empty header from a missing one). Matching on
// Cookie or Trailer is allowed but allocates, because fasthttp rebuilds those values on Peek.
//
// # Specificity
//
// Of all routes that match, the most specific wins; each rule below is consulted only when all
// rules above it tie:
//
//  1. Host: exact host, then wildcard hosts (the longer suffix wins: "*.api.example.com" beats
//     "*.example.com"), then routes without a host.
//  2. Path kind: exact path, then parameterised path, then path prefix, then regular expression,
//     then routes without a path.
//  3. Within a kind: a parameterised path with more literal segments wins, and at equal count
//     one without a catch-all {name...} beats one with it; the longest path prefix wins.
//  4. Constraints: the route with more constraints wins, where every header matcher counts one
//     and a non-empty method list counts one.
//  5. Config order: the earlier route wins.
//
// So host dominates: a route for "api.example.com" with no path at all beats a host-less route
// whose exact path matches. This mirrors virtual hosts in Envoy and nginx, where the host
// picks the route set first.
//
// # Layout
//
// Routes are grouped by host: a map for exact hosts, a map keyed by suffix for wildcards and one
// group for host-less routes. A group holds a map of exact paths, a segment trie for
// parameterised paths, a radix tree for prefixes and short lists for regular expressions and
// pathless routes; every list is presorted by rules 4 and 5, so the first route that passes its
// method and header check is the best of its list.
package router

import (
	"bytes"
	"regexp"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
)

// Header is one header matcher: Name (case-insensitive) must have exactly Value, or be present
// when Value is "*".
type Header struct{ Name, Value string }

// Route is one route's match conditions. Its id is its index in the slice given to Compile.
type Route struct {
	Name string
	// Host is "" (any), an exact host "api.example.com" or a wildcard "*.example.com".
	Host string
	// Path is an exact path; it may contain {name} segments and a final {name...}.
	Path       string
	PathPrefix string
	PathRegex  string
	// Methods lists the accepted methods; empty accepts any.
	Methods []string
	Headers []Header
	// Raw routes match the path exactly as received instead of its normal form (see
	// NormalizePath), for upstreams that need what normalising changes or refuses (an
	// encoded "/", say). Their Path and PathPrefix are compared as written.
	Raw bool
	// AllowTrace lets TRACE match the route; without it (or TRACE in Methods) TRACE never does.
	AllowTrace bool
}

// Table is an immutable, compiled route table, safe for concurrent use.
type Table struct {
	routes []route

	exactHosts map[string]*group
	wildHosts  map[string]*group // keyed by the suffix after "*."
	anyHost    *group

	// Bounds on wildcard suffix lengths let Match skip map lookups that cannot hit.
	minWild, maxWild int

	// raw holds the groups of the Raw routes, sharing routes with this table; nil when no
	// route is raw, which keeps the common table to one match per request.
	raw *Table

	// allow holds the methods Allowed tries: defaultAllow, then every other method a route
	// lists (TRACE when a route allows it).
	allow []string
}

// defaultAllow are the methods a route without a method list is reported to allow.
var defaultAllow = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// route is the compiled form of a Route, holding only what Match needs.
type route struct {
	methods []string
	headers []headerMatch
	weight  int       // specificity rule 4: number of constraints
	segs    []segment // parameterised paths only, for extracting the winner's parameters
	re      *regexp.Regexp
	reLit   string // literal every match of re starts with: a cheap filter before running re
	rank    rank   // specificity, to choose between the best raw and the best normal route
	trace   bool   // TRACE may match
}

// rank is a route's place under the specificity rules, as far as it is known at compile time.
type rank struct {
	host    int // rule 1: 0 exact, 1 wildcard, 2 any host
	hostLen int // rule 1: a longer wildcard suffix wins
	kind    int // rule 2: 0 exact, 1 parameters, 2 prefix, 3 regular expression, 4 no path
	within  int // rule 3: larger wins (literal segments, then no catch-all; prefix length)
}

// better reports whether route a is more specific than route b (rules 1 to 5).
func (t *Table) better(a, b int) bool {
	ra, rb := &t.routes[a].rank, &t.routes[b].rank
	switch {
	case ra.host != rb.host:
		return ra.host < rb.host
	case ra.hostLen != rb.hostLen:
		return ra.hostLen > rb.hostLen
	case ra.kind != rb.kind:
		return ra.kind < rb.kind
	case ra.within != rb.within:
		return ra.within > rb.within
	case t.routes[a].weight != t.routes[b].weight:
		return t.routes[a].weight > t.routes[b].weight
	}
	return a < b
}

type headerMatch struct {
	name    string // canonical form, as fasthttp stores it
	value   string
	present bool // Value was "*"
}

// group holds the routes of one host key.
type group struct {
	exact  map[string][]int32
	params *pnode
	prefix *rnode
	regex  []int32
	bare   []int32 // routes without a path condition
}

// maxHost bounds the lower-cased copy of the request host kept on the stack. Compiled host
// patterns are at most 253 bytes (the DNS limit), so a longer request host can only match a
// wildcard, and for that its last maxHost bytes suffice.
const maxHost = 256

// Match returns the id of the best route, or -1. host is the raw Host header value (may carry a
// port, any case); path is the already-normalized request path; params receives named
// parameters (Key = param name string held by the table, Value = subslice of path) and *n their
// count. h may be nil when no route uses header matchers; such routes then do not match.
func (t *Table) Match(method, host, path []byte, h *fasthttp.RequestHeader, params *[filter.MaxParams]filter.Param, n *int) int {
	if n != nil {
		*n = 0
	}
	req := request{method: method, path: path, h: h, trace: string(method) == "TRACE"}
	if len(t.exactHosts) > 0 || len(t.wildHosts) > 0 {
		var buf [maxHost]byte
		hv := trimHost(host)
		truncated := len(hv) > maxHost
		if truncated {
			hv = hv[len(hv)-maxHost:]
		}
		lh := buf[:len(hv)]
		for i, c := range hv {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			lh[i] = c
		}
		if !truncated {
			if g := t.exactHosts[string(lh)]; g != nil {
				if id := t.matchGroup(g, &req, params, n); id >= 0 {
					return id
				}
			}
		}
		if len(t.wildHosts) > 0 {
			// Scanning dots left to right visits suffixes longest first (rule 1).
			for i := 0; i < len(lh); i++ {
				if lh[i] != '.' || (i == 0 && !truncated) {
					continue
				}
				suffix := lh[i+1:]
				if len(suffix) > t.maxWild {
					continue
				}
				if len(suffix) < t.minWild {
					break
				}
				if g := t.wildHosts[string(suffix)]; g != nil {
					if id := t.matchGroup(g, &req, params, n); id >= 0 {
						return id
					}
				}
			}
		}
	}
	if t.anyHost != nil {
		return t.matchGroup(t.anyHost, &req, params, n)
	}
	return -1
}

// HasRaw reports whether some route matches raw paths (see Route.Raw and MatchPaths).
func (t *Table) HasRaw() bool { return t.raw != nil }

// MatchPaths is Match for a table that may hold Raw routes: the normal routes are matched on
// norm, the normal form of the path (nil when it has none: such a request can only reach a raw
// route), the raw ones on raw, the path as received; of the two winners the more specific one
// wins, by the same rules as within each. It reports whether the winner is a raw route.
func (t *Table) MatchPaths(method, host, norm, raw []byte, h *fasthttp.RequestHeader, params *[filter.MaxParams]filter.Param, n *int) (id int, isRaw bool) {
	id = -1
	if norm != nil {
		id = t.Match(method, host, norm, h, params, n)
	}
	if t.raw == nil {
		return id, false
	}
	var rp [filter.MaxParams]filter.Param
	var rn int
	rid := t.raw.Match(method, host, raw, h, &rp, &rn)
	if rid < 0 || (id >= 0 && !t.better(rid, id)) {
		return id, false
	}
	if params != nil && n != nil {
		*params, *n = rp, rn
	}
	return rid, true
}

// Allowed appends to dst the methods, other than method, with which some route would match a
// request that matched none (Match or MatchPaths returned -1), as the value of an Allow field:
// "GET, POST". It appends nothing when no method would do, and then the answer is 404. norm
// and raw are as for MatchPaths (raw is ignored when no route is raw). It runs only on a miss,
// one match per method the routes name, and allocates nothing once dst has grown.
func (t *Table) Allowed(dst, method, host, norm, raw []byte, h *fasthttp.RequestHeader) []byte {
	start := len(dst)
	for _, m := range t.allow {
		if m == string(method) {
			continue
		}
		mb := unsafe.Slice(unsafe.StringData(m), len(m)) // read only
		hit := norm != nil && t.Match(mb, host, norm, h, nil, nil) >= 0
		if !hit && t.raw != nil {
			hit = t.raw.Match(mb, host, raw, h, nil, nil) >= 0
		}
		if !hit {
			continue
		}
		if len(dst) > start {
			dst = append(dst, ", "...)
		}
		dst = append(dst, m...)
	}
	return dst
}

// request bundles what the constraint checks need, so the recursive walks pass one pointer.
type request struct {
	method []byte
	path   []byte
	h      *fasthttp.RequestHeader
	trace  bool // the method is TRACE
}

// trimHost drops a port and one trailing dot. A bracketed IPv6 literal keeps its colons.
func trimHost(host []byte) []byte {
	if len(host) > 0 && host[0] == '[' {
		if i := bytes.IndexByte(host, ']'); i >= 0 {
			return host[:i+1]
		}
		return host
	}
	if i := bytes.IndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	if len(host) > 0 && host[len(host)-1] == '.' {
		host = host[:len(host)-1]
	}
	return host
}

// matchGroup returns the best route of g for the request, trying path kinds in the order of
// rule 2, so the first kind that yields a route decides.
func (t *Table) matchGroup(g *group, req *request, params *[filter.MaxParams]filter.Param, n *int) int {
	if g.exact != nil {
		if ids := g.exact[string(req.path)]; ids != nil {
			if id := t.first(ids, req); id >= 0 {
				return id
			}
		}
	}
	if g.params != nil && len(req.path) > 0 && req.path[0] == '/' {
		b := candidate{id: -1}
		t.walkParams(g.params, req.path[1:], false, req, &b)
		if b.id >= 0 {
			t.extract(int(b.id), req.path, params, n)
			return int(b.id)
		}
	}
	if g.prefix != nil {
		if id := t.matchPrefix(g.prefix, req.path, req); id >= 0 {
			return id
		}
	}
	for _, id := range g.regex {
		r := &t.routes[id]
		// The literal and constraint checks are cheaper than the regular expression, so they go
		// first.
		if len(req.path) >= len(r.reLit) && string(req.path[:len(r.reLit)]) == r.reLit &&
			t.constraintsHold(r, req) && r.re.Match(req.path) {
			return int(id)
		}
	}
	return t.first(g.bare, req)
}

// first returns the first route of a presorted list whose methods and headers hold, or -1.
func (t *Table) first(ids []int32, req *request) int {
	for _, id := range ids {
		if t.constraintsHold(&t.routes[id], req) {
			return int(id)
		}
	}
	return -1
}

func (t *Table) constraintsHold(r *route, req *request) bool {
	if req.trace && !r.trace {
		return false
	}
	if len(r.methods) > 0 {
		ok := false
		for _, m := range r.methods {
			if string(req.method) == m {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for i := range r.headers {
		hm := &r.headers[i]
		if req.h == nil {
			return false
		}
		v := req.h.Peek(hm.name)
		if hm.present {
			if len(v) == 0 {
				return false
			}
		} else if string(v) != hm.value {
			return false
		}
	}
	return true
}

// extract fills params with the parameters of route id, which is known to match path.
func (t *Table) extract(id int, path []byte, params *[filter.MaxParams]filter.Param, n *int) {
	if params == nil || n == nil {
		return
	}
	k := 0
	rest := path[1:]
	for _, s := range t.routes[id].segs {
		if s.kind == segCatchAll {
			params[k] = filter.Param{Key: s.text, Value: rest}
			k++
			break
		}
		seg := rest
		if i := bytes.IndexByte(rest, '/'); i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		}
		if s.kind == segParam {
			params[k] = filter.Param{Key: s.text, Value: seg}
			k++
		}
	}
	*n = k
}
