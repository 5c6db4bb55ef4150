package respond

import (
	"fmt"
	"net/textproto"
	"sort"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/filters/internal/httpcheck"
)

// Name is the name configs use for this filter.
const Name = "respond"

func init() { filter.Register(Name, New) }

// Config is the filter's config.
type Config struct {
	// Status is the response status, 200 to 599.
	Status int `mapstructure:"status"`
	// Body is sent as is; empty sends no body.
	Body string `mapstructure:"body"`
	// ContentType is the Content-Type of a non-empty body.
	ContentType string `mapstructure:"content_type"`
	// Headers are set on the response, one value each.
	Headers map[string]any `mapstructure:"headers"`
}

// defaultContentType labels a body given without a content_type: a plain message is the
// common case (a maintenance note, "forbidden"), and sending none lets browsers sniff.
const defaultContentType = "text/plain; charset=utf-8"

// New is the filter's factory: it validates the config and turns every name, value and the body
// into the byte slices the hot path hands to fasthttp, so a request only copies bytes.
func New(_ filter.Env, decode filter.Decoder) (filter.Filter, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		// Returned as is: its *config.Error values carry key paths the engine completes with
		// the file, route and filter.
		return nil, err
	}
	if cfg.Status == 0 {
		return nil, fmt.Errorf("status is required (200 to 599)")
	}
	if cfg.Status < 200 || cfg.Status > 599 {
		// 1xx are interim answers that a final response must follow; a filter cannot send one.
		return nil, fmt.Errorf("status %d is not a final status (200 to 599)", cfg.Status)
	}
	f := &Filter{status: cfg.Status}
	if cfg.Body != "" {
		if noBody(cfg.Status) {
			return nil, fmt.Errorf("status %d never carries a body; remove body", cfg.Status)
		}
		f.body = []byte(cfg.Body)
		ct := cfg.ContentType
		if ct == "" {
			ct = defaultContentType
		}
		if err := httpcheck.Value(ct); err != nil {
			return nil, fmt.Errorf("content_type: %w", err)
		}
		f.contentType = []byte(ct)
	} else if cfg.ContentType != "" {
		return nil, fmt.Errorf("content_type %q given without a body", cfg.ContentType)
	}

	names := make([]string, 0, len(cfg.Headers))
	seen := map[string]string{}
	for n := range cfg.Headers {
		canon, err := checkName(n)
		if err != nil {
			return nil, fmt.Errorf("headers: %w", err)
		}
		if prev, dup := seen[canon]; dup {
			// Both spellings name the same header; which one would win is arbitrary.
			return nil, fmt.Errorf("headers: header %q given twice (as %q and %q)", canon, prev, n)
		}
		seen[canon] = n
		names = append(names, n)
	}
	// Sorted so the order on the wire never depends on Go's map iteration order.
	sort.Slice(names, func(i, j int) bool {
		return textproto.CanonicalMIMEHeaderKey(names[i]) < textproto.CanonicalMIMEHeaderKey(names[j])
	})
	for _, n := range names {
		v, ok := cfg.Headers[n].(string)
		if !ok {
			// A YAML number or boolean would be re-spelled by the parser (1.10 becomes 1.1).
			// Not quoted: header values may be credentials.
			return nil, fmt.Errorf("headers: header %q: value must be a string (quote it)", n)
		}
		if err := httpcheck.Value(v); err != nil {
			return nil, fmt.Errorf("headers: header %q: %w", n, err)
		}
		f.headers = append(f.headers, pair{name: []byte(n), value: []byte(v)})
	}
	return f, nil
}

// checkName validates a header name and returns its canonical spelling. Content-Type has its
// own key, so the body and its type are checked together.
func checkName(n string) (string, error) {
	canon, err := httpcheck.EditableName(n)
	if err == nil && canon == "Content-Type" {
		return "", fmt.Errorf("header %q: use content_type", n)
	}
	return canon, err
}

func noBody(status int) bool {
	return status == 204 || status == 304
}
