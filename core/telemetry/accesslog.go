// Package telemetry holds what the gateway reports about the traffic it serves: the access log
// (one zerolog JSON line per request) and Metrics, the registry of counters and gauges that the
// admin API's /stats reads. Traces (OpenTelemetry, exported over OTLP/HTTP) are the subpackage
// tracing, whose package doc says how a request is traced and what a trace costs.
package telemetry

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// AccessLogOptions configures an AccessLog.
type AccessLogOptions struct {
	// Output is "stdout", "stderr" or a file path (opened for append).
	Output string
	// Sample logs one request in Sample; requests that fail (status >= 500 or a recorded
	// error) are always logged.
	Sample int
	// RequestIDHeader is read from the request to tag each line; "" means X-Request-Id.
	RequestIDHeader string
}

// AccessLog writes one JSON line per request. Lines are buffered in memory and written by one
// goroutine (see asyncWriter), so a slow disk or pipe never blocks request handling; when the
// buffer is full lines are dropped and counted rather than stalling traffic.
type AccessLog struct {
	log    zerolog.Logger
	sample uint64
	seq    atomic.Uint64
	idHdr  string
	out    *asyncWriter
}

// NewAccessLog opens the output and starts the writer goroutine. Close stops it.
func NewAccessLog(o AccessLogOptions) (*AccessLog, error) {
	var w io.Writer
	switch o.Output {
	case "", "stdout":
		w = writerOnly{os.Stdout} // the writer closes its output; never close stdout
	case "stderr":
		w = writerOnly{os.Stderr}
	default:
		f, err := os.OpenFile(o.Output, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open access log: %w", err)
		}
		w = f
	}
	return NewAccessLogWriter(w, o), nil
}

type writerOnly struct{ io.Writer }

// NewAccessLogWriter logs to w; Close closes w if it is an io.Closer.
func NewAccessLogWriter(w io.Writer, o AccessLogOptions) *AccessLog {
	a := &AccessLog{sample: uint64(max(o.Sample, 1)), idHdr: o.RequestIDHeader}
	if a.idHdr == "" {
		a.idHdr = "X-Request-Id"
	}
	a.out = newAsyncWriter(w)
	a.log = zerolog.New(a.out).With().Timestamp().Logger()
	return a
}

// Entry is what one access-log line reports.
type Entry struct {
	Route    string
	Method   []byte
	Path     []byte
	Status   int
	Upstream string
	Duration time.Duration
	BytesIn  int
	BytesOut int
	ID       []byte
	Err      string
}

// IDHeader is the request header the request id is read from.
func (a *AccessLog) IDHeader() string { return a.idHdr }

// Log writes e unless sampling skips it. It allocates nothing.
func (a *AccessLog) Log(e *Entry) {
	failed := e.Status >= 500 || e.Err != ""
	if !failed && a.sample > 1 && a.seq.Add(1)%a.sample != 0 {
		return
	}
	ev := a.log.Log().
		Str("route", e.Route).
		Bytes("method", e.Method).
		Bytes("path", e.Path).
		Int("status", e.Status).
		Str("upstream", e.Upstream).
		Dur("duration_ms", e.Duration).
		Int("bytes_in", e.BytesIn).
		Int("bytes_out", e.BytesOut).
		Bytes("request_id", e.ID)
	if e.Err != "" {
		ev = ev.Str("error", e.Err)
	}
	ev.Send()
}

// Dropped reports how many lines were lost because the writer could not keep up.
func (a *AccessLog) Dropped() uint64 { return a.out.dropped.Load() }

// Close flushes what is buffered and closes the output.
func (a *AccessLog) Close() error {
	if err := a.out.Close(); err != nil {
		return fmt.Errorf("close access log: %w", err)
	}
	return nil
}
