package proxy

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// testFrame returns a binary frame with a payload of n bytes, masked or not.
func testFrame(n int, masked bool) []byte {
	b := []byte{0x82}
	var m byte
	if masked {
		m = 0x80
	}
	switch {
	case n < 126:
		b = append(b, m|byte(n))
	case n <= 0xffff:
		b = append(b, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if masked {
		b = append(b, 1, 2, 3, 4)
	}
	return append(b, make([]byte, n)...)
}

// frameStream is frames of every length encoding; ends are the offsets of frame boundaries.
func frameStream() (stream []byte, ends map[int]bool) {
	ends = map[int]bool{0: true}
	for _, f := range []struct {
		n      int
		masked bool
	}{{0, true}, {5, true}, {125, false}, {126, true}, {300, true}, {0xffff, true}, {0x10000, true}, {1, false}} {
		stream = append(stream, testFrame(f.n, f.masked)...)
		ends[len(stream)] = true
	}
	return stream, ends
}

// checkBoundaries feeds stream cut at cuts and checks atBoundary after every byte position
// a cut falls on.
func checkBoundaries(t *testing.T, stream []byte, ends map[int]bool, cuts []int) {
	t.Helper()
	var f frameTracker
	pos := 0
	for _, c := range append(cuts, len(stream)) {
		if c < pos || c > len(stream) {
			continue
		}
		f.feed(stream[pos:c])
		pos = c
		if got := f.atBoundary(); got != ends[pos] {
			t.Fatalf("after %d bytes (cuts %v): atBoundary = %v, want %v", pos, cuts, got, ends[pos])
		}
	}
}

func TestFrameTracker(t *testing.T) {
	stream, ends := frameStream()
	var every []int
	for i := range 400 {
		every = append(every, i) // byte by byte through the small frames' headers
	}
	checkBoundaries(t, stream, ends, every)
	checkBoundaries(t, stream, ends, []int{1, 3, 9, 140, 141, 143, 600, 70000, 70001, 70004, 70010})
}

func FuzzFrameTracker(f *testing.F) {
	f.Add([]byte{1, 2, 3, 200, 7})
	stream, ends := frameStream()
	f.Fuzz(func(t *testing.T, steps []byte) {
		var cuts []int
		pos := 0
		for _, s := range steps {
			pos += int(s) * int(s) // long strides reach the large frames
			cuts = append(cuts, pos)
		}
		checkBoundaries(t, stream, ends, cuts)
	})
}

func TestCloseFrameIsMasked(t *testing.T) {
	fr := closeFrame(1001, "going away")
	if fr[0] != 0x88 || fr[1] != 0x80|12 {
		t.Fatalf("header % x", fr[:2])
	}
	key, payload := fr[2:6], bytes.Clone(fr[6:])
	for i := range payload {
		payload[i] ^= key[i%4]
	}
	if binary.BigEndian.Uint16(payload) != 1001 || string(payload[2:]) != "going away" {
		t.Errorf("payload %q", payload)
	}
}

// TestTunnelHalfClose: a side that ends its stream is half-closed on to the other, which can
// still answer.
func TestTunnelHalfClose(t *testing.T) {
	clientGW, client := tcpPair(t)
	upGW, up := tcpPair(t)
	tn := NewTunnel(clientGW, upGW, time.Minute)
	done := make(chan bool)
	go func() { done <- tn.Run() }()
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = client.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(up) // ends: the gateway passed the half-close on
	if err != nil || string(got) != "ping" {
		t.Fatalf("upstream read %q, %v", got, err)
	}
	if _, err := up.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	_ = up.(*net.TCPConn).CloseWrite()
	got, err = io.ReadAll(client)
	if err != nil || string(got) != "pong" {
		t.Fatalf("client read %q, %v", got, err)
	}
	if idled := <-done; idled {
		t.Error("reported idle")
	}
}

// TestTunnelIdle: no byte either way for the idle timeout closes both sides.
func TestTunnelIdle(t *testing.T) {
	clientGW, client := tcpPair(t)
	upGW, up := tcpPair(t)
	tn := NewTunnel(clientGW, upGW, 100*time.Millisecond)
	done := make(chan bool)
	go func() { done <- tn.Run() }()
	if idled := <-done; !idled {
		t.Error("not reported idle")
	}
	for _, c := range []net.Conn{client, up} {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil || n > 0 {
			t.Errorf("read after idle close: %d, %v", n, err)
		}
	}
}

// tcpPair is two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}
