package telemetry

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// asyncWriter decouples request handling from log I/O. Writes append to a memory buffer under
// a short lock; one goroutine swaps the buffer out and writes it, every flushEvery or as soon
// as flushAt bytes are pending. If the output stalls and maxPending bytes pile up, further lines
// are dropped and counted, so a full disk or a stuck pipe never slows traffic. Unlike a ring of
// pooled line buffers it allocates nothing per line once its two buffers have grown.
type asyncWriter struct {
	w io.Writer

	mu      sync.Mutex
	pending []byte
	spare   []byte // touched only by the flushing goroutine, and swapped under mu

	dropped atomic.Uint64
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

const (
	flushEvery = 100 * time.Millisecond
	flushAt    = 64 << 10
	maxPending = 4 << 20
)

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{
		w:    w,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go a.loop()
	return a
}

// Write queues p (copied) and never blocks on I/O.
func (a *asyncWriter) Write(p []byte) (int, error) {
	a.mu.Lock()
	if len(a.pending)+len(p) > maxPending {
		a.mu.Unlock()
		a.dropped.Add(1)
		return len(p), nil
	}
	a.pending = append(a.pending, p...)
	full := len(a.pending) >= flushAt
	a.mu.Unlock()
	if full {
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

func (a *asyncWriter) loop() {
	defer close(a.done)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-a.wake:
		case <-a.stop:
			a.flush()
			return
		}
		a.flush()
	}
}

func (a *asyncWriter) flush() {
	a.mu.Lock()
	b := a.pending
	a.pending = a.spare[:0]
	a.mu.Unlock()
	if len(b) > 0 {
		_, _ = a.w.Write(b) // nowhere to report a log write error but the log itself
	}
	a.spare = b[:0]
}

// Close writes what is pending, stops the goroutine and closes the output if it is a Closer.
func (a *asyncWriter) Close() error {
	a.once.Do(func() { close(a.stop) })
	<-a.done
	if c, ok := a.w.(io.Closer); ok {
		if err := c.Close(); err != nil {
			return fmt.Errorf("close log output: %w", err)
		}
	}
	return nil
}
