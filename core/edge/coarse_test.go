package edge

import (
	"net"
	"testing"
	"time"
)

// coarsePair returns the server side of a connection admitted by a Parker with coarse deadlines
// at resolution res, and its client side.
func coarsePair(t *testing.T, res time.Duration) (served, client net.Conn) {
	_, served, client = coarseParker(t, res)
	return served, client
}

// coarseParker is coarsePair with the Parker.
func coarseParker(t *testing.T, res time.Duration) (p *Parker, served, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p = Park(ln, ParkOptions{After: time.Hour, Resolution: res})
	t.Cleanup(func() { _ = p.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := p.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	served = <-accepted
	t.Cleanup(func() { _ = served.Close(); _ = client.Close() })
	return p, served, client
}

// timedRead reads one byte from c and returns the error and the time since start; it fails the
// test if the read is still waiting after 5 s (a deadline that never fired).
func timedRead(t *testing.T, c net.Conn, start time.Time) (error, time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	select {
	case err := <-done:
		return err, time.Since(start)
	case <-time.After(5 * time.Second):
		_ = c.Close()
		t.Fatal("the read is still waiting after 5 s: its deadline never fired")
		return nil, 0
	}
}

// TestCoarseDeadlines: a coarse deadline fails the read or write waiting on it, never before it
// is due; a deadline in the past interrupts at once; a connection whose deadline fired serves
// again once a new one is set.
func TestCoarseDeadlines(t *testing.T) {
	const res = 5 * time.Millisecond
	const due = 60 * time.Millisecond

	t.Run("read", func(t *testing.T) {
		served, client := coarsePair(t, res)
		start := time.Now()
		_ = served.SetReadDeadline(start.Add(due))
		err, el := timedRead(t, served, start)
		if !isTimeout(err) || el < due {
			t.Fatalf("read ended after %v with %v, want a timeout no sooner than %v", el, err, due)
		}
		// Fired; a new deadline (none) makes the connection usable again.
		_ = served.SetReadDeadline(time.Time{})
		if _, err := client.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if n, err := served.Read(b); n != 1 || err != nil || b[0] != 'x' {
			t.Fatalf("read after re-arming: %d %q %v", n, b, err)
		}
	})

	t.Run("write", func(t *testing.T) {
		served, _ := coarsePair(t, res)
		start := time.Now()
		_ = served.SetWriteDeadline(start.Add(due))
		buf := make([]byte, 1<<20)
		var err error
		for err == nil && time.Since(start) < 10*time.Second {
			_, err = served.Write(buf) // the client reads nothing: the buffers fill, then it waits
		}
		if el := time.Since(start); !isTimeout(err) || el < due {
			t.Fatalf("write ended after %v with %v, want a timeout no sooner than %v", el, err, due)
		}
	})

	t.Run("after the listener closes", func(t *testing.T) {
		// A drain: the listener is closed, the connections it admitted are still served and
		// their timeouts must still fire.
		p, served, _ := coarseParker(t, res)
		_ = p.Close()
		start := time.Now()
		_ = served.SetReadDeadline(start.Add(due))
		err, el := timedRead(t, served, start)
		if !isTimeout(err) || el < due {
			t.Fatalf("read ended after %v with %v, want a timeout no sooner than %v", el, err, due)
		}
	})

	t.Run("past deadline interrupts at once", func(t *testing.T) {
		// A resolution far longer than the test: only the immediate path can end the read.
		served, _ := coarsePair(t, time.Hour)
		done := make(chan error, 1)
		go func() {
			_, err := served.Read(make([]byte, 1))
			done <- err
		}()
		time.Sleep(20 * time.Millisecond) // let the read block
		_ = served.SetReadDeadline(time.Unix(1, 0))
		select {
		case err := <-done:
			if !isTimeout(err) {
				t.Fatalf("read ended with %v, want a timeout", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a deadline in the past did not interrupt the read")
		}
	})

	t.Run("re-arming races the sweep", func(t *testing.T) {
		// Deadlines that are due at once alternate with distant ones while the sweeper runs
		// every millisecond. A read under a distant deadline must never fail: a fired deadline
		// left on the connection after it was re-armed would fail it.
		served, client := coarsePair(t, time.Millisecond)
		b := make([]byte, 1)
		for i := range 300 {
			_ = served.SetReadDeadline(time.Now().Add(time.Duration(i%3) * time.Millisecond))
			time.Sleep(time.Duration(i%4) * 500 * time.Microsecond)
			_ = served.SetReadDeadline(time.Now().Add(time.Hour))
			if _, err := client.Write([]byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
			if n, err := served.Read(b); n != 1 || err != nil || b[0] != byte(i) {
				t.Fatalf("round %d: read %d %v under a distant deadline", i, n, err)
			}
		}
	})
}
