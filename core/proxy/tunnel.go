package proxy

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Tunnel splices a client connection with the upstream connection of a WebSocket that
// completed its handshake. Bytes are copied both ways as they come; a side that ends its
// stream is half-closed on to the other, so either may finish sending first. The copy from
// the client follows the frame boundaries (it reads only frame headers), so that GoAway can
// end the WebSocket cleanly between two frames.
type Tunnel struct {
	client, upstream net.Conn
	idle             time.Duration
	last             atomic.Int64 // unix nanoseconds of the last byte either way

	mu      sync.Mutex // held while writing to upstream
	frames  frameTracker
	goAway  bool // GoAway was called
	sentBye bool // the close frame went upstream; the client's later bytes are dropped

	idled  atomic.Bool
	closed atomic.Bool
}

// tunnelBuffer is each direction's copy buffer: a WebSocket message is usually small, and a
// tunnel holds its two buffers for its whole life.
const tunnelBuffer = 16 << 10

// NewTunnel prepares a tunnel; idle > 0 closes it when no byte moved either way for that long.
func NewTunnel(client, upstream net.Conn, idle time.Duration) *Tunnel {
	t := &Tunnel{client: client, upstream: upstream, idle: idle}
	t.last.Store(time.Now().UnixNano())
	return t
}

// Run copies until both directions ended, then closes both connections. It reports whether
// the idle timeout ended the tunnel.
func (t *Tunnel) Run() (idled bool) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.copy(t.client, t.upstream, false)
	}()
	t.copy(t.upstream, t.client, true)
	<-done
	t.Close()
	return t.idled.Load()
}

// Close ends the tunnel at once: both connections are closed.
func (t *Tunnel) Close() {
	if t.closed.Swap(true) {
		return
	}
	_ = t.client.Close()
	_ = t.upstream.Close()
}

// GoAway ends the WebSocket as a client going away would: at the next boundary between two of
// the client's frames, a close frame with status 1001 ("going away") goes to the upstream, and
// the client's later bytes are dropped. The upstream finishes what it was sending and answers
// with its own close frame, which reaches the client as the last thing on the tunnel; then the
// upstream closes its connection, and the tunnel ends. Nothing the upstream sent before its
// close is lost. It does not wait; Close cuts a tunnel that takes too long.
func (t *Tunnel) GoAway() {
	go func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.goAway = true
		t.sayGoodbyeLocked()
	}()
}

func (t *Tunnel) sayGoodbyeLocked() {
	if !t.goAway || t.sentBye || !t.frames.atBoundary() {
		return
	}
	t.sentBye = true
	_, _ = t.upstream.Write(closeFrame(1001, "going away"))
}

// copy moves bytes from src to dst until src ends or fails. toUpstream marks the client's
// direction, which tracks frames and may say goodbye.
func (t *Tunnel) copy(dst, src net.Conn, toUpstream bool) {
	buf := make([]byte, tunnelBuffer)
	for {
		if t.idle > 0 {
			_ = src.SetReadDeadline(time.Now().Add(t.idle))
		}
		n, err := src.Read(buf)
		if n > 0 {
			t.last.Store(time.Now().UnixNano())
			if t.idle > 0 {
				// A peer that stops reading holds the writer; past the idle timeout, that ends
				// the tunnel too.
				_ = dst.SetWriteDeadline(time.Now().Add(t.idle))
			}
			var werr error
			if toUpstream {
				werr = t.writeUpstream(buf[:n])
			} else {
				_, werr = dst.Write(buf[:n])
			}
			if werr != nil {
				t.Close()
				return
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			closeWrite(dst)
			return
		case t.idle > 0 && isTimeout(err) && !t.closed.Load():
			if time.Since(time.Unix(0, t.last.Load())) < t.idle {
				continue // the other direction moved
			}
			t.idled.Store(true)
			t.Close()
			return
		default:
			t.Close()
			return
		}
	}
}

func (t *Tunnel) writeUpstream(p []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sentBye {
		return nil
	}
	t.frames.feed(p)
	if _, err := t.upstream.Write(p); err != nil {
		return err
	}
	t.sayGoodbyeLocked()
	return nil
}

// closeWrite half-closes c when its transport can (TCP, TLS), looking through wrappers; a
// connection that cannot is closed fully when the tunnel ends.
func closeWrite(c net.Conn) {
	for {
		switch x := c.(type) {
		case interface{ CloseWrite() error }:
			_ = x.CloseWrite()
			return
		case interface{ UnsafeConn() net.Conn }: // fasthttp's hijacked connection
			c = x.UnsafeConn()
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return
		}
	}
}

// frameTracker follows the frame boundaries of a WebSocket byte stream (RFC 6455 section
// 5.2) from the frame headers alone.
type frameTracker struct {
	hdr  [14]byte
	have int    // header bytes of the current frame seen so far
	left uint64 // payload bytes of the current frame still to come
}

func (f *frameTracker) atBoundary() bool { return f.have == 0 && f.left == 0 }

func (f *frameTracker) feed(p []byte) {
	for len(p) > 0 {
		if f.left > 0 {
			k := min(uint64(len(p)), f.left)
			f.left -= k
			p = p[k:]
			continue
		}
		f.hdr[f.have] = p[0]
		f.have++
		p = p[1:]
		if f.have < 2 {
			continue
		}
		need := frameHeaderLen(f.hdr[1])
		if f.have < need {
			continue
		}
		f.left = framePayloadLen(f.hdr[:need])
		f.have = 0
	}
}

// frameHeaderLen is the length of a frame header whose second byte is b1.
func frameHeaderLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4 // masking key
	}
	return n
}

// framePayloadLen reads the payload length from a whole frame header.
func framePayloadLen(h []byte) uint64 {
	switch n := h[1] & 0x7f; n {
	case 126:
		return uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		return binary.BigEndian.Uint64(h[2:10])
	default:
		return uint64(n)
	}
}

// closeFrame is a masked close frame (a client's frames are masked) with status code and
// reason.
func closeFrame(code uint16, reason string) []byte {
	n := 2 + len(reason)
	f := make([]byte, 0, 6+n)
	f = append(f, 0x88, 0x80|byte(n))
	var key [4]byte
	_, _ = rand.Read(key[:])
	f = append(f, key[:]...)
	f = binary.BigEndian.AppendUint16(f, code)
	f = append(f, reason...)
	for i := range n {
		f[6+i] ^= key[i%4]
	}
	return f
}
