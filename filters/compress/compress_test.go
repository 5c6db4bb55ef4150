package compress

import (
	"bytes"
	stdgzip "compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	brotli "github.com/molecule-man/go-brrr"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/filters/internal/filtertest"
)

func TestREADME(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	filtertest.RunREADME(t, "README.md", string(src), filtertest.Options{Filter: Name})
}

// jsonBody returns a JSON document of about n bytes that compresses the way API answers do.
func jsonBody(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"item %d","ok":true}`, i, i*7)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// run plays a request through f in front of an upstream answering with head and body.
func run(t testing.TB, f filter.Filter, req, head string, body []byte) *filter.Ctx {
	t.Helper()
	c := filtertest.NewCtx(t, req)
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	p.Run(c, func(c *filter.Ctx) {
		// As the engine's server does: no Content-Type unless the upstream sent one.
		c.Response.Header.SetNoDefaultContentType(true)
		if err := filtertest.ReadResponse(head, &c.Response); err != nil {
			t.Fatal(err)
		}
		c.Response.SetBody(body)
	})
	return c
}

func decode(t testing.TB, enc string, b []byte) []byte {
	t.Helper()
	var out []byte
	var err error
	switch enc {
	case "gzip":
		var zr *stdgzip.Reader
		if zr, err = stdgzip.NewReader(bytes.NewReader(b)); err == nil {
			out, err = io.ReadAll(zr)
		}
	case "br":
		out, err = io.ReadAll(brotli.NewReader(bytes.NewReader(b)))
	case "zstd":
		var zr *zstd.Decoder
		if zr, err = zstd.NewReader(bytes.NewReader(b)); err == nil {
			out, err = io.ReadAll(zr)
			zr.Close()
		}
	case "":
		out = b
	default:
		t.Fatalf("unknown coding %q", enc)
	}
	if err != nil {
		t.Fatalf("decode %s: %v", enc, err)
	}
	return out
}

const jsonHead = "HTTP/1.1 200 OK\nContent-Type: application/json"

func TestNegotiation(t *testing.T) {
	def := MustNew(t, "{}")
	gzipFirst := MustNew(t, "{ encodings: [gzip, br, zstd] }")
	gzipOnly := MustNew(t, "{ encodings: [gzip] }")
	for _, tt := range []struct {
		name string
		f    filter.Filter
		ae   string // Accept-Encoding lines, "" for none
		want string
	}{
		{"no header", def, "", ""},
		{"empty header", def, "Accept-Encoding: \n", ""},
		{"browser list: server order", def, "Accept-Encoding: gzip, deflate, br, zstd\n", "zstd"},
		{"browser list, gzip preferred by config", gzipFirst, "Accept-Encoding: gzip, deflate, br, zstd\n", "gzip"},
		{"only gzip", def, "Accept-Encoding: gzip\n", "gzip"},
		{"x-gzip alias", def, "Accept-Encoding: x-gzip\n", "gzip"},
		{"q decides over server order", def, "Accept-Encoding: zstd;q=0.5, br;q=0.9, gzip;q=0.8\n", "br"},
		{"q=0 refuses", def, "Accept-Encoding: zstd;q=0, br;q=0, gzip\n", "gzip"},
		{"all refused", def, "Accept-Encoding: zstd;q=0, br;q=0, gzip;q=0\n", ""},
		{"star", def, "Accept-Encoding: *\n", "zstd"},
		{"star with exclusions", def, "Accept-Encoding: *, zstd;q=0\n", "br"},
		{"star refused, named kept", def, "Accept-Encoding: *;q=0, gzip\n", "gzip"},
		{"star weight below named", def, "Accept-Encoding: *;q=0.1, gzip;q=0.2\n", "gzip"},
		{"identity preferred explicitly", def, "Accept-Encoding: gzip;q=0.5, identity\n", ""},
		{"identity;q=0 still compresses", def, "Accept-Encoding: gzip, identity;q=0\n", "gzip"},
		{"identity equal weight: coding", def, "Accept-Encoding: gzip, identity\n", "gzip"},
		{"case and whitespace", def, "Accept-Encoding:  GZIP ;  Q=1.0 ,\tBr;q=0.999\n", "gzip"},
		{"three decimals", def, "Accept-Encoding: br;q=0.001, gzip;q=0.002\n", "gzip"},
		{"malformed q ignored", def, "Accept-Encoding: zstd;q=2, br;q=0.5x, gzip;q=0.1\n", "gzip"},
		{"too many decimals ignored", def, "Accept-Encoding: zstd;q=0.1234, gzip;q=0.1\n", "gzip"},
		{"unknown parameter ignored", def, "Accept-Encoding: zstd;level=3, gzip\n", "gzip"},
		{"duplicate: first counts", def, "Accept-Encoding: zstd;q=0, zstd, gzip\n", "gzip"},
		{"two fields", def, "Accept-Encoding: deflate\nAccept-Encoding: br\n", "br"},
		{"only unknown codings", def, "Accept-Encoding: deflate, compress, exi\n", ""},
		{"not configured", gzipOnly, "Accept-Encoding: zstd, br\n", ""},
		{"empty elements", def, "Accept-Encoding: ,, ,br,\n", "br"},
		{"bad token", def, "Accept-Encoding: g zip, \"br\"\n", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := jsonBody(4096)
			c := run(t, tt.f, "GET /a HTTP/1.1\nHost: x\n"+tt.ae, jsonHead, body)
			got := string(c.Response.Header.ContentEncoding())
			if got != tt.want {
				t.Fatalf("Content-Encoding: got %q, want %q", got, tt.want)
			}
			if v := string(c.Response.Header.Peek("Vary")); v != "Accept-Encoding" {
				t.Errorf("Vary: got %q, want Accept-Encoding", v)
			}
			if !bytes.Equal(decode(t, got, c.Response.Body()), body) {
				t.Error("round trip changed the body")
			}
		})
	}
}

func MustNew(t testing.TB, cfg string) filter.Filter {
	t.Helper()
	return filtertest.MustNewFilter(t, New, Name, cfg)
}

// TestRoundTrip compresses bodies of several sizes with every coding at several levels and
// decodes them with independent decoders (the standard library's gzip, brotli's and zstd's
// readers).
func TestRoundTrip(t *testing.T) {
	for _, enc := range []string{"gzip", "br", "zstd"} {
		for _, level := range []int{1, 5, 9} {
			f := MustNew(t, fmt.Sprintf("{ encodings: [%s], levels: { %s: %d }, max_size: 4MiB }", enc, enc, level))
			for _, n := range []int{1024, 64 << 10, 1 << 20} {
				body := jsonBody(n)
				c := run(t, f, "GET / HTTP/1.1\nHost: x\nAccept-Encoding: "+enc+"\n", jsonHead, body)
				if got := string(c.Response.Header.ContentEncoding()); got != enc {
					t.Fatalf("%s/%d/%d: Content-Encoding %q", enc, level, n, got)
				}
				out := c.Response.Body()
				if len(out) >= len(body) {
					t.Errorf("%s/%d/%d: %d bytes from %d", enc, level, n, len(out), len(body))
				}
				if cl := c.Response.Header.ContentLength(); cl != len(out) {
					t.Errorf("%s: Content-Length %d for %d bytes", enc, cl, len(out))
				}
				if !bytes.Equal(decode(t, enc, out), body) {
					t.Fatalf("%s/%d/%d: round trip changed the body", enc, level, n)
				}
			}
		}
	}
}

// TestPassThrough lists the responses that must reach the client as the upstream sent them.
func TestPassThrough(t *testing.T) {
	f := MustNew(t, "{ min_size: 100 }")
	body := jsonBody(2048)
	const ae = "GET / HTTP/1.1\nHost: x\nAccept-Encoding: gzip, br, zstd\n"
	for _, tt := range []struct {
		name, req, head string
		body            []byte
		vary            bool
	}{
		{"already gzip", ae, jsonHead + "\nContent-Encoding: gzip", body, false},
		{"already encoded, other case", ae, jsonHead + "\ncontent-encoding: BR", body, false},
		{"already identity-named coding", ae, jsonHead + "\nContent-Encoding: exi", body, false},
		{"no-transform", ae, jsonHead + "\nCache-Control: public, no-transform", body, false},
		{"no-transform upper case, second field", ae, jsonHead + "\nCache-Control: max-age=60\nCache-Control: No-Transform", body, false},
		{"partial content", ae, "HTTP/1.1 206 Partial Content\nContent-Type: application/json\nContent-Range: bytes 0-2047/9000", body, false},
		{"content-range on 200", ae, jsonHead + "\nContent-Range: bytes 0-2047/9000", body, false},
		{"no content", ae, "HTTP/1.1 204 No Content\nContent-Type: application/json", nil, false},
		{"not modified", ae, "HTTP/1.1 304 Not Modified\nContent-Type: application/json", nil, false},
		{"image", ae, "HTTP/1.1 200 OK\nContent-Type: image/png", body, false},
		{"no content type", ae, "HTTP/1.1 200 OK", body, false},
		{"below min_size", ae, jsonHead, body[:99], false},
		{"HEAD, length unknown", "HEAD / HTTP/1.1\nHost: x\nAccept-Encoding: gzip\n", jsonHead, nil, true},
		{"incompressible", ae, jsonHead, randomBytes(4096), true},
		{"no Accept-Encoding", "GET / HTTP/1.1\nHost: x\n", jsonHead, body, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := run(t, f, tt.req, tt.head, tt.body)
			resp := &c.Response
			if ce, want := string(resp.Header.ContentEncoding()), contentEncoding(tt.head); ce != want {
				t.Errorf("Content-Encoding: got %q, want %q", ce, want)
			}
			if !bytes.Equal(resp.Body(), tt.body) {
				t.Errorf("body changed")
			}
			if got := len(resp.Header.Peek("Vary")) > 0; got != tt.vary {
				t.Errorf("Vary set: got %v, want %v", got, tt.vary)
			}
		})
	}
}

func contentEncoding(head string) string {
	for _, l := range strings.Split(head, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "Content-Encoding") {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func TestContentTypes(t *testing.T) {
	def := MustNew(t, "{}")
	custom := MustNew(t, "{ content_types: [text/html, application/*+json] }")
	for _, tt := range []struct {
		f    filter.Filter
		ct   string
		want bool
	}{
		{def, "application/json", true},
		{def, "Application/JSON; charset=utf-8", true},
		{def, "text/html;charset=utf-8", true},
		{def, "text/css", true},
		{def, "application/problem+json", true},
		{def, "application/atom+xml", true},
		{def, "image/svg+xml", true},
		{def, "application/octet-stream", false},
		{def, "image/jpeg", false},
		{def, "application/+json", false},
		{def, "textual/html", false},
		{def, "text/", false},
		{custom, "text/html", true},
		{custom, "text/css", false},
		{custom, "application/vnd.api+json", true},
		{custom, "application/json", false},
	} {
		c := run(t, tt.f, "GET / HTTP/1.1\nHost: x\nAccept-Encoding: gzip\n", "HTTP/1.1 200 OK\nContent-Type: "+tt.ct, jsonBody(2048))
		if got := len(c.Response.Header.ContentEncoding()) > 0; got != tt.want {
			t.Errorf("%q: compressed %v, want %v", tt.ct, got, tt.want)
		}
	}
}

func TestHeadersOfTheCompressedVariant(t *testing.T) {
	f := MustNew(t, "{}")
	head := jsonHead + "\nETag: \"v1\"\nVary: Origin\nVary: Accept-Language\nAccept-Ranges: bytes\nContent-Digest: sha-256=:x:\nLast-Modified: Mon, 07 Dec 2026 10:00:00 GMT"
	c := run(t, f, "GET / HTTP/1.1\nHost: x\nAccept-Encoding: br\n", head, jsonBody(4096))
	h := &c.Response.Header
	for _, tt := range []struct{ name, want string }{
		{"Content-Encoding", "br"},
		{"ETag", `W/"v1"`},
		{"Vary", "Origin, Accept-Language, Accept-Encoding"},
		{"Accept-Ranges", ""},
		{"Content-Digest", ""},
		{"Last-Modified", "Mon, 07 Dec 2026 10:00:00 GMT"},
	} {
		if got := string(h.Peek(tt.name)); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
	if n := len(h.PeekAll("Vary")); n != 1 {
		t.Errorf("%d Vary fields, want one", n)
	}

	// A weak ETag stays as it is; Vary already naming the header (any case) or "*" is kept.
	for _, tt := range []struct{ head, etag, vary string }{
		{jsonHead + "\nETag: W/\"v1\"\nVary: accept-encoding", `W/"v1"`, "accept-encoding"},
		{jsonHead + "\nVary: *", "", "*"},
		{jsonHead + "\nVary: Origin, Accept-Encoding", "", "Origin, Accept-Encoding"},
	} {
		c := run(t, f, "GET / HTTP/1.1\nHost: x\nAccept-Encoding: gzip\n", tt.head, jsonBody(4096))
		if got := string(c.Response.Header.Peek("ETag")); got != tt.etag {
			t.Errorf("ETag: got %q, want %q", got, tt.etag)
		}
		if got := string(c.Response.Header.Peek("Vary")); got != tt.vary {
			t.Errorf("Vary: got %q, want %q", got, tt.vary)
		}
	}
}

// TestHEAD: no body is compressed, but the response varies as the GET's would.
func TestHEAD(t *testing.T) {
	f := MustNew(t, "{}")
	c := filtertest.NewCtx(t, "HEAD / HTTP/1.1\nHost: x\nAccept-Encoding: gzip\n")
	filter.NewPipeline([]filter.Filter{f}, []string{Name}).Run(c, func(c *filter.Ctx) {
		c.Response.SkipBody = true
		c.Response.Header.SetContentType("application/json")
		c.Response.Header.SetContentLength(4096)
	})
	h := &c.Response.Header
	if len(h.ContentEncoding()) > 0 || string(h.Peek("Vary")) != "Accept-Encoding" || h.ContentLength() != 4096 {
		t.Fatalf("Content-Encoding %q, Vary %q, Content-Length %d", h.ContentEncoding(), h.Peek("Vary"), h.ContentLength())
	}
}

// brokenReader returns some bytes, then an error, as an upstream that dies mid-body.
type brokenReader struct{ left int }

func (b *brokenReader) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, errors.New("connection reset")
	}
	n := min(len(p), b.left)
	b.left -= n
	return n, nil
}

// closeCounter records that the stream was closed (the proxy releases its connection then).
type closeCounter struct {
	io.Reader
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return nil }

func TestStreamedBodies(t *testing.T) {
	f := MustNew(t, "{ max_size: 256KiB }")
	body := jsonBody(100 << 10)
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	play := func(stream io.Reader, size int) *filter.Ctx {
		c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: x\nAccept-Encoding: gzip\n")
		p.Run(c, func(c *filter.Ctx) {
			c.Response.Header.SetContentType("application/json")
			c.Response.SetBodyStream(stream, size)
		})
		return c
	}

	// A declared length within max_size is read whole and compressed; the stream is closed.
	s := &closeCounter{Reader: bytes.NewReader(body)}
	c := play(s, len(body))
	if ce := string(c.Response.Header.ContentEncoding()); ce != "gzip" || c.Response.IsBodyStream() {
		t.Fatalf("declared length: Content-Encoding %q, stream %v", ce, c.Response.IsBodyStream())
	}
	if !bytes.Equal(decode(t, "gzip", c.Response.Body()), body) || s.closed != 1 {
		t.Fatalf("declared length: round trip failed or stream closed %d times", s.closed)
	}

	// Chunked (length unknown) and over max_size are compressed as they stream, when the
	// stream can be handed over (the proxy's can); the upstream's body is closed once.
	for _, enc := range []string{"gzip", "br", "zstd"} {
		for _, size := range []int{-1, 300 << 10} {
			big := jsonBody(300 << 10)
			closed := 0
			c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: x\nAccept-Encoding: "+enc+"\n")
			p.Run(c, func(c *filter.Ctx) {
				c.Response.Header.SetContentType("application/json")
				c.Response.SetBodyStream(&detachable{Reader: bytes.NewReader(big), closed: &closed}, size)
			})
			r := &c.Response
			if ce := string(r.Header.ContentEncoding()); ce != enc || !r.IsBodyStream() || r.Header.ContentLength() != -1 {
				t.Fatalf("%s, size %d: Content-Encoding %q, stream %v, Content-Length %d", enc, size, ce, r.IsBodyStream(), r.Header.ContentLength())
			}
			if v := string(r.Header.Peek("Vary")); v != "Accept-Encoding" {
				t.Errorf("%s, size %d: Vary %q", enc, size, v)
			}
			out, err := io.ReadAll(r.BodyStream())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(decode(t, enc, out), big) || len(out) >= len(big)/2 {
				t.Fatalf("%s, size %d: round trip failed (%d bytes from %d)", enc, size, len(out), len(big))
			}
			if err := r.CloseBodyStream(); err != nil || closed != 1 {
				t.Fatalf("%s, size %d: upstream body closed %d times (%v)", enc, size, closed, err)
			}
		}
	}

	// A stream that cannot be handed over passes untouched, without Vary.
	for _, size := range []int{-1, 300 << 10} {
		s := &closeCounter{Reader: bytes.NewReader(body)}
		c := play(s, size)
		if ce := c.Response.Header.ContentEncoding(); len(ce) > 0 || !c.Response.IsBodyStream() || s.closed != 0 {
			t.Fatalf("size %d: Content-Encoding %q, stream %v, closed %d", size, ce, c.Response.IsBodyStream(), s.closed)
		}
		if len(c.Response.Header.Peek("Vary")) > 0 {
			t.Errorf("size %d: Vary set on a response that is never compressed", size)
		}
	}

	// A body that breaks off is a 502, never a truncated compressed answer.
	c = play(&brokenReader{left: 1000}, len(body))
	if c.Response.StatusCode() != 502 || len(c.Response.Header.ContentEncoding()) > 0 || c.Err() == nil {
		t.Fatalf("broken stream: status %d, Content-Encoding %q, err %v", c.Response.StatusCode(),
			c.Response.Header.ContentEncoding(), c.Err())
	}
}

// detachable is a stream like the proxy's: Detach hands it over, and only the last holder's
// Close counts.
type detachable struct {
	io.Reader
	closed   *int
	detached bool
}

func (d *detachable) Close() error {
	if !d.detached {
		*d.closed++
	}
	return nil
}

func (d *detachable) Detach() io.ReadCloser {
	n := *d
	d.detached = true
	return &n
}

// countingReader returns n bytes per read and counts the reads.
type countingReader struct {
	reads, n int
}

func (r *countingReader) Read(p []byte) (int, error) {
	r.reads++
	return copy(p, bytes.Repeat([]byte("data: tick\n"), r.n/11+1)[:r.n]), nil
}

func (r *countingReader) Close() error { return nil }

// TestStreamFlushesAndFails: what the upstream has given so far reaches the client before it
// sends more (a trickling feed is not held back), and an upstream error mid-body is returned,
// never a closed (complete-looking) compressed stream.
func TestStreamFlushesAndFails(t *testing.T) {
	for _, enc := range []string{"gzip", "br", "zstd"} {
		f := MustNew(t, "{ encodings: ["+enc+"] }").(*Filter)
		src := &countingReader{n: 200}
		s := newStream(src, f.enc[codingByName(enc)])
		buf := make([]byte, 64<<10)
		n, err := s.Read(buf)
		if err != nil || n == 0 || src.reads != 1 {
			t.Fatalf("%s: first read %d bytes, %v, after %d upstream reads", enc, n, err, src.reads)
		}
		got := decodePrefix(t, enc, buf[:n])
		if !strings.HasPrefix(string(got), "data: tick\n") || len(got) != 200 {
			t.Fatalf("%s: the first read decodes to %q", enc, got)
		}
		s.Close()

		s = newStream(io.NopCloser(&brokenReader{left: 5000}), f.enc[codingByName(enc)])
		_, err = io.ReadAll(s)
		if err == nil || !strings.Contains(err.Error(), "connection reset") {
			t.Fatalf("%s: broken upstream: %v", enc, err)
		}
		s.Close()
	}
}

// decodePrefix decodes as much of a flushed, unfinished compressed stream as it holds.
func decodePrefix(t *testing.T, enc string, b []byte) []byte {
	t.Helper()
	var r io.Reader
	switch enc {
	case "gzip":
		zr, err := stdgzip.NewReader(bytes.NewReader(b))
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
	}
	out := make([]byte, 0, 1024)
	buf := make([]byte, 1024)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out
		}
	}
}

// TestLocalReplies: a later filter's local answer is compressed like an upstream's.
func TestLocalReplies(t *testing.T) {
	f := MustNew(t, "{}")
	body := jsonBody(4096)
	c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: x\nAccept-Encoding: zstd\n")
	local := localReply{body: body}
	filter.NewPipeline([]filter.Filter{f, local}, []string{Name, "local"}).Run(c, func(*filter.Ctx) {
		t.Fatal("upstream reached")
	})
	if ce := string(c.Response.Header.ContentEncoding()); ce != "zstd" {
		t.Fatalf("Content-Encoding %q", ce)
	}
	if !bytes.Equal(decode(t, "zstd", c.Response.Body()), body) {
		t.Fatal("round trip failed")
	}
	if !bytes.Equal(local.body, jsonBody(4096)) {
		t.Fatal("the shared body of a local reply was written to")
	}
}

type localReply struct{ body []byte }

func (l localReply) OnRequest(c *filter.Ctx) filter.Status {
	c.SetContentType("application/json")
	return c.Reply(200, l.body) // SetBodyRaw: shared memory the filter must not write to
}
func (localReply) OnResponse(*filter.Ctx) {}

// TestConcurrent shares one filter between goroutines, each with its own coding and body, as
// a route's requests do: pooled encoders must never mix two responses (run under -race).
func TestConcurrent(t *testing.T) {
	f := MustNew(t, "{ min_size: 1 }")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc := []string{"gzip", "br", "zstd"}[g%3]
			for i := range 30 {
				body := jsonBody(200 + 997*((g*31+i)%70))
				c := run(t, f, "GET / HTTP/1.1\nHost: x\nAccept-Encoding: "+enc+"\n", jsonHead, body)
				if got := string(c.Response.Header.ContentEncoding()); got != enc {
					t.Errorf("Content-Encoding %q, want %q", got, enc)
					return
				}
				if !bytes.Equal(decode(t, enc, c.Response.Body()), body) {
					t.Errorf("%s: round trip changed a %d-byte body", enc, len(body))
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestConfigErrors(t *testing.T) {
	for _, tt := range []struct{ cfg, want string }{
		{"{ encodings: [deflate] }", `unknown coding "deflate"`},
		{"{ encodings: [gzip, GZIP] }", "listed twice"},
		{"{ encodings: [] }", "encodings is empty"},
		{"{ levels: { gzip: 0 } }", "gzip level 0"},
		{"{ levels: { br: 12 } }", "br level 12"},
		{"{ levels: { zstd: 23 } }", "zstd level 23"},
		{"{ levels: { lz4: 1 } }", "lz4"},
		{"{ min_size: 2MiB, max_size: 1MiB }", "larger than max_size"},
		{"{ max_size: 0 }", "max_size must be positive"},
		{"{ min_size: -1 }", "min_size must not be negative"},
		{"{ content_types: [] }", "content_types is empty"},
		{"{ content_types: [json] }", "not a media type"},
		{"{ content_types: [\"*/*\"] }", "not a media type"},
		{"{ content_types: [\"text/h*ml\"] }", "not a media type"},
		{"{ min_size: big }", "size"},
		{"{ gzip: true }", "gzip"},
	} {
		_, err := filtertest.NewFilter(t, New, Name, tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.cfg, err, tt.want)
		}
	}
}

// TestZeroAllocs: with the pool warm, negotiating and compressing allocate nothing.
func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	for _, enc := range []string{"gzip", "br", "zstd"} {
		t.Run(enc, func(t *testing.T) {
			f := MustNew(t, "{}")
			body := jsonBody(1024)
			c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: x\nAccept-Encoding: gzip, deflate, br, zstd;q=0.9\nAccept-Encoding: "+enc+";q=1\n")
			p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
			upstream := func(c *filter.Ctx) {
				c.Response.Header.SetContentEncoding("") // a fresh response
				c.Response.Header.SetContentType("application/json")
				c.Response.Header.Del("Vary")
				c.Response.SetBody(body)
			}
			p.Run(c, upstream)
			allocs := testing.AllocsPerRun(200, func() { p.Run(c, upstream) })
			if allocs != 0 {
				t.Errorf("%v allocations per request", allocs)
			}
		})
	}
}

func benchmarkCompress(b *testing.B, enc string, n int) {
	f := MustNew(b, fmt.Sprintf("{ encodings: [%s] }", enc))
	body := jsonBody(n)
	c := filtertest.NewCtx(b, "GET / HTTP/1.1\nHost: x\nAccept-Encoding: "+enc+"\n")
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	upstream := func(c *filter.Ctx) {
		c.Response.Header.SetContentEncoding("")
		c.Response.Header.SetContentType("application/json")
		c.Response.Header.Del("Vary")
		c.Response.SetBody(body)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p.Run(c, upstream)
	}
	b.ReportMetric(float64(len(c.Response.Body()))/float64(len(body)), "ratio")
}

func BenchmarkCompress(b *testing.B) {
	for _, n := range []int{1 << 10, 64 << 10} {
		for _, enc := range []string{"gzip", "br", "zstd"} {
			b.Run(fmt.Sprintf("%s/%dKiB", enc, n>>10), func(b *testing.B) { benchmarkCompress(b, enc, n) })
		}
	}
}

// BenchmarkNegotiate is the request phase alone: parsing a browser's Accept-Encoding.
func BenchmarkNegotiate(b *testing.B) {
	f := MustNew(b, "{}").(*Filter)
	c := filtertest.NewCtx(b, "GET / HTTP/1.1\nHost: x\nAccept-Encoding: gzip, deflate, br, zstd\n")
	b.ReportAllocs()
	for b.Loop() {
		f.OnRequest(c)
	}
}

// FuzzAcceptEncoding: any header value parses without panicking, and the chosen coding is one
// the client did not refuse.
func FuzzAcceptEncoding(f *testing.F) {
	for _, s := range []string{"gzip, deflate, br, zstd", "*;q=0", "br;q=0.5, gzip;Q=1.000", "identity;q=0, *",
		"x-gzip;q=0.", ";;;,,,q=1", "zstd ; q = 0.9", "gzip;q=1.0001", "\xff\x00"} {
		f.Add(s)
	}
	prefs := []coding{zstdCoding, brCoding, gzipCoding}
	f.Fuzz(func(t *testing.T, s string) {
		var a accepted
		a.reset()
		a.add([]byte(s))
		got := a.choose(prefs)
		if got == none {
			return
		}
		q := a.q[got]
		if q < 0 {
			q = a.star
		}
		if q <= 0 || q > 1000 {
			t.Fatalf("%q: chose %s with weight %d", s, codingNames[got], q)
		}
		for _, c := range prefs {
			if a.q[c] > q {
				t.Fatalf("%q: chose %s over %s with a higher weight", s, codingNames[got], codingNames[c])
			}
		}
	})
}
