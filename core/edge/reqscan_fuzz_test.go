package edge

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// genStream builds a valid pipelined request stream from r: heads with CRLF line ends (some
// after empty lines), bodies by Content-Length whose bytes include LFs and CRLFCRLF, chunked
// bodies with random sizes, extensions under the bounds and trailers. crlfs are the offsets of
// the CRs of the heads' line ends, mids offsets inside head lines where a byte may go.
func genStream(r *rand.Rand) (stream string, crlfs, mids []int, reqs int) {
	var b strings.Builder
	junk := []string{"\n", "\r\n\r\n", "GET / HTTP/1.1\n", "a", "\r", "0\r\n\r\n", ";", "\x00\xff"}
	body := func(n int) string {
		var s strings.Builder
		for s.Len() < n {
			s.WriteString(junk[r.IntN(len(junk))])
		}
		return s.String()[:n]
	}
	line := func(s string) {
		mids = append(mids, b.Len()+1+r.IntN(len(s)-1))
		b.WriteString(s)
		crlfs = append(crlfs, b.Len())
		b.WriteString("\r\n")
	}
	methods := []string{"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"}
	reqs = 1 + r.IntN(4)
	for range reqs {
		for range r.IntN(3) {
			b.WriteString([]string{"\r\n", "\n"}[r.IntN(2)])
		}
		framing := r.IntN(3)
		version := []string{"1", "0"}[r.IntN(2)]
		if framing == 2 {
			version = "1" // HTTP/1.0 knows no chunked coding
		}
		line(methods[r.IntN(len(methods))] + " /" + strings.Repeat("p", r.IntN(40)) + " HTTP/1." + version)
		line("Host: a.test")
		for i := range r.IntN(5) {
			line(fmt.Sprintf("X-F%d:%s%s", i, strings.Repeat(" ", r.IntN(2)), strings.Repeat("v", r.IntN(80))))
		}
		switch framing {
		case 1:
			line([]string{"Content-Length", "content-length", "CONTENT-LENGTH"}[r.IntN(3)] + ": " + fmt.Sprint(r.IntN(300)))
		case 2:
			line([]string{"Transfer-Encoding", "transfer-encoding"}[r.IntN(2)] + ": chunked")
		}
		crlfs = append(crlfs, b.Len()) // the empty line
		b.WriteString("\r\n")
		switch framing {
		case 1:
			s := b.String()
			var n int
			fmt.Sscan(s[strings.LastIndex(s, ": ")+2:strings.LastIndex(s, "\r\n\r\n")], &n)
			b.WriteString(body(n))
		case 2:
			budget := MaxChunkExt
			ext := func() string {
				n := min(r.IntN(200), budget)
				if n < 1 || r.IntN(2) == 0 {
					return ""
				}
				budget -= n
				return ";" + strings.Repeat("e", n-1)
			}
			for range r.IntN(5) {
				n := 1 + r.IntN(300)
				b.WriteString(fmt.Sprintf("%x%s\r\n%s\r\n", n, ext(), body(n)))
			}
			b.WriteString("0" + ext() + "\r\n")
			for i := range r.IntN(3) {
				b.WriteString(fmt.Sprintf("T-%d: %s\r\n", i, strings.Repeat("t", r.IntN(20))))
			}
			b.WriteString("\r\n")
		}
	}
	return b.String(), crlfs, mids, reqs
}

// scanSplit feeds stream in reads split at random points; it returns the offset of the byte a
// failure names (the last one handed on), or -1.
func scanSplit(r *rand.Rand, stream string) (int, error, *reqScan) {
	s := new(reqScan)
	for off := 0; off < len(stream) && s.state != scLost; {
		end := min(off+1+r.IntN(64), len(stream))
		if r.IntN(8) == 0 {
			end = len(stream)
		}
		n, err := s.feed([]byte(stream[off:end]))
		if err != nil {
			return off + n - 1, err, s
		}
		off = end
	}
	return -1, nil, s
}

// FuzzReqScanValid: a valid pipelined stream, however its reads are split, is never failed
// and never lost, and the scanner ends it between two requests, as fasthttp does.
func FuzzReqScanValid(f *testing.F) {
	for i := range uint64(8) {
		f.Add(i, i*7919)
	}
	f.Fuzz(func(t *testing.T, a, b uint64) {
		r := rand.New(rand.NewPCG(a, b))
		stream, _, _, reqs := genStream(r)
		// The stream is valid for fasthttp too, and holds as many requests for it.
		br := bufio.NewReader(strings.NewReader(stream))
		var req fasthttp.Request
		for i := range reqs {
			if err := req.Read(br); err != nil {
				t.Fatalf("fasthttp: request %d: %v\n%q", i, err, stream)
			}
		}
		if n := br.Buffered(); n > 0 {
			t.Fatalf("fasthttp: %d bytes left after %d requests\n%q", n, reqs, stream)
		}
		at, err, s := scanSplit(r, stream)
		if err != nil {
			t.Fatalf("valid stream failed at %d: %v\n%q", at, err, clipQ(stream, at))
		}
		if s.state != scStart {
			t.Fatalf("state %d at the end of a valid stream\n%q", s.state, stream)
		}
	})
}

// FuzzReqScanBareLF: a bare LF put into any head of a valid stream, as a line end or inside a
// line, fails the stream at that LF.
func FuzzReqScanBareLF(f *testing.F) {
	for i := range uint64(8) {
		f.Add(i, i*104729, i%2 == 0)
	}
	f.Fuzz(func(t *testing.T, a, b uint64, lineEnd bool) {
		r := rand.New(rand.NewPCG(a, b))
		stream, crlfs, mids, _ := genStream(r)
		var at int
		if lineEnd {
			cr := crlfs[r.IntN(len(crlfs))]
			stream, at = stream[:cr]+stream[cr+1:], cr // drop the CR
		} else {
			at = mids[r.IntN(len(mids))]
			stream = stream[:at] + "\n" + stream[at:]
		}
		got, err, _ := scanSplit(r, stream)
		if !errors.Is(err, ErrBareLF) || got != at {
			t.Fatalf("bare LF at %d: failed at %d with %v\n%q", at, got, err, clipQ(stream, at))
		}
	})
}

// clipQ is the part of a stream around offset at, for failure messages.
func clipQ(s string, at int) string {
	if at < 0 {
		at = len(s)
	}
	return s[max(0, at-200):min(len(s), at+40)]
}
