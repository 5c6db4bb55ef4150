package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/weir-gateway/weir/core/httpsyntax"
)

// Tracing configures OpenTelemetry tracing: spans for each request, its filters and plugins and
// its upstream calls, exported over OTLP/HTTP to a collector. The section applies at start only,
// like the listeners: a reload that changes it is reported and otherwise ignored.
type Tracing struct {
	Enabled bool `mapstructure:"enabled" json:"enabled"`
	// Endpoint is the collector's OTLP/HTTP traces URL: http://127.0.0.1:4318/v1/traces.
	Endpoint string `mapstructure:"endpoint" json:"endpoint"`
	// SampleRatio is the share of new traces recorded (0..1). A request that carries a W3C
	// traceparent follows its caller's decision instead (parent-based sampling).
	SampleRatio float64 `mapstructure:"sample_ratio" json:"sample_ratio"`
	// ServiceName is the service.name resource attribute of every span.
	ServiceName string `mapstructure:"service_name" json:"service_name"`
	// Headers are sent with every export (collector authentication); their values are secret.
	Headers map[string]string `mapstructure:"headers" json:"headers,omitempty"`
	// Timeout bounds one export request to the collector.
	Timeout time.Duration `mapstructure:"timeout" json:"timeout"`
	Batch   TracingBatch  `mapstructure:"batch" json:"batch"`
}

// TracingBatch sizes the queue between requests and the exporter. Spans that find the queue
// full are dropped and counted, never waited for.
type TracingBatch struct {
	// MaxSize is the most spans one export carries.
	MaxSize int `mapstructure:"max_size" json:"max_size"`
	// Interval is the longest a span waits in the queue before it is exported.
	Interval time.Duration `mapstructure:"interval" json:"interval"`
	// MaxQueue is how many ended spans may wait for export.
	MaxQueue int `mapstructure:"max_queue" json:"max_queue"`
}

// DefaultTracing is the tracing section of a config that does not say otherwise: off, and once
// on, every new trace sampled, to a collector on this host.
func DefaultTracing() Tracing {
	return Tracing{
		Endpoint:    "http://127.0.0.1:4318/v1/traces",
		SampleRatio: 1,
		ServiceName: "weir",
		Timeout:     10 * time.Second,
		Batch:       TracingBatch{MaxSize: 512, Interval: 5 * time.Second, MaxQueue: 2048},
	}
}

func decodeTracing(p *problems, sec any, c *Config) {
	c.Tracing = DefaultTracing()
	if sec == nil {
		return
	}
	if _, ok := sec.(map[string]any); !ok {
		p.add("tracing", "", "", fmt.Errorf("expected a mapping, got %s", yamlKind(sec)))
		return
	}
	if err := decodeInto(sec, &c.Tracing, "tracing"); err != nil {
		p.addAll(err, "", "")
	}
}

func validateTracing(p *problems, t *Tracing) {
	if t.SampleRatio < 0 || t.SampleRatio > 1 || t.SampleRatio != t.SampleRatio {
		p.add("tracing.sample_ratio", "", "", fmt.Errorf("is %v; it must be between 0 and 1 (0.01 samples one new trace in a hundred)", t.SampleRatio))
	}
	if !t.Enabled {
		// Checked once it is turned on; a config built in code leaves the section zero.
		return
	}
	if err := checkCollectorURL(t.Endpoint); err != nil {
		p.add("tracing.endpoint", "", "", err)
	}
	if strings.TrimSpace(t.ServiceName) == "" {
		p.add("tracing.service_name", "", "", errors.New("is empty; spans need a service name"))
	}
	for _, name := range sortedKeys(t.Headers) {
		if !httpsyntax.IsToken(name) {
			p.add("tracing.headers."+name, "", "", fmt.Errorf("%q is not a valid header name", name))
		} else if httpsyntax.BadValueByte(t.Headers[name]) >= 0 {
			p.add("tracing.headers."+name, "", "", errors.New("the value holds characters a header value may not (control characters or a line break)"))
		}
	}
	if t.Timeout <= 0 {
		p.add("tracing.timeout", "", "", fmt.Errorf("is %s; it must be above 0", t.Timeout))
	}
	if t.Batch.MaxSize < 1 {
		p.add("tracing.batch.max_size", "", "", fmt.Errorf("is %d; it must be at least 1", t.Batch.MaxSize))
	}
	if t.Batch.MaxQueue < 1 {
		p.add("tracing.batch.max_queue", "", "", fmt.Errorf("is %d; it must be at least 1", t.Batch.MaxQueue))
	} else if t.Batch.MaxSize > t.Batch.MaxQueue {
		p.add("tracing.batch.max_size", "", "", fmt.Errorf("is %d, above tracing.batch.max_queue (%d); a batch cannot be larger than the queue", t.Batch.MaxSize, t.Batch.MaxQueue))
	}
	if t.Batch.Interval <= 0 {
		p.add("tracing.batch.interval", "", "", fmt.Errorf("is %s; it must be above 0", t.Batch.Interval))
	}
}

// checkCollectorURL accepts an absolute http or https URL with a host: where OTLP/HTTP spans
// are posted.
func checkCollectorURL(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("is empty; set the collector's OTLP/HTTP URL, for example http://127.0.0.1:4318/v1/traces")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("is not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q must start with http:// or https:// (the OTLP/HTTP traces URL, for example http://127.0.0.1:4318/v1/traces)", s)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must not have a query or fragment", s)
	}
	return nil
}

// redactedHeaders is t.Headers with every value hidden: they exist to authenticate to the
// collector, whatever their names.
func (t *Tracing) redactedHeaders() map[string]string {
	if t.Headers == nil {
		return nil
	}
	out := make(map[string]string, len(t.Headers))
	for k, v := range t.Headers {
		out[k] = v
		if v != "" {
			out[k] = Redaction
		}
	}
	return out
}
