// Package telemetry holds what the gateway reports about the traffic it serves: the access log
// (one zerolog line per request, JSON or human-readable), the process logger's setup (NewLogger),
// Metrics, the registry of counters and gauges that the admin API's /stats reads, and Prom, the
// Prometheus registry it serves at /metrics. Traces (OpenTelemetry, exported over OTLP/HTTP) are the subpackage
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
	// Fields are the fields each line carries, in AccessLogFields' order whatever order they
	// are given in; none means all of them.
	Fields []string
	// Format is "json", "console" (zerolog's human-readable console writer) or "auto"/"":
	// console when Output is a terminal, JSON otherwise.
	Format string
	colour bool // the console format's colours, when Output is a terminal
}

// AccessLogFields are the fields an access-log line may carry, in the order they are written.
// config.AccessLogFields lists the same names for validation (a test keeps the two equal).
var AccessLogFields = [...]string{
	"time",                 // when the line was written (RFC 3339)
	"client",               // the client's address, after server.trusted_proxies
	"host",                 // the Host header
	"method",               // the request method
	"path",                 // the path as routed (before filters rewrote it)
	"query",                // the query string as forwarded (after filters)
	"status",               // the status answered to the client
	"upstream",             // the upstream target's address ("" for a local answer)
	"upstream_status",      // the status the upstream answered (0: none)
	"duration_ms",          // time in the gateway, in milliseconds
	"upstream_duration_ms", // time waiting for the upstream's answers, in milliseconds
	"bytes_in",             // request body bytes
	"bytes_out",            // response body bytes (a streamed body: its declared length)
	"user_agent",           // the User-Agent header
	"request_id",           // the request id header (see RequestIDHeader)
	"trace_id",             // the trace id, when the request is traced
	"consumer",             // the consumer an auth filter identified
	"route",                // the route's name
	"error",                // why the gateway failed the request
}

const (
	fTime = iota
	fClient
	fHost
	fMethod
	fPath
	fQuery
	fStatus
	fUpstream
	fUpstreamStatus
	fDuration
	fUpstreamDuration
	fBytesIn
	fBytesOut
	fUserAgent
	fRequestID
	fTraceID
	fConsumer
	fRoute
	fError
)

// fieldSet is a set of AccessLogFields, by index.
type fieldSet uint32

func (s fieldSet) has(f int) bool { return s&(1<<f) != 0 }

// parseFields returns the set of the named fields; none names every field.
func parseFields(names []string) (fieldSet, error) {
	if len(names) == 0 {
		return 1<<len(AccessLogFields) - 1, nil
	}
	var s fieldSet
next:
	for _, n := range names {
		for i, f := range AccessLogFields {
			if n == f {
				s |= 1 << i
				continue next
			}
		}
		return 0, fmt.Errorf("unknown access log field %q", n)
	}
	return s, nil
}

// AccessLog writes one line per request. Lines are buffered in memory and written by one
// goroutine (see asyncWriter), so a slow disk or pipe never blocks request handling; when the
// buffer is full lines are dropped and counted rather than stalling traffic.
type AccessLog struct {
	log    zerolog.Logger
	sample uint64
	seq    atomic.Uint64
	idHdr  string
	fields fieldSet
	out    *asyncWriter
}

// NewAccessLog opens the output and starts the writer goroutine. Close stops it.
func NewAccessLog(o AccessLogOptions) (*AccessLog, error) {
	var w io.Writer
	var f *os.File
	switch o.Output {
	case "", "stdout":
		f = os.Stdout
		w = writerOnly{f} // the writer closes its output; never close stdout
	case "stderr":
		f = os.Stderr
		w = writerOnly{f}
	default:
		var err error
		if f, err = os.OpenFile(o.Output, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err != nil {
			return nil, fmt.Errorf("open access log: %w", err)
		}
		w = f
	}
	if o.Format == "" || o.Format == FormatAuto {
		o.Format = FormatJSON
		if IsTerminal(f) {
			o.Format = FormatConsole
		}
	}
	o.colour = IsTerminal(f)
	a, err := NewAccessLogWriter(w, o)
	if err != nil && w == f {
		_ = f.Close()
	}
	return a, err
}

type writerOnly struct{ io.Writer }

// NewAccessLogWriter logs to w; Close closes w if it is an io.Closer. Format "auto" is JSON
// here: w is not known to be a terminal.
func NewAccessLogWriter(w io.Writer, o AccessLogOptions) (*AccessLog, error) {
	fields, err := parseFields(o.Fields)
	if err != nil {
		return nil, err
	}
	a := &AccessLog{sample: uint64(max(o.Sample, 1)), idHdr: o.RequestIDHeader, fields: fields}
	if a.idHdr == "" {
		a.idHdr = "X-Request-Id"
	}
	a.out = newAsyncWriter(w)
	var out io.Writer = a.out
	if o.Format == FormatConsole {
		// The console writer takes one JSON line per Write and rewrites it for people; it
		// allocates, which a terminal's pace never notices. It writes into the asynchronous
		// buffer, so a stalled terminal still never blocks a request.
		// Access lines have no level; the time is there only when selected.
		exclude := []string{zerolog.LevelFieldName}
		if !fields.has(fTime) {
			exclude = append(exclude, zerolog.TimestampFieldName)
		}
		out = consoleWriter(out, o.colour, exclude...)
	}
	ctx := zerolog.New(out).With()
	if fields.has(fTime) {
		ctx = ctx.Timestamp()
	}
	a.log = ctx.Logger()
	return a, nil
}

// Entry is what one access-log line reports. Byte slices may point into the request: Log copies
// what it writes.
type Entry struct {
	Route            string
	Client           []byte // formatted: "192.0.2.7"
	Host             []byte
	Method           []byte
	Path             []byte
	Query            []byte
	Status           int
	Upstream         string
	UpstreamStatus   int
	Duration         time.Duration
	UpstreamDuration time.Duration
	BytesIn          int
	BytesOut         int
	UserAgent        []byte
	ID               []byte
	TraceID          []byte // logged only when not empty
	Consumer         string // logged only when not empty
	Err              string // logged only when not empty
}

// IDHeader is the request header the request id is read from.
func (a *AccessLog) IDHeader() string { return a.idHdr }

// Log writes e unless sampling skips it. It allocates nothing (in JSON).
func (a *AccessLog) Log(e *Entry) {
	failed := e.Status >= 500 || e.Err != ""
	if !failed && a.sample > 1 && a.seq.Add(1)%a.sample != 0 {
		return
	}
	ev := a.log.Log()
	f := a.fields
	if f.has(fClient) {
		ev.Bytes("client", e.Client)
	}
	if f.has(fHost) {
		ev.Bytes("host", e.Host)
	}
	if f.has(fMethod) {
		ev.Bytes("method", e.Method)
	}
	if f.has(fPath) {
		ev.Bytes("path", e.Path)
	}
	if f.has(fQuery) {
		ev.Bytes("query", e.Query)
	}
	if f.has(fStatus) {
		ev.Int("status", e.Status)
	}
	if f.has(fUpstream) {
		ev.Str("upstream", e.Upstream)
	}
	if f.has(fUpstreamStatus) {
		ev.Int("upstream_status", e.UpstreamStatus)
	}
	if f.has(fDuration) {
		ev.Dur("duration_ms", e.Duration)
	}
	if f.has(fUpstreamDuration) {
		ev.Dur("upstream_duration_ms", e.UpstreamDuration)
	}
	if f.has(fBytesIn) {
		ev.Int("bytes_in", e.BytesIn)
	}
	if f.has(fBytesOut) {
		ev.Int("bytes_out", e.BytesOut)
	}
	if f.has(fUserAgent) {
		ev.Bytes("user_agent", e.UserAgent)
	}
	if f.has(fRequestID) {
		ev.Bytes("request_id", e.ID)
	}
	if f.has(fTraceID) && len(e.TraceID) > 0 {
		ev.Bytes("trace_id", e.TraceID)
	}
	if f.has(fConsumer) && e.Consumer != "" {
		ev.Str("consumer", e.Consumer)
	}
	if f.has(fRoute) {
		ev.Str("route", e.Route)
	}
	if f.has(fError) && e.Err != "" {
		ev.Str("error", e.Err)
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
