package edge

import (
	"bytes"
	"errors"

	"github.com/weir-gateway/weir/core/httpsyntax"
)

// ErrBareLF fails a read that carries a request head line ending in a bare LF (no CR before
// it). fasthttp recognises only CRLFCRLF as the end of a head, so a head whose lines end in
// bare LFs would wait, unanswered, for the read timeout; the server answers this error with
// 400 and closes the connection, as it does a bare LF anywhere else in a head.
var ErrBareLF = errors.New("bare lf in a request head")

// ErrChunkExt fails a read that makes a chunk-size line longer than MaxChunkLine bytes, or
// the chunk extensions of one body longer than MaxChunkExt bytes in all. fasthttp skips
// extensions byte by byte without a bound; extensions carry nothing Weir forwards (the body
// is re-framed on the way out), so only the timeouts would limit them.
var ErrChunkExt = errors.New("chunk extensions too long")

// The bounds on chunk extensions, the limit Go's net/http applies to a chunk-size line.
const (
	MaxChunkLine = 4096 // one chunk-size line, size and extensions, without its CRLF
	MaxChunkExt  = 4096 // the extensions of one body, summed over its chunks
)

// scanKeep is how much of a head line the scanner keeps to judge it: enough for every framing
// field a client writes ("Transfer-Encoding: chunked", a Content-Length of 18 digits with
// some whitespace). A framing field longer than that is one the scanner is unsure of.
const scanKeep = 48

// scan states.
const (
	scStart    uint8 = iota // before a request: empty lines are skipped, as fasthttp does
	scStartCR               // a CR before a request, whose LF has not arrived
	scHead                  // inside a request head
	scBody                  // inside a Content-Length body: left bytes to go
	scSize                  // chunk size: hex digits
	scSizeTail              // after the digits: whitespace, then ';' and extensions, or CR
	scExt                   // inside the extensions of a chunk-size line
	scSizeLF                // the chunk-size line's CR was read, its LF is next
	scData                  // chunk data: left bytes to go
	scDataCR                // the CR after chunk data
	scDataLF                // the LF after chunk data
	scTrailer               // the trailer section, up to its empty line
	scLost                  // the scanner stopped judging this connection
	scFailed                // a read failed; every later read fails the same way
)

// reqScan follows the request byte stream of one HTTP/1 connection, chunk by chunk as reads
// return it, along the message boundaries fasthttp will find in it: a head up to its empty
// line, then a body as its framing says, then the next head. It fails a head with a bare-LF
// line end (ErrBareLF) and a chunked body whose extensions are too long (ErrChunkExt), which
// fasthttp would otherwise only end at a timeout.
//
// It must never fail valid traffic, and it cannot know everything fasthttp and the engine
// will do with a request, so whatever it does not fully understand makes it stop judging the
// rest of the connection ("lost"): two Content-Lengths, Content-Length with
// Transfer-Encoding, a coding other than chunked, a malformed chunk, a CONNECT or an Upgrade
// request (the bytes after a 101 are not HTTP), Expect (a client that is refused before its
// 100 Continue may send its next request instead of the body). Those requests are refused
// elsewhere (CheckFraming, fasthttp itself) or hijacked into tunnels. The HTTP version does
// not matter: fasthttp frames HTTP/1.0 and HTTP/1.1 request bodies alike.
//
// It allocates nothing: the few bytes it keeps of a head line live in the struct.
type reqScan struct {
	state uint8
	// Head: the current line's first bytes and its length so far (which may exceed
	// scanKeep), whether its last byte so far is a CR, whether it is the request line.
	line    [scanKeep]byte
	lineN   int
	cr      bool
	reqLine bool
	// What the head's fields said of the framing.
	cl               int64
	hasCL, chunked   bool
	unsure           bool
	left             int64 // bytes of a Content-Length body or of chunk data still to come
	digits, sizeLine int   // chunk-size line: hex digits, and its length so far
	ext              int   // extension bytes of the current chunked body
	ows              bool  // whitespace followed the chunk size
	err              error // the failure, in scFailed
}

// lose makes the scanner stop judging the connection.
func (s *reqScan) lose() { s.state = scLost }

// feed takes the next bytes read from the connection. It returns how many of them to hand to
// the server, and the error to return with them: on a failure, the bytes up to and including
// the offending one. fasthttp then parses what it was given, cannot complete the message (a
// head needs its CRLFCRLF, a chunk its CRLF), and fails with the error on its next read; the
// offending byte is included so that the server always has something buffered for the
// request it fails (with nothing read, fasthttp would close a keep-alive connection without
// an answer).
func (s *reqScan) feed(p []byte) (int, error) {
	i := 0
	for i < len(p) {
		switch s.state {
		case scStart:
			// fasthttp skips any number of empty lines, CRLF or a lone LF, before a request
			// line (RFC 9112 section 2.2 allows it to ignore them). They belong to no head,
			// so they are skipped here too, not judged: a buffer holding only CR and LF bytes
			// when a read fails is taken by fasthttp for the end of the connection, and
			// closed without an answer.
			switch p[i] {
			case '\n':
				i++
			case '\r':
				s.state = scStartCR
				i++
			default:
				s.startHead()
			}
		case scStartCR:
			if p[i] != '\n' {
				// A request line starting with CR: fasthttp refuses its method itself.
				s.lose()
				return len(p), nil
			}
			s.state = scStart
			i++
		case scHead:
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				s.keep(p[i:])
				return len(p), nil
			}
			j += i
			if !(j > i && p[j-1] == '\r' || j == i && s.lineN > 0 && s.cr) {
				return s.fail(j, ErrBareLF)
			}
			s.keep(p[i:j])
			i = j + 1
			if s.lineN == 1 { // the empty line: only its CR
				s.endHead()
			} else {
				s.judgeLine()
				s.lineN, s.cr, s.reqLine = 0, false, false
			}
		case scBody, scData:
			k := int64(len(p) - i)
			if k >= s.left {
				i += int(s.left)
				s.left = 0
				if s.state == scBody {
					s.state = scStart
				} else {
					s.state = scDataCR
				}
			} else {
				s.left -= k
				return len(p), nil
			}
		case scSize:
			k := hexVal(p[i])
			if k < 0 {
				if s.digits == 0 {
					s.lose() // fasthttp refuses a chunk without a size
					return len(p), nil
				}
				s.state = scSizeTail
				continue
			}
			if s.digits++; s.digits > 15 {
				s.lose() // over fasthttp's 15 digits: it refuses the chunk
				return len(p), nil
			}
			s.left = s.left<<4 | int64(k)
			s.sizeLine++
			i++
		case scSizeTail, scExt:
			for i < len(p) {
				c := p[i]
				if c == '\r' {
					s.state = scSizeLF
					i++
					break
				}
				s.sizeLine++
				s.ext++
				if s.sizeLine > MaxChunkLine || s.ext > MaxChunkExt {
					return s.fail(i, ErrChunkExt)
				}
				i++
				if s.state == scExt {
					if c == '\n' {
						s.lose() // fasthttp refuses a LF inside a chunk-size line
						return len(p), nil
					}
					continue
				}
				switch c {
				case ' ', '\t':
					s.ows = true
				case ';':
					if s.ows {
						s.lose() // fasthttp refuses whitespace before ';'
						return len(p), nil
					}
					s.state = scExt
				default:
					s.lose() // fasthttp refuses anything else after the size
					return len(p), nil
				}
			}
		case scSizeLF:
			if p[i] != '\n' {
				s.lose()
				return len(p), nil
			}
			i++
			if s.left == 0 { // the last chunk: its trailer section follows
				s.state, s.lineN, s.cr = scTrailer, 0, false
			} else {
				s.state = scData
			}
		case scDataCR, scDataLF:
			want := byte('\r')
			if s.state == scDataLF {
				want = '\n'
			}
			if p[i] != want {
				s.lose() // fasthttp refuses chunk data not followed by CRLF
				return len(p), nil
			}
			i++
			if s.state == scDataCR {
				s.state = scDataLF
			} else {
				s.startChunk()
			}
		case scTrailer:
			// Only the end of the section is looked for. A bare LF in a trailer is not judged:
			// fasthttp's trailer reader may take it for the end of the section, and with a
			// trailer that ends the body a failed read would surface only at the next request,
			// which fasthttp would close without an answer.
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				s.lineN += len(p) - i
				s.cr = p[len(p)-1] == '\r'
				return len(p), nil
			}
			j += i
			if !(j > i && p[j-1] == '\r' || j == i && s.lineN > 0 && s.cr) {
				s.lose()
				return len(p), nil
			}
			if s.lineN+j-i == 1 {
				s.state = scStart
			}
			s.lineN, s.cr = 0, false
			i = j + 1
		default: // scLost, scFailed: the caller does not feed these
			return len(p), nil
		}
	}
	return len(p), nil
}

func (s *reqScan) fail(at int, err error) (int, error) {
	s.state, s.err = scFailed, err
	return at + 1, err
}

// startHead begins a request head at its first byte.
func (s *reqScan) startHead() {
	s.state = scHead
	s.lineN, s.cr, s.reqLine = 0, false, true
	s.cl, s.hasCL, s.chunked, s.unsure = 0, false, false, false
}

// startChunk begins the next chunk-size line of a chunked body.
func (s *reqScan) startChunk() {
	s.state = scSize
	s.left, s.digits, s.sizeLine, s.ows = 0, 0, 0, false
}

// keep adds b to the current head line: its first scanKeep bytes are kept.
func (s *reqScan) keep(b []byte) {
	if len(b) == 0 {
		return
	}
	if s.lineN < scanKeep {
		copy(s.line[s.lineN:], b)
	}
	s.lineN += len(b)
	s.cr = b[len(b)-1] == '\r'
}

// endHead picks what follows a head from what its fields said.
func (s *reqScan) endHead() {
	switch {
	case s.unsure || s.hasCL && s.chunked:
		s.lose()
	case s.chunked:
		s.ext = 0
		s.startChunk()
	case s.cl > 0:
		s.state, s.left = scBody, s.cl
	default:
		s.state = scStart
	}
}

// judgeLine notes what a complete head line (its CR included, its LF not) says of the
// message's framing.
func (s *reqScan) judgeLine() {
	n := s.lineN - 1 // without the CR
	line := s.line[:min(n, scanKeep)]
	if s.reqLine {
		// CONNECT turns the connection into a tunnel when it is served.
		if bytes.HasPrefix(line, []byte("CONNECT ")) {
			s.unsure = true
		}
		return
	}
	// A cheap first test: most fields start with none of these letters.
	switch line[0] | 0x20 {
	case 'c', 't', 'u', 'e':
	default:
		return
	}
	name, value, ok := bytes.Cut(line, []byte{':'})
	if !ok {
		// A framing name that does not fit with its colon is as unsure as a long value.
		if n > scanKeep && isFramingName(line) {
			s.unsure = true
		}
		return
	}
	switch {
	case httpsyntax.EqualFold(name, "content-length"):
		// A value longer than what was kept of the line is not known.
		cl := parseDecimal(httpsyntax.TrimOWS(value))
		if n > scanKeep || cl < 0 || s.hasCL {
			s.unsure = true
			return
		}
		s.hasCL, s.cl = true, cl
	case httpsyntax.EqualFold(name, "transfer-encoding"):
		if n > scanKeep || string(httpsyntax.TrimOWS(value)) != "chunked" || s.chunked {
			s.unsure = true
			return
		}
		s.chunked = true
	case httpsyntax.EqualFold(name, "upgrade"), httpsyntax.EqualFold(name, "expect"):
		s.unsure = true
	}
}

// isFramingName reports whether a head line that was cut short starts like a field the
// scanner would have to read.
func isFramingName(line []byte) bool {
	for _, name := range [...]string{"content-length", "transfer-encoding", "upgrade", "expect"} {
		if len(line) >= len(name) && httpsyntax.EqualFold(line[:len(name)], name) {
			return true
		}
	}
	return false
}

// parseDecimal is a Content-Length of 1 to 18 digits, -1 for anything else.
func parseDecimal(b []byte) int64 {
	if len(b) == 0 || len(b) > 18 {
		return -1
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
