package engine

// HTTP/2 spoken frame by frame (golang.org/x/net/http2's Framer on a plain connection): request
// smuggling through the HTTP/2 to HTTP/1.1 downgrade, and the floods a gateway must survive.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawH2 is a client connection that writes frames as told and reads what comes back.
type rawH2 struct {
	t    *testing.T
	c    net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
}

func dialRawH2(t *testing.T, addr string) *rawH2 {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := &rawH2{t: t, c: c, fr: http2.NewFramer(c, c)}
	h.fr.MaxHeaderListSize = 1 << 20
	h.enc = hpack.NewEncoder(&h.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return h
}

// block encodes name/value pairs into one header block.
func (h *rawH2) block(fields ...string) []byte {
	h.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		if err := h.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}); err != nil {
			h.t.Fatal(err)
		}
	}
	return append([]byte(nil), h.hbuf.Bytes()...)
}

// get is the fields of a GET for path on the gateway, plus extra.
func getFields(path string, extra ...string) []string {
	return append([]string{":method", "GET", ":scheme", "http", ":authority", "gw.test", ":path", path}, extra...)
}

func (h *rawH2) headers(id uint32, endStream bool, fields ...string) {
	// Write errors are ignored: a flooding client keeps writing after the gateway has hung up.
	_ = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.block(fields...),
		EndStream: endStream, EndHeaders: true})
}

// outcome is how the gateway ended a stream or the connection.
type outcome struct {
	status int           // from a response HEADERS on the stream
	rst    http2.ErrCode // from RST_STREAM on the stream
	goAway http2.ErrCode // from GOAWAY
	gone   bool          // GOAWAY or the connection closed
	dataOK bool          // a DATA frame came on the stream
}

// until reads frames until the stream (id; 0 for none) is answered or reset, or the
// connection goes away, acknowledging the gateway's SETTINGS.
func (h *rawH2) until(id uint32) outcome {
	h.t.Helper()
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				h.t.Fatalf("no answer from the gateway: %v", err)
			}
			return outcome{gone: true}
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = h.fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			return outcome{gone: true, goAway: f.ErrCode}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return outcome{rst: f.ErrCode}
			}
		case *http2.HeadersFrame:
			if f.StreamID != id {
				continue
			}
			fields, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				h.t.Fatal(err)
			}
			for _, hf := range fields {
				if hf.Name == ":status" {
					var o outcome
					for _, c := range hf.Value {
						o.status = o.status*10 + int(c-'0')
					}
					return o
				}
			}
		}
	}
}

// TestH2DowngradeSmuggling: requests that would read differently once written as HTTP/1.1
// (RFC 9113 section 8.2, 8.3) are refused by a stream reset or a 400, and nothing reaches the
// upstream; a clean request on the same kind of connection is forwarded.
func TestH2DowngradeSmuggling(t *testing.T) {
	g := startH2(t, "", false)
	smuggled := "0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
	tests := []struct {
		name   string
		fields []string
		body   string // DATA after HEADERS when set ("-": an empty one); HEADERS end the stream otherwise
	}{
		{"content-length longer than DATA", getFields("/rec", "content-length", "100"), "short"},
		{"content-length shorter than DATA", getFields("/rec", "content-length", "2"), "GET /x HTTP/1.1\r\n\r\n"},
		{"content-length, empty DATA", getFields("/rec", "content-length", "5"), "-"},
		{"content-length on HEADERS that end the stream", getFields("/rec", "content-length", "5"), ""},
		{"two content-lengths", getFields("/rec", "content-length", "5", "content-length", "6"), "hello"},
		{"content-length not a number", getFields("/rec", "content-length", "+5"), "hello"},
		{"transfer-encoding", getFields("/rec", "transfer-encoding", "chunked"), smuggled},
		{"connection field", getFields("/rec", "connection", "keep-alive"), ""},
		{"keep-alive field", getFields("/rec", "keep-alive", "timeout=5"), ""},
		{"upgrade field", getFields("/rec", "upgrade", "websocket"), ""},
		{"te other than trailers", getFields("/rec", "te", "chunked"), ""},
		{"space in :path", getFields("/rec HTTP/1.1\r\nHost: x\r\n\r\nGET /admin"), ""},
		{"plain space in :path", getFields("/rec /x"), ""},
		{"CRLF in :path", getFields("/rec\r\nX: y"), ""},
		{"CRLF in a value", getFields("/rec", "x-a", "b\r\nTransfer-Encoding: chunked"), ""},
		{"LF in a value", getFields("/rec", "x-a", "b\nHost: evil"), ""},
		{"NUL in a value", getFields("/rec", "x-a", "b\x00c"), ""},
		{"leading space in a value", getFields("/rec", "x-a", " b"), ""},
		{"upper-case name", getFields("/rec", "X-A", "b"), ""},
		{"host disagrees with :authority", getFields("/rec", "host", "evil.test"), ""},
		{"two hosts", getFields("/rec", "host", "gw.test", "host", "evil.test"), ""},
		{"CRLF in :authority", []string{":method", "GET", ":scheme", "http", ":authority", "gw.test\r\nX: y", ":path", "/rec"}, ""},
		{"colon in a name", getFields("/rec", "x:a", "b"), ""},
		{"empty :path", getFields(""), ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := dialRawH2(t, g.addr)
			id := uint32(2*i + 1)
			h.headers(id, tt.body == "", tt.fields...)
			switch tt.body {
			case "":
			case "-":
				_ = h.fr.WriteData(id, true, nil)
			default:
				_ = h.fr.WriteData(id, true, []byte(tt.body))
			}
			o := h.until(id)
			if o.status != 0 && o.status != 400 {
				t.Errorf("answered %d, want a stream reset or 400", o.status)
			}
			if got := g.rec.take(); len(got) != 0 {
				t.Errorf("forwarded upstream: %q", got)
			}
		})
	}
	// The control: a clean request with a body is forwarded, framed once.
	h := dialRawH2(t, g.addr)
	h.headers(1, false, getFields("/rec", "content-length", "5")...)
	_ = h.fr.WriteData(1, true, []byte("hello"))
	if o := h.until(1); o.status != 200 {
		t.Fatalf("clean request: %+v", o)
	}
	got := g.rec.take()
	if len(got) != 1 || !strings.Contains(got[0], "Content-Length: 5\r\n") || !strings.HasSuffix(got[0], "\r\n\r\nhello") ||
		strings.Contains(strings.ToLower(got[0]), "transfer-encoding") {
		t.Errorf("forwarded %q", got)
	}
}

// abuseLimits are low HTTP/2 limits, so each flood is over them after a few hundred frames.
const abuseLimits = `, max_concurrent_streams: 2, max_resets_per_second: 10, max_pings_per_second: 5,
    max_settings_per_second: 5, max_continuation_frames: 8`

// TestH2Abuse: each abusive connection is answered by a stream reset, 431 or GOAWAY, and a
// client on another connection, opened before the abuse, is served during and after it.
func TestH2Abuse(t *testing.T) {
	g := startH2(t, abuseLimits, false)
	other := g.client(t)
	check := func(t *testing.T) {
		t.Helper()
		resp, err := other.Get(g.url("/h"))
		if err != nil {
			t.Fatalf("another client: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("another client: status %d", resp.StatusCode)
		}
	}
	check(t)
	calm := func(t *testing.T, o outcome) {
		t.Helper()
		if !o.gone || o.goAway != http2.ErrCodeEnhanceYourCalm {
			t.Errorf("got %+v, want GOAWAY ENHANCE_YOUR_CALM", o)
		}
	}
	t.Run("too many concurrent streams", func(t *testing.T) {
		h := dialRawH2(t, g.addr)
		// Streams with a body to come stay open; the third is over max_concurrent_streams.
		h.headers(1, false, getFields("/h", "content-length", "2")...)
		h.headers(3, false, getFields("/h", "content-length", "2")...)
		h.headers(5, false, getFields("/h", "content-length", "2")...)
		if o := h.until(5); o.rst != http2.ErrCodeRefusedStream && o.rst != http2.ErrCodeProtocol {
			t.Errorf("third stream: %+v, want RST_STREAM", o)
		}
		check(t)
		// The connection itself still serves the streams within the limit.
		_ = h.fr.WriteData(1, true, []byte("ok"))
		if o := h.until(1); o.status != 200 {
			t.Errorf("first stream after the refused one: %+v", o)
		}
	})
	t.Run("rapid reset", func(t *testing.T) {
		h := dialRawH2(t, g.addr)
		for id := uint32(1); id < 2*1000; id += 2 {
			h.headers(id, true, getFields("/h")...)
			if h.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				break
			}
		}
		calm(t, h.until(0))
		check(t)
	})
	t.Run("continuation flood", func(t *testing.T) {
		h := dialRawH2(t, g.addr)
		_ = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.block(getFields("/h")...), EndStream: true})
		for i := 0; i < 1000; i++ {
			if h.fr.WriteContinuation(1, false, nil) != nil {
				break
			}
		}
		calm(t, h.until(1))
		check(t)
	})
	t.Run("ping flood", func(t *testing.T) {
		h := dialRawH2(t, g.addr)
		for i := 0; i < 1000; i++ {
			if h.fr.WritePing(false, [8]byte{byte(i)}) != nil {
				break
			}
		}
		calm(t, h.until(0))
		check(t)
	})
	t.Run("pings amid a request body are not a flood", func(t *testing.T) {
		// As a gRPC client's bandwidth estimator pings while it streams.
		h := dialRawH2(t, g.addr)
		h.headers(1, false, getFields("/h")...)
		for i := 0; i < 1000; i++ {
			if h.fr.WriteData(1, false, []byte("x")) != nil || h.fr.WritePing(false, [8]byte{byte(i)}) != nil {
				break
			}
		}
		_ = h.fr.WriteData(1, true, nil)
		if o := h.until(1); o.status != 200 || o.gone {
			t.Errorf("got %+v, want 200", o)
		}
		check(t)
	})
	t.Run("pings amid empty data frames are a flood", func(t *testing.T) {
		h := dialRawH2(t, g.addr)
		h.headers(1, false, getFields("/h")...)
		for i := 0; i < 1000; i++ {
			if h.fr.WriteData(1, false, nil) != nil || h.fr.WritePing(false, [8]byte{byte(i)}) != nil {
				break
			}
		}
		calm(t, h.until(0))
		check(t)
	})
	t.Run("settings flood", func(t *testing.T) {
		h := dialRawH2(t, g.addr)
		for i := 0; i < 1000; i++ {
			if h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(65535 + i)}) != nil {
				break
			}
		}
		calm(t, h.until(0))
		check(t)
	})
	t.Run("header list over max_header_bytes", func(t *testing.T) {
		// Many fields, each small: the list is cut at server.max_header_bytes and answered 431.
		h := dialRawH2(t, g.addr)
		var fields []string
		for i := 0; i < 40; i++ {
			fields = append(fields, fmt.Sprintf("x-f%d", i), strings.Repeat("v", 1000))
		}
		h.headers(1, true, getFields("/rec", fields...)...)
		if o := h.until(1); o.status != 431 && o.rst == 0 && !o.gone {
			t.Errorf("got %+v, want 431, a reset or GOAWAY", o)
		}
		check(t)
	})
	t.Run("header block far over max_header_bytes", func(t *testing.T) {
		// A block many times the limit, in HEADERS and CONTINUATION frames: x/net stops
		// decoding and hangs up rather than read it all.
		h := dialRawH2(t, g.addr)
		var fields []string
		for i := 0; i < 400; i++ {
			fields = append(fields, fmt.Sprintf("x-f%d", i), strings.Repeat("v", 1000))
		}
		b := h.block(getFields("/rec", fields...)...)
		const frame = 16 << 10
		_ = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:frame], EndStream: true})
		for b = b[frame:]; len(b) > 0; {
			n := min(frame, len(b))
			if h.fr.WriteContinuation(1, n == len(b), b[:n]) != nil {
				break
			}
			b = b[n:]
		}
		if o := h.until(1); !o.gone && o.rst == 0 && o.status != 431 {
			t.Errorf("got %+v, want GOAWAY, a reset or 431", o)
		}
		check(t)
	})
	if got := g.rec.take(); len(got) != 0 {
		t.Errorf("forwarded upstream: %d requests", len(got))
	}
}

// TestH2IdleTimeout: a connection without open streams, or stalled in the middle of a header
// block, is sent GOAWAY after server.idle_timeout and closed.
func TestH2IdleTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(`
server: { listen: "127.0.0.1:0", admin: "", idle_timeout: 200ms, http2: { h2c: true } }
access_log: { enabled: false }
upstreams: { demo: { kind: echo } }
routes: [ { name: r, upstream: demo } ]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := start(t, path)
	for _, stall := range []bool{false, true} {
		h := dialRawH2(t, addr)
		if stall {
			_ = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.block(getFields("/")...), EndStream: true})
		}
		if o := h.until(0); !o.gone {
			t.Errorf("stalled %v: %+v, want the connection closed", stall, o)
		}
	}
}

// sync returns once the gateway has processed every frame sent so far (a PING's ACK follows
// them), acknowledging its SETTINGS meanwhile.
func (h *rawH2) sync() {
	h.t.Helper()
	if err := h.fr.WritePing(false, [8]byte{'s', 'y', 'n', 'c'}); err != nil {
		h.t.Fatal(err)
	}
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			h.t.Fatalf("sync: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = h.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if f.IsAck() {
				return
			}
		}
	}
}

// TestH2GracefulShutdown: a shutdown sends GOAWAY (NO_ERROR) to HTTP/2 clients and waits for
// their open streams, which complete.
func TestH2GracefulShutdown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(`
server: { listen: "127.0.0.1:0", admin: "", http2: { h2c: true } }
access_log: { enabled: false }
upstreams: { demo: { kind: echo } }
routes: [ { name: r, upstream: demo } ]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := New(path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.Serve(ln) }()
	h := dialRawH2(t, ln.Addr().String())
	h.headers(1, false, getFields("/", "content-length", "2")...)
	h.sync()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- e.Shutdown(ctx) }()
	if o := h.until(0); o.goAway != http2.ErrCodeNo || !o.gone {
		t.Fatalf("got %+v, want GOAWAY NO_ERROR", o)
	}
	_ = h.fr.WriteData(1, true, []byte("ok"))
	if o := h.until(1); o.status != 200 {
		t.Errorf("open stream after GOAWAY: %+v, want 200", o)
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
}
