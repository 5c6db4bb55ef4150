package compress

import (
	"io"
)

// streamBuffer is how much of the upstream's body a stream reads at a time.
const streamBuffer = 32 << 10

// stream compresses a body as it streams from the upstream to the client: the body fasthttp
// writes in chunks. It holds one pooled encoder until the body has passed (or the client is
// gone), and returns it when fasthttp closes the stream.
type stream struct {
	src    io.ReadCloser
	pool   *encoders
	enc    *encoder
	off    int  // compressed bytes of enc.sink.b already handed out
	done   bool // the upstream's body ended and the compressor was closed
	err    error
	closed bool
}

func newStream(src io.ReadCloser, pool *encoders) *stream {
	enc := pool.get()
	if cap(enc.in) < streamBuffer {
		enc.in = make([]byte, streamBuffer)
	}
	enc.sink.b = enc.sink.b[:0]
	enc.w.Reset(&enc.sink)
	return &stream{src: src, pool: pool, enc: enc}
}

// Read hands out compressed bytes, reading and compressing more of the upstream's body when
// none are pending. What the compressor holds is flushed whenever the upstream had no more to
// give at once, so a body that trickles (a progress feed) reaches the client as it comes. An
// upstream error is returned as it is and the compressor is never closed after one: fasthttp
// then ends the connection without the last chunk, and the client sees a broken body rather
// than a complete-looking truncated one.
func (s *stream) Read(p []byte) (int, error) {
	if s.closed {
		return 0, io.ErrClosedPipe
	}
	for {
		if s.off < len(s.enc.sink.b) {
			n := copy(p, s.enc.sink.b[s.off:])
			s.off += n
			return n, nil
		}
		if s.done {
			return 0, io.EOF
		}
		if s.err != nil {
			return 0, s.err
		}
		s.enc.sink.b, s.off = s.enc.sink.b[:0], 0
		buf := s.enc.in[:cap(s.enc.in)]
		n, err := s.src.Read(buf)
		if n > 0 {
			if _, werr := s.enc.w.Write(buf[:n]); werr != nil {
				s.err = werr
				continue
			}
		}
		switch {
		case err == io.EOF:
			if cerr := s.enc.w.Close(); cerr != nil {
				s.err = cerr
			} else {
				s.done = true
			}
		case err != nil:
			s.err = err
		case n > 0 && n < len(buf):
			if ferr := s.enc.w.Flush(); ferr != nil {
				s.err = ferr
			}
		}
	}
}

// Close closes the upstream's body (which returns its connection to the pool when it was read
// to the end) and returns the encoder.
func (s *stream) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.src.Close()
	s.pool.put(s.enc)
	s.src, s.enc = nil, nil
	return err
}

// Detach hands the stream to a new reader, as the proxy's streams do, so that a filter that
// runs after this one in the response phase (the cache, storing the compressed variant) can
// wrap it: fasthttp closes the stream a new one replaces.
func (s *stream) Detach() io.ReadCloser {
	d := *s
	*s = stream{closed: true}
	return &d
}
