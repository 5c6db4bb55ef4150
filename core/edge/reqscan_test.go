package edge

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// scanAll feeds stream to a fresh scanner in reads of at most step bytes (0: one read). It
// returns the error and the stream offset just past the last byte handed on, and the
// scanner's final state.
func scanAll(stream string, step int) (int, error, *reqScan) {
	s := new(reqScan)
	if step <= 0 {
		step = len(stream) + 1
	}
	off := 0
	for off < len(stream) && s.state != scLost {
		end := min(off+step, len(stream))
		n, err := s.feed([]byte(stream[off:end]))
		if err != nil {
			return off + n, err, s
		}
		off = end
	}
	return off, nil, s
}

func TestReqScan(t *testing.T) {
	const get = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	ext := func(n int) string { return strings.Repeat("x", n) }
	for _, tc := range []struct {
		name   string
		stream string
		// failAt is the offset of the offending byte ("" stream index), -1 for none.
		failAt int
		err    error
		lost   bool
		end    uint8 // the state after the stream, when it neither fails nor is lost
	}{
		{name: "get", stream: get, failAt: -1},
		{name: "wrk get", stream: "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", failAt: -1},
		{name: "empty lines before", stream: "\r\n\n\r\n" + get, failAt: -1},
		{name: "pipelined gets", stream: get + get + get, failAt: -1},
		{name: "partial head", stream: "GET / HTTP/1.1\r\nHost: a\r", failAt: -1, end: scHead},
		{name: "bare LF request line", stream: "GET / HTTP/1.1\nHost: a\r\n\r\n", failAt: 14, err: ErrBareLF},
		{name: "bare LF everywhere", stream: "GET /x HTTP/1.1\nHost: app.test\n\n", failAt: 15, err: ErrBareLF},
		{name: "bare LF after field", stream: "GET / HTTP/1.1\r\nHost: a\r\nX: 1\nY: 2\r\n\r\n", failAt: 29, err: ErrBareLF},
		{name: "bare LF blank line", stream: "GET / HTTP/1.1\r\nHost: a\r\n\n", failAt: 25, err: ErrBareLF},
		{name: "bare LF after get", stream: get + "GET / HTTP/1.1\n", failAt: len(get) + 14, err: ErrBareLF},
		{name: "CL body with LFs", stream: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\na\nb\n\n\n" + get, failAt: -1},
		{name: "CL body then bare LF", stream: "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n\n\nGET / HTTP/1.1\n", failAt: 54, err: ErrBareLF},
		{name: "CL lower case with tab", stream: "POST / HTTP/1.1\r\ncontent-length:\t3 \r\n\r\nx\ny" + get, failAt: -1},
		{name: "CL zero", stream: "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n" + get, failAt: -1},
		{name: "chunked", stream: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\na\nb\nc\r\nA;x=y\r\n0123456789\r\n0\r\nT: 1\r\n\r\n" + get, failAt: -1},
		{name: "chunked then bare LF", stream: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n\n\r\n0\r\n\r\nGET /\n", failAt: 63, err: ErrBareLF},
		{name: "chunk line at the limit", stream: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;" + ext(4094) + "\r\nx\r\n0\r\n\r\n" + get, failAt: -1},
		{name: "chunk line over the limit", stream: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;" + ext(4095) + "\r\nx\r\n0\r\n\r\n", failAt: 47 + 4096, err: ErrChunkExt},
		{name: "chunk extensions summed over the limit", stream: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("1;"+ext(999)+"\r\nx\r\n", 5), failAt: 47 + 4*1006 + 97, err: ErrChunkExt},
		{name: "chunk extensions counted per body", stream: strings.Repeat("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;"+ext(3000)+"\r\nx\r\n0\r\n\r\n", 3), failAt: -1},
		{name: "upgrade", stream: "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x81\x05he\nlo", lost: true},
		{name: "connect", stream: "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\n\n", lost: true},
		{name: "expect", stream: "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", lost: true},
		{name: "two CL", stream: "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", lost: true},
		{name: "CL and TE", stream: "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nx", lost: true},
		{name: "other coding", stream: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", lost: true},
		{name: "bad CL", stream: "POST / HTTP/1.1\r\nContent-Length: 1 0\r\n\r\n", lost: true},
		{name: "long CL line", stream: "POST / HTTP/1.1\r\nContent-Length: " + strings.Repeat(" ", 40) + "5\r\n\r\n", lost: true},
		{name: "long framing name cut", stream: "POST / HTTP/1.1\r\nTransfer-Encoding" + strings.Repeat(" ", 40) + ": chunked\r\n\r\n", lost: true},
		{name: "bad chunk size", stream: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", lost: true},
		{name: "chunk data without CRLF", stream: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n", lost: true},
		{name: "bare LF in trailer", stream: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\n\r\n", lost: true},
		{name: "CR then not LF before request", stream: "\rGET / HTTP/1.1\r\n", lost: true},
		{name: "long request line", stream: "GET /" + strings.Repeat("a", 5000) + " HTTP/1.1\r\nHost: a\r\n\r\n", failAt: -1},
	} {
		for _, step := range []int{0, 1, 2, 3, 7, 64} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, step), func(t *testing.T) {
				off, err, s := scanAll(tc.stream, step)
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				if tc.err != nil {
					if off != tc.failAt+1 {
						t.Errorf("handed on up to %d, want %d (through the offending byte)", off, tc.failAt+1)
					}
					// Every later read fails too.
					g := &guardConn{scan: *s}
					if _, err := g.Read(make([]byte, 8)); !errors.Is(err, tc.err) {
						t.Errorf("later read: %v, want %v", err, tc.err)
					}
					return
				}
				if got := s.state == scLost; got != tc.lost {
					t.Fatalf("lost %v, want %v (state %d)", got, tc.lost, s.state)
				}
				if !tc.lost && s.state != tc.end {
					t.Errorf("state %d at the end, want %d", s.state, tc.end)
				}
			})
		}
	}
}

// BenchmarkReqScan is the scanner's cost per request: wrk's GET, and a POST with a 1 KiB
// body, each handed over in one read.
func BenchmarkReqScan(b *testing.B) {
	for _, bc := range []struct{ name, req string }{
		{"get", "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"},
		{"post1k", "POST /api/items HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: bench/1.0\r\n" +
			"Content-Type: application/json\r\nAccept: */*\r\nContent-Length: 1024\r\n\r\n" + strings.Repeat("x", 1024)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := []byte(bc.req)
			var s reqScan
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				if _, err := s.feed(p); err != nil || s.state != scStart {
					b.Fatal(err, s.state)
				}
			}
		})
	}
}
