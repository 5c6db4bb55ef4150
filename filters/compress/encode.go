package compress

import (
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	brotli "github.com/molecule-man/go-brrr"
)

// encoders hands out compressor state for one coding at one level. The state (gzip's and
// brotli's hash tables, zstd's encoder, the output buffer) is large, so it is pooled rather
// than built per response: a pooled compression allocates nothing. sync.Pool suits it (unlike
// plugin instances, an encoder holds nothing that must be closed), and lets the garbage
// collector shrink the pool after a burst.
type encoders struct {
	coding coding
	level  int
	pool   sync.Pool
}

// maxPooledBuffer bounds the output buffer an encoder keeps between responses: a rare large
// body should not pin its memory in every pooled encoder.
const maxPooledBuffer = 1 << 20

// encoder is one pooled compressor and its output buffer.
type encoder struct {
	gz   *gzip.Writer
	br   *brotli.Writer
	zs   *zstd.Encoder
	w    streamWriter // whichever of the three is set, for streams
	sink sink
	in   []byte // a streamed body read whole, or a stream's read buffer
}

// streamWriter is what gzip's, brotli's and zstd's writers have in common.
type streamWriter interface {
	io.WriteCloser
	Flush() error
	Reset(io.Writer)
}

// window is the largest distance a match may reach back, for brotli and zstd: it bounds the
// memory a long stream makes an encoder hold (zstd in HTTP may use up to 8 MiB, RFC 9659), and
// costs little ratio on answers of an API or a page.
const window = 1 << 20

// sink collects compressed output; a pointer to it is the writer the compressors write to.
type sink struct{ b []byte }

func (s *sink) Write(p []byte) (int, error) {
	s.b = append(s.b, p...)
	return len(p), nil
}

// pools holds one *encoders per coding and level, shared by every route and every config
// snapshot: an encoder carries no configuration beyond these two, so a reload or a second
// route with the same level reuses the warm pool instead of building its own.
var pools sync.Map // poolKey -> *encoders

type poolKey struct {
	coding coding
	level  int
}

func newEncoders(c coding, level int) (*encoders, error) {
	k := poolKey{c, level}
	if e, ok := pools.Load(k); ok {
		return e.(*encoders), nil
	}
	e := &encoders{coding: c, level: level}
	// Build one now so a level the library refuses fails the config build, not a request.
	first, err := e.build()
	if err != nil {
		return nil, err
	}
	e.pool.Put(first)
	actual, _ := pools.LoadOrStore(k, e)
	return actual.(*encoders), nil
}

func (e *encoders) build() (*encoder, error) {
	enc := &encoder{}
	var err error
	switch e.coding {
	case gzipCoding:
		enc.gz, err = gzip.NewWriterLevel(&enc.sink, e.level)
		enc.w = enc.gz
	case brCoding:
		enc.br, err = brotli.NewWriterOptions(&enc.sink, e.level, brotli.WriterOptions{LGWin: 20})
		enc.w = enc.br
	case zstdCoding:
		// One goroutine: the compression runs on the request's goroutine, as gzip's does.
		enc.zs, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(e.level)),
			zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(window))
		enc.w = enc.zs
	default:
		err = fmt.Errorf("unknown coding %d", e.coding)
	}
	if err != nil {
		return nil, fmt.Errorf("%s level %d: %w", codingNames[e.coding], e.level, err)
	}
	return enc, nil
}

func (e *encoders) get() *encoder {
	if v := e.pool.Get(); v != nil {
		return v.(*encoder)
	}
	enc, err := e.build()
	if err != nil {
		panic(err) // the same options built an encoder at config build
	}
	return enc
}

func (e *encoders) put(enc *encoder) {
	if cap(enc.sink.b) > maxPooledBuffer {
		enc.sink.b = nil
	}
	if cap(enc.in) > maxPooledBuffer {
		enc.in = nil
	}
	e.pool.Put(enc)
}

// compress returns src compressed, in a buffer owned by enc until the next call.
func (enc *encoder) compress(src []byte) ([]byte, error) {
	enc.sink.b = enc.sink.b[:0]
	switch {
	case enc.zs != nil:
		enc.sink.b = enc.zs.EncodeAll(src, enc.sink.b)
		return enc.sink.b, nil
	case enc.gz != nil:
		enc.gz.Reset(&enc.sink)
		if _, err := enc.gz.Write(src); err != nil {
			return nil, err
		}
		if err := enc.gz.Close(); err != nil {
			return nil, err
		}
	default:
		// The size hint lets brotli choose its tables for the body it will see.
		enc.br.ResetWithSizeHint(&enc.sink, uint(len(src)))
		if _, err := enc.br.Write(src); err != nil {
			return nil, err
		}
		if err := enc.br.Close(); err != nil {
			return nil, err
		}
	}
	return enc.sink.b, nil
}
