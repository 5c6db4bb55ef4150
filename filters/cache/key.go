package cache

import (
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/httpsyntax"
)

// buildKey writes the request's primary key into st.key:
//
//	GET <host><path>[?<query>][\n<header>: <value>]...[\nconsumer: <name>]
//
// The host is lowercased; the path is the one sent upstream, byte for byte, so two spellings
// of a path never share an entry. A consumer is part of the key whenever an auth filter
// identified one, so consumers never see each other's entries.
func (f *Filter) buildKey(c *filter.Ctx, st *state) {
	b := append(st.key[:0], "GET "...)
	for _, ch := range c.Request.Header.Host() {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		b = append(b, ch)
	}
	u := c.Request.URI()
	b = append(b, u.PathOriginal()...)
	if len(f.query) == 0 {
		if q := u.QueryString(); len(q) > 0 {
			b = append(b, '?')
			b = append(b, q...)
		}
	} else {
		sep := byte('?')
		args := u.QueryArgs()
		for _, name := range f.query {
			for k, v := range args.All() {
				if string(k) == name {
					// Values come decoded: quoted again, so that id=a%26x%3D1 never shares
					// the key of id=a&x=1.
					b = append(b, sep)
					b = fasthttp.AppendQuotedArg(b, k)
					b = append(b, '=')
					b = fasthttp.AppendQuotedArg(b, v)
					sep = '&'
				}
			}
		}
	}
	st.urlEnd = len(b)
	for _, name := range f.keyHeaders {
		b = append(b, '\n')
		b = append(b, name...)
		b = append(b, ':')
		for i, v := range c.Request.Header.PeekAll(name) {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, ' ')
			b = append(b, v...)
		}
	}
	if k := c.Consumer(); k != nil {
		b = append(b, "\nconsumer: "...)
		b = append(b, k.Name...)
	}
	st.key = b
}

// appendVary appends the variant part of a key: the request's values of the fields Vary names.
// Accept-Encoding is reduced to the codings it accepts, in a fixed order, so the many ways
// browsers spell the same preference share one variant.
func appendVary(b []byte, h *fasthttp.RequestHeader, names []string) []byte {
	for _, n := range names {
		b = append(b, "\nvary "...)
		b = append(b, n...)
		b = append(b, ':')
		vs := h.PeekAll(n)
		if n == "accept-encoding" {
			b = appendCodings(b, vs)
			continue
		}
		for i, v := range vs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, ' ')
			b = append(b, httpsyntax.TrimOWS(v)...)
		}
	}
	return b
}

var codings = [...]string{"br", "deflate", "gzip", "identity", "zstd", "*"}

// appendCodings appends the known codings the Accept-Encoding values accept (q above zero).
// An unknown coding is ignored: no upstream of a shared cache is expected to choose by it.
func appendCodings(b []byte, vs [][]byte) []byte {
	var seen [len(codings)]bool
	for _, v := range vs {
		for rest := v; len(rest) > 0; {
			var el []byte
			el, rest = httpsyntax.NextElement(rest)
			name, params := el, []byte(nil)
			for i, ch := range el {
				if ch == ';' {
					name, params = httpsyntax.TrimOWS(el[:i]), el[i+1:]
					break
				}
			}
			if zeroQ(params) {
				continue
			}
			for i, cd := range codings {
				if httpsyntax.EqualFold(name, cd) {
					seen[i] = true
				}
			}
		}
	}
	for i, ok := range seen {
		if ok {
			b = append(b, ' ')
			b = append(b, codings[i]...)
		}
	}
	return b
}

// zeroQ reports whether parameters say q=0 (q=0, q=0.0, q=0.000).
func zeroQ(params []byte) bool {
	p := httpsyntax.TrimOWS(params)
	if len(p) < 3 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=' {
		return false
	}
	for i, ch := range p[2:] {
		if ch == '0' || (ch == '.' && i == 1) {
			continue
		}
		return false
	}
	return true
}

// containsToken reports whether a comma-separated list holds tok (case-insensitive).
func containsToken(list []byte, tok string) bool {
	for rest := list; len(rest) > 0; {
		var el []byte
		el, rest = httpsyntax.NextElement(rest)
		if httpsyntax.EqualFold(el, tok) {
			return true
		}
	}
	return false
}
