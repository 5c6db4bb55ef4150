package testkit

import (
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

func TestHammerStops(t *testing.T) {
	h := NewHammer(t)
	var calls, quit atomic.Int64
	for range 3 {
		h.Go(func(int) bool { calls.Add(1); return true })
	}
	h.Go(func(i int) bool {
		if i == 9 {
			quit.Store(int64(i + 1))
			return false
		}
		return true
	})
	for calls.Load() < 100 || quit.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	h.Stop()
	h.Stop() // a second Stop, and the one at cleanup, are no-ops
	after := calls.Load()
	time.Sleep(5 * time.Millisecond)
	if got := calls.Load(); got != after {
		t.Errorf("loops ran %d more calls after Stop returned", got-after)
	}
	if got := quit.Load(); got != 10 {
		t.Errorf("loop returning false at call 9 made %d calls, want 10", got)
	}
}

// httpServer adapts net/http's server to Server.
type httpServer struct{ *http.Server }

func (s httpServer) Serve(ln net.Listener) error {
	if err := s.Server.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func TestServe(t *testing.T) {
	srv := httpServer{&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})}}
	var addr string
	t.Run("serve", func(t *testing.T) {
		addr = Serve(t, srv)
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("status %d, want 200", resp.StatusCode)
		}
	})
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = c.Close()
		t.Error("server still listening after its test ended")
	}
}
