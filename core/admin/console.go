package admin

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/valyala/fasthttp"
)

// The web console: static files only. Every figure it shows comes from the admin API itself,
// fetched by the page with the operator's token, so the files hold no data and are served
// without the token (a page that cannot load cannot ask for one). Everything it runs is in
// these files: no framework, nothing from another origin.
//
//go:embed console/index.html console/console.css console/console.js console/prom.js
var consoleFiles embed.FS

const consolePrefix = "/console/"

// consoleCSP allows the page its own files and admin API calls, and nothing else: no inline
// script or style (so injected markup cannot run), no framing (clickjacking), no form posts.
const consoleCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

var consoleTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
}

type consoleAsset struct {
	body  []byte
	ctype string
	etag  string
}

// consoleAssets maps a path under /console/ ("" for the page) to its file, loaded once.
var consoleAssets = loadConsole()

func loadConsole() map[string]consoleAsset {
	out := map[string]consoleAsset{}
	err := fs.WalkDir(consoleFiles, "console", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := consoleFiles.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		name := strings.TrimPrefix(p, "console/")
		if name == "index.html" {
			name = ""
		}
		// Fixed types, not mime.TypeByExtension, which reads the host's mime.types and may
		// answer differently from one machine to the next.
		ctype, known := consoleTypes[path.Ext(p)]
		if !known {
			return fmt.Errorf("%s: no content type for this extension", p)
		}
		out[name] = consoleAsset{body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		panic("admin console: " + err.Error()) // the files are compiled in; this cannot fail at run time
	}
	return out
}

// console serves the console's files under /console/ (and redirects /console to it).
func console(rc *fasthttp.RequestCtx) {
	h := &rc.Response.Header
	h.Set("Content-Security-Policy", consoleCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if m := string(rc.Method()); m != fasthttp.MethodGet && m != fasthttp.MethodHead {
		h.Set("Allow", "GET, HEAD")
		writeJSON(rc, fasthttp.StatusMethodNotAllowed, map[string]string{"error": "use GET"})
		return
	}
	p := string(rc.Path())
	if p == "/console" {
		// A relative Location keeps whatever host and scheme the browser used.
		rc.Response.Header.Set("Location", consolePrefix)
		rc.SetStatusCode(fasthttp.StatusMovedPermanently)
		return
	}
	asset, ok := consoleAssets[strings.TrimPrefix(p, consolePrefix)]
	if !ok {
		writeJSON(rc, fasthttp.StatusNotFound, map[string]string{"error": "no such console file"})
		return
	}
	// The files change only with the binary: a browser keeps them but asks each time whether
	// they are still current (no-cache), and an unchanged file costs a 304.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", asset.etag)
	if inm := rc.Request.Header.Peek("If-None-Match"); len(inm) > 0 && etagMatch(string(inm), asset.etag) {
		rc.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	rc.SetContentType(asset.ctype)
	rc.SetBody(asset.body)
}

// etagMatch reports whether an If-None-Match list names etag (weak comparison, RFC 9110 13.1.2).
func etagMatch(list, etag string) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}
