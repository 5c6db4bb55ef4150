package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is the quiet period Watch waits for when given none: long enough to cover an
// editor's write-rename-chmod sequence, short enough that a reload feels immediate.
const DefaultDebounce = 250 * time.Millisecond

// Watch calls onChange once after each burst of changes to the config file at path, when no
// further change has arrived for debounce (DefaultDebounce if debounce <= 0).
//
// It watches the file's directory rather than the file: editors save by writing a new file and
// renaming it over the old one, and Kubernetes swaps a ConfigMap by re-pointing a symlink, and
// both leave a watch on the file itself watching a file that is gone. A change is an event on
// the file's name, or any event in the directory after which the file resolves to a different
// real path (the symlink swap, whose events name only the ..data link).
//
// onChange runs on the watcher's goroutine, one call at a time; it must not call stop. stop
// removes the watch, waits for the goroutine to end (and for a running onChange to return), and
// may be called more than once; onChange is never called after stop returns.
func Watch(path string, debounce time.Duration, onChange func()) (stop func(), err error) {
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("watch config %s: %w", path, err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch config %s: %w", path, err)
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("watch config %s: %w", path, err)
	}

	// Resolved before the goroutine starts, so a swap right after Watch returns is seen as one.
	real := realPath(abs)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The timer starts stopped; each relevant event (re)arms it, and its firing ends a burst.
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
		for {
			select {
			case <-done:
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				now := realPath(abs)
				if filepath.Clean(ev.Name) == abs || now != real {
					real = now
					timer.Reset(debounce)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				// A dropped-events overflow may have hidden a change; reloading an unchanged
				// file is a no-op (see Config.Hash), missing a change is not.
				if errors.Is(err, fsnotify.ErrEventOverflow) {
					timer.Reset(debounce)
				}
			case <-timer.C:
				select {
				case <-done:
					return
				default:
				}
				onChange()
			}
		}
	}()

	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			_ = w.Close()
			wg.Wait()
		})
	}, nil
}

// realPath resolves symlinks, or returns "" while the file does not exist (mid-rename).
func realPath(p string) string {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return ""
	}
	return r
}
