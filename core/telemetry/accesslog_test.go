package telemetry

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/config"
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

func newLog(t testing.TB, w io.Writer, o AccessLogOptions) *AccessLog {
	t.Helper()
	a, err := NewAccessLogWriter(w, o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// fullEntry sets every field.
var fullEntry = Entry{Route: "api", Client: []byte("192.0.2.7"), Host: []byte("api.example.com"),
	Method: []byte("GET"), Path: []byte("/v1/x"), Query: []byte("a=1&b=2"), Status: 200,
	Upstream: "127.0.0.1:9000", UpstreamStatus: 201, Duration: 1500 * time.Microsecond,
	UpstreamDuration: time.Millisecond, BytesIn: 3, BytesOut: 13, UserAgent: []byte("curl/8"),
	ID: []byte("abc"), TraceID: []byte("4bf92f3577b34da6a3ce929d0e0e4736"), Consumer: "alice"}

func TestAccessLogLineAndSampling(t *testing.T) {
	var out syncBuffer
	a := newLog(t, &out, AccessLogOptions{Sample: 10})
	ok := fullEntry
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
		for _, k := range AccessLogFields {
			if _, has := m[k]; !has && k != "error" {
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

// TestAccessLogFields: a line carries the selected fields, in the fixed order, and the optional
// ones only when set.
func TestAccessLogFields(t *testing.T) {
	tests := []struct {
		name   string
		fields []string
		entry  Entry
		want   string
	}{
		{"subset in fixed order", []string{"status", "client", "route"}, fullEntry,
			`{"client":"192.0.2.7","status":200,"route":"api"}`},
		{"upstream fields", []string{"upstream", "upstream_status", "upstream_duration_ms"}, fullEntry,
			`{"upstream":"127.0.0.1:9000","upstream_status":201,"upstream_duration_ms":1}`},
		{"request fields", []string{"host", "method", "path", "query", "user_agent", "request_id"}, fullEntry,
			`{"host":"api.example.com","method":"GET","path":"/v1/x","query":"a=1&b=2","user_agent":"curl/8","request_id":"abc"}`},
		{"optional fields set", []string{"trace_id", "consumer", "error"}, Entry{TraceID: []byte("4bf9"), Consumer: "alice", Err: "boom"},
			`{"trace_id":"4bf9","consumer":"alice","error":"boom"}`},
		{"optional fields empty", []string{"trace_id", "consumer", "error", "status"}, Entry{Status: 204},
			`{"status":204}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out syncBuffer
			a := newLog(t, &out, AccessLogOptions{Fields: tt.fields})
			a.Log(&tt.entry)
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(out.String()); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestAccessLogUnknownField(t *testing.T) {
	_, err := NewAccessLogWriter(io.Discard, AccessLogOptions{Fields: []string{"status", "latency"}})
	if err == nil || !strings.Contains(err.Error(), `"latency"`) {
		t.Errorf("err = %v, want one naming the unknown field", err)
	}
}

// TestFieldListsAgree: config validates access_log.fields against its own list (config imports
// nothing from core); it must be this package's.
func TestFieldListsAgree(t *testing.T) {
	if !slices.Equal(config.AccessLogFields, AccessLogFields[:]) {
		t.Errorf("config.AccessLogFields = %v\ntelemetry.AccessLogFields = %v", config.AccessLogFields, AccessLogFields)
	}
}

// TestAccessLogConsole: the console format writes human-readable lines, not JSON.
func TestAccessLogConsole(t *testing.T) {
	var out syncBuffer
	a := newLog(t, &out, AccessLogOptions{Format: FormatConsole, Fields: []string{"method", "path", "status"}})
	a.Log(&fullEntry)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if strings.HasPrefix(got, "{") || !strings.Contains(got, "method=GET") || !strings.Contains(got, "status=200") {
		t.Errorf("console line = %q", got)
	}
}

func TestAccessLogAllocations(t *testing.T) {
	tests := []struct {
		name   string
		sample int
	}{
		{"sampled out", 1000},
		{"every field written", 1},
	}
	for _, tt := range tests {
		a := newLog(t, io.Discard, AccessLogOptions{Sample: tt.sample})
		e := fullEntry
		e.Err = "upstream refused"
		if tt.sample > 1 {
			e.Status, e.Err = 200, ""
		}
		a.Log(&e) // grows the buffers
		if n := testing.AllocsPerRun(1000, func() { a.Log(&e) }); n != 0 {
			t.Errorf("%s: %v allocations per line", tt.name, n)
		}
		_ = a.Close()
	}
}

func BenchmarkAccessLog(b *testing.B) {
	a := newLog(b, io.Discard, AccessLogOptions{Sample: 1})
	defer a.Close()
	e := fullEntry
	b.ReportAllocs()
	for b.Loop() {
		a.Log(&e)
	}
}

func TestProcessLog(t *testing.T) {
	defer zerolog.SetGlobalLevel(zerolog.GlobalLevel())
	tests := []struct {
		level, format string
		wantErr       string
		debugShown    bool
		json          bool
	}{
		{"", "", "", false, true},
		{"debug", "json", "", true, true},
		{"warn", "console", "", false, false},
		{"trace", "json", `"trace"`, false, false},
		{"info", "pretty", `"pretty"`, false, false},
	}
	for _, tt := range tests {
		var out bytes.Buffer // not a terminal: auto is JSON
		p := NewProcessLog(&out)
		err := p.Configure(tt.level, tt.format)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q/%q: err = %v, want one naming %s", tt.level, tt.format, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		log := zerolog.New(p)
		log.Debug().Msg("dbg")
		log.Warn().Msg("wrn")
		got := out.String()
		if strings.Contains(got, "dbg") != tt.debugShown || !strings.Contains(got, "wrn") {
			t.Errorf("%q/%q: logged %q", tt.level, tt.format, got)
		}
		if strings.HasPrefix(got, "{") != tt.json {
			t.Errorf("%q/%q: JSON = %v, want %v: %q", tt.level, tt.format, !tt.json, tt.json, got)
		}
	}
}
