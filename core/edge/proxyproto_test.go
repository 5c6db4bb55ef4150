package edge

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestProxyProtocolListener: Accept hands on a connection whose header was read, with the
// header's addresses; a silent connection never holds Accept (the header is read on its own
// goroutine), connections past MaxPending are refused at once, and Close ends the reads of
// connections still waiting for their header.
func TestProxyProtocolListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var refusals []error
	ln := ProxyProtocol(raw, ProxyOptions{V1: true, From: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Timeout: time.Minute, MaxPending: 2, OnRefused: func(_ net.Addr, err error) {
			mu.Lock()
			refusals = append(refusals, err)
			mu.Unlock()
		}})
	defer ln.Close()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// Two silent connections fill MaxPending; a third is refused.
	silent := []net.Conn{dial(), dial()}
	third := dial()
	_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := third.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("third connection: read err %v, want it closed", err)
	}
	mu.Lock()
	if len(refusals) != 1 || !errors.Is(refusals[0], ErrProxyBusy) {
		t.Errorf("refusals %v, want one ErrProxyBusy", refusals)
	}
	mu.Unlock()

	// Close a silent one: its slot frees, and a connection with a header is accepted while
	// the other still waits.
	silent[0].Close()
	var good net.Conn
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		good = dial()
		if _, err := io.WriteString(good, "PROXY TCP4 10.1.2.3 192.0.2.1 1234 80\r\nhello"); err != nil {
			t.Fatal(err)
		}
		// A refused attempt (the slot not yet free) reads EOF; an accepted one stays open.
		_ = good.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := good.Read(make([]byte, 1)); isTimeout(err) {
			break
		}
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RemoteAddr().String(); got != "10.1.2.3:1234" {
		t.Errorf("RemoteAddr %s, want the header's 10.1.2.3:1234", got)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Errorf("read %q %v, want what followed the header", buf, err)
	}
	c.Close()

	// Close ends the wait of the connection still silent.
	ln.Close()
	_ = silent[1].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent[1].Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("silent connection after Close: read err %v, want it closed", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
