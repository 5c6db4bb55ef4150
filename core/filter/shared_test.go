package filter

import (
	"errors"
	"io"
	"sync"
	"testing"
	"time"
)

type closer struct {
	mu     sync.Mutex
	closed int
}

func (c *closer) Close() error {
	c.mu.Lock()
	c.closed++
	c.mu.Unlock()
	return nil
}

// TestSharedCreateDoesNotBlockOthers checks that a slow create (a plugin compile) blocks
// neither acquires of other keys nor Len, that a second acquire of the same key waits for it
// and gets the same value, and that the value is closed once, after the last release.
func TestSharedCreateDoesNotBlockOthers(t *testing.T) {
	s := NewShared()
	slow, unblock := &closer{}, make(chan struct{})
	type result struct {
		v       io.Closer
		release func() error
		err     error
	}
	first, second := make(chan result, 1), make(chan result, 1)
	go func() {
		v, rel, err := s.Acquire("slow", func() (io.Closer, error) { <-unblock; return slow, nil })
		first <- result{v, rel, err}
	}()
	// Let the first acquire start its create.
	for deadline := time.Now().Add(5 * time.Second); s.Len() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the slow create never started")
		}
		time.Sleep(time.Millisecond)
	}
	go func() {
		v, rel, err := s.Acquire("slow", func() (io.Closer, error) { t.Error("created twice"); return &closer{}, nil })
		second <- result{v, rel, err}
	}()

	done := make(chan struct{})
	go func() {
		defer close(done)
		_, rel, err := s.Acquire("fast", func() (io.Closer, error) { return &closer{}, nil })
		if err != nil {
			t.Error(err)
			return
		}
		_ = s.Len()
		_ = rel()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("acquiring another key waited for a slow create")
	}
	select {
	case <-second:
		t.Fatal("a second acquire of the same key returned before its create finished")
	case <-time.After(20 * time.Millisecond):
	}

	close(unblock)
	a, b := <-first, <-second
	if a.err != nil || b.err != nil || a.v != slow || b.v != slow {
		t.Fatalf("acquires got %v %v / %v %v, want the slow value twice", a.v, a.err, b.v, b.err)
	}
	_ = a.release()
	if slow.closed != 0 {
		t.Fatal("closed while a reference was held")
	}
	_ = b.release()
	_ = b.release() // a second call of the same release is a no-op
	if slow.closed != 1 || s.Len() != 0 {
		t.Fatalf("closed %d times, %d entries left; want 1 and 0", slow.closed, s.Len())
	}
}

// TestSharedFailedCreate checks that a failed create reaches every acquirer waiting on it and
// leaves nothing behind, so the next acquire tries again.
func TestSharedFailedCreate(t *testing.T) {
	s := NewShared()
	boom := errors.New("boom")
	unblock := make(chan struct{})
	errs := make(chan error, 2)
	go func() {
		_, _, err := s.Acquire("k", func() (io.Closer, error) { <-unblock; return nil, boom })
		errs <- err
	}()
	for s.Len() == 0 {
		time.Sleep(time.Millisecond)
	}
	go func() {
		_, _, err := s.Acquire("k", func() (io.Closer, error) { return &closer{}, nil })
		errs <- err
	}()
	time.Sleep(10 * time.Millisecond)
	close(unblock)
	for i := 0; i < 2; i++ {
		if err := <-errs; !errors.Is(err, boom) {
			// The second acquire may also have arrived after the failure was removed and
			// created its own value; then it succeeds.
			if err != nil {
				t.Errorf("acquire %d: %v, want %v", i, err, boom)
			}
		}
	}
	v, rel, err := s.Acquire("k", func() (io.Closer, error) { return &closer{}, nil })
	if err != nil || v == nil {
		t.Fatalf("acquire after a failure: %v %v", v, err)
	}
	_ = rel()
}

func TestEnvPath(t *testing.T) {
	for _, tc := range []struct{ dir, p, want string }{
		{"/etc/weir", "users.htpasswd", "/etc/weir/users.htpasswd"},
		{"/etc/weir", "keys/a.pem", "/etc/weir/keys/a.pem"},
		{"/etc/weir", "/abs/a.pem", "/abs/a.pem"},
		{"", "rel.pem", "rel.pem"},
		{"/etc/weir", "", ""},
	} {
		if got := (Env{Dir: tc.dir}).Path(tc.p); got != tc.want {
			t.Errorf("Env{Dir: %q}.Path(%q) = %q, want %q", tc.dir, tc.p, got, tc.want)
		}
	}
}
