package telemetry

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the log's writer goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAccessLogLineAndSampling(t *testing.T) {
	var out syncBuffer
	a := NewAccessLogWriter(&out, AccessLogOptions{Sample: 10})
	ok := Entry{Route: "api", Method: []byte("GET"), Path: []byte("/v1/x"), Status: 200,
		Upstream: "127.0.0.1:9000", Duration: 1500 * time.Microsecond, BytesIn: 3, BytesOut: 13, ID: []byte("abc")}
	for i := 0; i < 100; i++ {
		a.Log(&ok)
	}
	failed := ok
	failed.Status, failed.Err = 502, "upstream refused"
	for i := 0; i < 5; i++ {
		a.Log(&failed)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var okLines, errLines int
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line is not JSON: %v: %s", err, l)
		}
		for _, k := range []string{"time", "route", "method", "path", "status", "upstream", "duration_ms", "bytes_in", "bytes_out", "request_id"} {
			if _, has := m[k]; !has {
				t.Errorf("line lacks %q: %s", k, l)
			}
		}
		if m["status"].(float64) == 502 {
			errLines++
			if m["error"] != "upstream refused" {
				t.Errorf("failed line lacks its error: %s", l)
			}
		} else {
			okLines++
		}
	}
	// One in ten successful requests is logged; every failure is.
	if okLines != 10 || errLines != 5 {
		t.Errorf("logged %d ok and %d failed lines, want 10 and 5", okLines, errLines)
	}
	if d := a.Dropped(); d != 0 {
		t.Errorf("dropped %d lines", d)
	}
}

func TestAccessLogAllocations(t *testing.T) {
	a := NewAccessLogWriter(&syncBuffer{}, AccessLogOptions{Sample: 1000})
	defer a.Close()
	e := Entry{Route: "api", Method: []byte("GET"), Path: []byte("/"), Status: 200}
	// A sampled-out request costs no allocation at all.
	if n := testing.AllocsPerRun(1000, func() { a.Log(&e) }); n > 0.01 {
		t.Errorf("%v allocations per sampled-out request", n)
	}
}

func BenchmarkAccessLog(b *testing.B) {
	a := NewAccessLogWriter(io.Discard, AccessLogOptions{Sample: 1})
	defer a.Close()
	e := Entry{Route: "api", Method: []byte("GET"), Path: []byte("/v1/users/42"), Status: 200,
		Upstream: "127.0.0.1:9000", Duration: time.Millisecond, BytesOut: 13, ID: []byte("0123456789abcdef")}
	b.ReportAllocs()
	for b.Loop() {
		a.Log(&e)
	}
}
