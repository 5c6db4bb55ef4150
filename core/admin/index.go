package admin

import (
	_ "embed"
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/httpsyntax"
)

// openapiDoc is the admin API's reference for programs (OpenAPI 3.1), served at /openapi.json.
// A test keeps it and the endpoints map in step.
//
//go:embed openapi.json
var openapiDoc []byte

// summaries maps an endpoint's path to the one-line summary of its operation in openapiDoc.
var summaries = func() map[string]string {
	var doc struct {
		Paths map[string]map[string]struct {
			Summary string `json:"summary"`
		} `json:"paths"`
	}
	out := map[string]string{}
	if json.Unmarshal(openapiDoc, &doc) != nil {
		return out // the test of openapi.json says why
	}
	for path, ops := range doc.Paths {
		for _, m := range []string{"get", "post"} {
			if op, ok := ops[m]; ok && out[path] == "" {
				out[path] = op.Summary
			}
		}
	}
	return out
}()

func (a *Server) openapi(rc *fasthttp.RequestCtx) {
	rc.SetStatusCode(fasthttp.StatusOK)
	rc.SetContentType("application/json")
	rc.SetBody(openapiDoc)
}

type indexEntry struct {
	Path    string `json:"path"`
	Method  string `json:"method"`
	Summary string `json:"summary"`
	// Public endpoints answer without the token.
	Public bool `json:"public,omitempty"`
}

// index lists the endpoints, the console included. (A browser, whose Accept prefers text/html,
// is sent to the console before it gets here: see handle.)
func (a *Server) index(rc *fasthttp.RequestCtx) {
	entries := make([]indexEntry, 0, len(a.endpoints))
	for path, ep := range a.endpoints {
		entries = append(entries, indexEntry{Path: path, Method: ep.method, Summary: summaries[path], Public: public[path]})
	}
	// The console is dispatched before the endpoints, since its files need no token.
	entries = append(entries, indexEntry{Path: consolePrefix, Method: "GET", Summary: summaries[consolePrefix], Public: true})
	sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	writeJSON(rc, fasthttp.StatusOK, struct {
		Name      string       `json:"name"`
		Reference string       `json:"reference"`
		Endpoints []indexEntry `json:"endpoints"`
	}{"weir admin api", "/openapi.json", entries})
}

// prefersHTML reports whether an Accept header (RFC 9110 section 12.5.1) ranks text/html above
// application/json. Browsers navigating send "text/html,…,*/*;q=0.8"; curl sends "*/*" and a
// missing header means anything, which both give JSON.
func prefersHTML(accept []byte) bool {
	if len(accept) == 0 {
		return false
	}
	qHTML, qJSON := quality(accept, "text", "html"), quality(accept, "application", "json")
	return qHTML > 0 && qHTML > qJSON
}

// quality is the weight Accept gives to typ/sub: that of the most specific range matching it,
// 0 when none does.
func quality(accept []byte, typ, sub string) float64 {
	best, q := -1, 0.0
	for rest := accept; len(rest) > 0; {
		var elem []byte
		elem, rest = httpsyntax.NextElement(rest)
		params := strings.Split(string(elem), ";")
		rt, rs, ok := strings.Cut(strings.TrimSpace(params[0]), "/")
		if !ok {
			continue
		}
		spec := -1
		switch {
		case strings.EqualFold(rt, typ) && strings.EqualFold(rs, sub):
			spec = 2
		case strings.EqualFold(rt, typ) && rs == "*":
			spec = 1
		case rt == "*" && rs == "*":
			spec = 0
		}
		if spec <= best {
			continue
		}
		best, q = spec, 1
		for _, p := range params[1:] {
			if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f >= 0 && f <= 1 {
					q = f
				}
			}
		}
	}
	return q
}
