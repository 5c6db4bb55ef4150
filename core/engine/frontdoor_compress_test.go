package engine

// End-to-end tests of the compress filter through the gateway: bodies the proxy buffers, bodies
// it streams with a Content-Length and chunked bodies are compressed and decode with the
// standard decoders; an upstream dying mid-body breaks the client's body off; already-encoded
// bodies pass as the upstream sent them; the upstream sees the client's Accept-Encoding
// unchanged.

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	brotli "github.com/molecule-man/go-brrr"
	"github.com/valyala/fasthttp"
)

const compressRoutes = `
  - name: api
    match: { path_prefix: /api/ }
    upstream: be
    filters:
      - compress: {}
  - name: stream
    match: { path_prefix: /stream/ }
    upstream: be
    filters:
      - compress: { max_size: 100KiB }
`

func compressJSON(n int) string {
	var b strings.Builder
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"item %d"}`, i, i*3)
	}
	b.WriteString("]}")
	return b.String()
}

func decompress(t *testing.T, enc string, b []byte) string {
	t.Helper()
	var r io.Reader
	switch enc {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case "br":
		r = brotli.NewReader(bytes.NewReader(b))
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	case "":
		return string(b)
	default:
		t.Fatalf("coding %q", enc)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decode %s: %v", enc, err)
	}
	return string(out)
}

func TestFrontdoorCompress(t *testing.T) {
	rec, addr := startFilterGateway(t, "", compressRoutes)
	small, large := compressJSON(4<<10), compressJSON(200<<10) // large: over the proxy's 64 KiB buffer
	fixed := func(body, extra string) string {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s", extra, len(body), body)
	}
	chunked := func(body string) string {
		var b strings.Builder
		b.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
		for len(body) > 0 {
			n := min(len(body), 8000)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
			body = body[n:]
		}
		b.WriteString("0\r\n\r\n")
		return b.String()
	}
	for _, tt := range []struct {
		name, path, answer, ae, want, body, vary string
	}{
		{"buffered, browser list", "/api/items", fixed(small, ""), "gzip, deflate, br, zstd", "zstd", small, "Accept-Encoding"},
		{"buffered, gzip", "/api/items", fixed(small, "Vary: Origin\r\n"), "gzip", "gzip", small, "Origin, Accept-Encoding"},
		{"streamed with a length, br", "/api/items", fixed(large, ""), "br;q=1, gzip;q=0.5", "br", large, "Accept-Encoding"},
		{"streamed with a length, gzip", "/api/items", fixed(large, ""), "GZIP", "gzip", large, "Accept-Encoding"},
		{"no Accept-Encoding", "/api/items", fixed(small, ""), "", "", small, "Accept-Encoding"},
		{"chunked, compressed as it streams", "/api/items", chunked(large), "zstd, gzip", "zstd", large, "Accept-Encoding"},
		{"chunked, gzip", "/api/items", chunked(large), "gzip", "gzip", large, "Accept-Encoding"},
		{"over max_size with a length, streamed", "/stream/items", fixed(large, ""), "br", "br", large, "Accept-Encoding"},
		{"over max_size, no Accept-Encoding", "/stream/items", fixed(large, ""), "", "", large, "Accept-Encoding"},
		{"no-transform", "/api/items", fixed(small, "Cache-Control: no-transform\r\n"), "gzip", "", small, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec.setAnswer(tt.answer, "", false)
			raw := "GET " + tt.path + " HTTP/1.1\r\nHost: gw.test\r\n"
			if tt.ae != "" {
				raw += "Accept-Encoding: " + tt.ae + "\r\n"
			}
			resp := roundTrip(t, addr, raw+"\r\n")
			if resp.StatusCode() != 200 {
				t.Fatalf("status %d", resp.StatusCode())
			}
			enc := string(resp.Header.ContentEncoding())
			if enc != tt.want {
				t.Fatalf("Content-Encoding %q, want %q", enc, tt.want)
			}
			if got := decompress(t, enc, resp.Body()); got != tt.body {
				t.Fatalf("body differs after decoding (%d bytes, want %d)", len(got), len(tt.body))
			}
			if v := string(resp.Header.Peek("Vary")); v != tt.vary {
				t.Errorf("Vary %q, want %q", v, tt.vary)
			}
			if enc != "" && resp.Header.ContentLength() >= 0 && resp.Header.ContentLength() != len(resp.Body()) {
				t.Errorf("Content-Length %d for %d bytes", resp.Header.ContentLength(), len(resp.Body()))
			}
			got := rec.take()
			if len(got) != 1 {
				t.Fatalf("upstream saw %d requests", len(got))
			}
			if tt.ae != "" && !strings.Contains(got[0], "Accept-Encoding: "+tt.ae+"\r\n") {
				t.Errorf("upstream request lost the client's Accept-Encoding:\n%s", got[0])
			}
		})
	}

	// An upstream that dies mid-body: the client's compressed stream breaks off too (no last
	// chunk), never a complete-looking truncated body.
	partial := chunked(large)
	rec.setAnswer(partial[:len(partial)/2], "", true)
	conn, br := dial(t, addr)
	io.WriteString(conn, "GET /api/items HTTP/1.1\r\nHost: gw.test\r\nAccept-Encoding: gzip\r\n\r\n")
	broken := &fasthttp.Response{}
	if err := broken.Read(br); err == nil {
		t.Fatalf("a truncated upstream body reached the client whole: %d, %d bytes", broken.StatusCode(), len(broken.Body()))
	}
	rec.take()

	// Already encoded by the upstream: forwarded byte for byte.
	gz := &bytes.Buffer{}
	zw := gzip.NewWriter(gz)
	io.WriteString(zw, small)
	zw.Close()
	rec.setAnswer(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s", gz.Len(), gz.String()), "", false)
	resp := roundTrip(t, addr, "GET /api/items HTTP/1.1\r\nHost: gw.test\r\nAccept-Encoding: zstd, br, gzip\r\n\r\n")
	if string(resp.Header.ContentEncoding()) != "gzip" || !bytes.Equal(resp.Body(), gz.Bytes()) {
		t.Fatalf("already gzip: Content-Encoding %q, body changed: %v", resp.Header.ContentEncoding(), !bytes.Equal(resp.Body(), gz.Bytes()))
	}
	rec.take()
}

// TestFrontdoorCompressWithCache: with cache before compress, each coding is a variant the
// cache stores under Vary: Accept-Encoding and serves without compressing again; the identity
// is one more variant; a chunked body compressed as it streams is stored as well.
func TestFrontdoorCompressWithCache(t *testing.T) {
	rec, addr := startFilterGateway(t, "", `
  - name: api
    match: { path_prefix: /api/ }
    upstream: be
    filters:
      - cache: {}
      - compress: {}
`)
	body := compressJSON(4 << 10)
	for _, tt := range []struct {
		name, answer string
	}{
		{"with a length", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: max-age=60\r\nETag: \"e1\"\r\nContent-Length: %d\r\n\r\n%s", len(body), body)},
		{"chunked", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: max-age=60\r\nETag: \"e1\"\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec.setAnswer(tt.answer, "", false)
			path := "/api/" + strings.ReplaceAll(tt.name, " ", "-")
			for i, step := range []struct {
				ae, enc  string
				upstream int
			}{
				{"gzip", "gzip", 1},
				{"gzip", "gzip", 0},
				{"zstd, br, gzip", "zstd", 1},
				{"zstd, br, gzip", "zstd", 0},
				{"", "", 1},
				{"", "", 0},
				{"GZIP", "gzip", 0},
			} {
				raw := "GET " + path + " HTTP/1.1\r\nHost: gw.test\r\n"
				if step.ae != "" {
					raw += "Accept-Encoding: " + step.ae + "\r\n"
				}
				resp := roundTrip(t, addr, raw+"\r\n")
				enc := string(resp.Header.ContentEncoding())
				if enc != step.enc || decompress(t, enc, resp.Body()) != body {
					t.Fatalf("step %d (%q): Content-Encoding %q, want %q, or the body differs", i, step.ae, enc, step.enc)
				}
				if v := string(resp.Header.Peek("Vary")); v != "Accept-Encoding" {
					t.Errorf("step %d: Vary %q", i, v)
				}
				wantETag := `W/"e1"`
				if enc == "" {
					wantETag = `"e1"`
				}
				if et := string(resp.Header.Peek("ETag")); et != wantETag {
					t.Errorf("step %d: ETag %q, want %q", i, et, wantETag)
				}
				if got := len(rec.take()); got != step.upstream {
					t.Errorf("step %d (%q): %d upstream requests, want %d (Cache-Status %q)", i, step.ae, got, step.upstream, resp.Header.Peek("Cache-Status"))
				}
			}
		})
	}
}
