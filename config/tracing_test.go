package config

import (
	"strings"
	"testing"
	"time"
)

func TestTracingDecode(t *testing.T) {
	c, err := Parse("test.yaml", []byte(minimal+`tracing:
  enabled: true
  endpoint: https://otel.example:4318/v1/traces
  sample_ratio: 0.25
  service_name: edge
  headers: { X-Collector-Token: s3cr3t-v4lue }
  timeout: 2s
  batch: { max_size: 100, interval: 1s, max_queue: 1000 }
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Tracing{Enabled: true, Endpoint: "https://otel.example:4318/v1/traces", SampleRatio: 0.25,
		ServiceName: "edge", Headers: map[string]string{"X-Collector-Token": "s3cr3t-v4lue"}, Timeout: 2 * time.Second,
		Batch: TracingBatch{MaxSize: 100, Interval: time.Second, MaxQueue: 1000}}
	got := c.Tracing
	if got.Enabled != want.Enabled || got.Endpoint != want.Endpoint || got.SampleRatio != want.SampleRatio ||
		got.ServiceName != want.ServiceName || got.Timeout != want.Timeout || got.Batch != want.Batch ||
		len(got.Headers) != 1 || got.Headers["X-Collector-Token"] != "s3cr3t-v4lue" {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	// The collector's credentials never show.
	if r := c.Redacted(); r.Tracing.Headers["X-Collector-Token"] != Redaction {
		t.Errorf("redacted headers: %v", r.Tracing.Headers)
	}
	if c.Tracing.Headers["X-Collector-Token"] != "s3cr3t-v4lue" {
		t.Errorf("Redacted changed the config")
	}
}

func TestTracingDefaults(t *testing.T) {
	c, err := Parse("test.yaml", []byte(minimal+"tracing: { enabled: true }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Tracing, DefaultTracing(); !got.Enabled || got.Endpoint != want.Endpoint ||
		got.SampleRatio != 1 || got.ServiceName != "weir" || got.Batch != want.Batch || got.Timeout != want.Timeout {
		t.Errorf("got %+v", got)
	}
	c, err = Parse("test.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Tracing.Enabled {
		t.Error("tracing is on without being asked for")
	}
}

func TestTracingErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"unknown key", "tracing: { enabled: true, sampler: 1 }", `tracing: unknown key "sampler"`},
		{"unknown batch key", "tracing: { batch: { size: 1 } }", `tracing.batch: unknown key "size"`},
		{"not a mapping", "tracing: on", `tracing: expected a mapping`},
		{"ratio above 1", "tracing: { enabled: true, sample_ratio: 1.5 }", `tracing.sample_ratio: is 1.5; it must be between 0 and 1`},
		{"ratio negative", "tracing: { sample_ratio: -0.1 }", `tracing.sample_ratio: is -0.1`},
		{"ratio text", "tracing: { sample_ratio: half }", `tracing.sample_ratio`},
		{"no endpoint", "tracing: { enabled: true, endpoint: '' }", `tracing.endpoint: is empty`},
		{"grpc endpoint", "tracing: { enabled: true, endpoint: 'otel:4317' }", `tracing.endpoint: "otel:4317" must start with http:// or https://`},
		{"no host", "tracing: { enabled: true, endpoint: 'http:///v1/traces' }", `tracing.endpoint: "http:///v1/traces" has no host`},
		{"query", "tracing: { enabled: true, endpoint: 'http://c/v1/traces?x=1' }", `must not have a query`},
		{"no service", "tracing: { enabled: true, service_name: ' ' }", `tracing.service_name: is empty`},
		{"bad header name", "tracing: { enabled: true, headers: { 'X Token': a } }", `tracing.headers.X Token: "X Token" is not a valid header name`},
		{"header line break", "tracing: { enabled: true, headers: { X-Token: \"a\\r\\nb\" } }", `tracing.headers.X-Token: the value holds characters`},
		{"zero timeout", "tracing: { enabled: true, timeout: 0s }", `tracing.timeout: is 0s; it must be above 0`},
		{"zero batch", "tracing: { enabled: true, batch: { max_size: 0 } }", `tracing.batch.max_size: is 0; it must be at least 1`},
		{"batch over queue", "tracing: { enabled: true, batch: { max_size: 10, max_queue: 5 } }", `tracing.batch.max_size: is 10, above tracing.batch.max_queue (5)`},
		{"zero interval", "tracing: { enabled: true, batch: { interval: 0s } }", `tracing.batch.interval: is 0s; it must be above 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.yaml", []byte(minimal+tt.src+"\n"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
		})
	}
}
