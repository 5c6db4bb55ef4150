// Package testkit holds the helpers that the tests of several packages share: a Hammer that
// runs loops until told to stop (reload-while-serving tests under -race), and Serve, which runs
// an in-process gateway on a loopback port. It imports only the standard library, so the tests
// of any package may use it; only _test.go files import it (the dependency test in core/filter
// keeps it so), and it is never linked into the weir binary.
package testkit

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// Hammer runs loops in goroutines until Stop. The zero value is not usable; call NewHammer.
type Hammer struct {
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// NewHammer returns a Hammer whose loops, if Stop was not called by then, are stopped and
// waited for when t ends.
func NewHammer(t testing.TB) *Hammer {
	h := &Hammer{stop: make(chan struct{})}
	t.Cleanup(h.Stop)
	return h
}

// Go calls f(0), f(1), f(2), … in a new goroutine until Stop is called or f returns false.
// Stop is checked before every call, so a call in progress always finishes.
func (h *Hammer) Go(f func(i int) bool) {
	h.wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-h.stop:
				return
			default:
			}
			if !f(i) {
				return
			}
		}
	})
}

// Stop ends every loop after its current call and waits for all of them. It may be called more
// than once.
func (h *Hammer) Stop() {
	h.once.Do(func() { close(h.stop) })
	h.wg.Wait()
}

// Server is what Serve runs; core/engine's Engine is one.
type Server interface {
	Serve(ln net.Listener) error
	Shutdown(ctx context.Context) error
}

// Serve runs s on a loopback port and returns its address. When t ends, s is shut down with up
// to 5 s to drain, and t fails if shutting down or serving returned an error.
func Serve(t testing.TB, s Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}
