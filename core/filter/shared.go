package filter

import (
	"fmt"
	"io"
	"sync"
)

// Shared is a keyed, reference-counted store for state that must survive a config reload:
// a snapshot acquires what it uses while it is built and releases it when it retires, so a value
// lives exactly as long as some live snapshot refers to it and is closed after the last one.
type Shared struct {
	mu      sync.Mutex
	entries map[string]*sharedEntry
}

type sharedEntry struct {
	ready chan struct{} // closed once create has returned; val and err are set before
	val   io.Closer
	err   error
	refs  int
}

// NewShared returns an empty store.
func NewShared() *Shared { return &Shared{entries: map[string]*sharedEntry{}} }

// Acquire returns the value under key, creating it with create when absent, and adds a reference.
// The caller must call the returned release exactly once.
//
// create runs outside the store's lock, so a slow one (a plugin compile) blocks neither
// acquires of other keys nor Len; acquires of the same key wait for it and share its result.
// A failed create leaves nothing behind: the next acquire tries again.
func (s *Shared) Acquire(key string, create func() (io.Closer, error)) (io.Closer, func() error, error) {
	s.mu.Lock()
	e, ok := s.entries[key]
	if !ok {
		e = &sharedEntry{ready: make(chan struct{})}
		s.entries[key] = e
	}
	e.refs++
	s.mu.Unlock()

	if ok {
		<-e.ready
	} else {
		e.val, e.err = create()
		if e.err != nil {
			s.mu.Lock()
			delete(s.entries, key)
			s.mu.Unlock()
		}
		close(e.ready)
	}
	if e.err != nil {
		return nil, nil, fmt.Errorf("create shared %q: %w", key, e.err)
	}
	var once sync.Once
	release := func() error {
		var err error
		once.Do(func() { err = s.release(key, e) })
		return err
	}
	return e.val, release, nil
}

func (s *Shared) release(key string, e *sharedEntry) error {
	s.mu.Lock()
	e.refs--
	last := e.refs == 0
	if last && s.entries[key] == e {
		delete(s.entries, key)
	}
	s.mu.Unlock()
	if last {
		return e.val.Close()
	}
	return nil
}

// Len reports how many live values the store holds (for tests and the admin API).
func (s *Shared) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}
