package engine

// HTTP/2 spoken frame by frame (golang.org/x/net/http2's Framer on a plain connection): request
// smuggling through the HTTP/2 to HTTP/1.1 downgrade, and the floods a gateway must survive.

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

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
