package redirect

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/weir-gateway/weir/core/filter"
)

// Name is the name configs use for this filter.
const Name = "redirect"

func init() { filter.Register(Name, New) }

// Config is the filter's config.
type Config struct {
	// To is the target template: an absolute URL or a path, with {host}, {hostname}, {path},
	// {query}, {scheme} and the route's path parameters.
	To string `mapstructure:"to"`
	// HTTPS redirects plain-HTTP requests to the same host and path over HTTPS and lets HTTPS
	// requests through: the HTTP-to-HTTPS redirect in one line.
	HTTPS bool `mapstructure:"https"`
	// HTTPSPort is the port of the HTTPS URL with https: true (443, the default, is not written).
	HTTPSPort int `mapstructure:"https_port"`
	// Status is 301, 302, 303, 307 or 308.
	Status int `mapstructure:"status"`
	// KeepQuery appends the request's query to the target (default true; not with {query}).
	KeepQuery *bool `mapstructure:"keep_query"`
}

// Defaults: both keep the method and the body (a POST stays a POST, which 301 and 302 do not
// promise). The HTTPS redirect is permanent; a templated one is temporary, so that a mistaken
// rule is not remembered by every browser that saw it.
const (
	defaultStatus      = 307
	defaultHTTPSStatus = 308
)

// New is the filter's factory: it compiles the template once; a request only copies bytes.
func New(_ filter.Env, decode filter.Decoder) (filter.Filter, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	f := &Filter{status: cfg.Status, keepQuery: cfg.KeepQuery == nil || *cfg.KeepQuery}
	switch {
	case cfg.HTTPS && cfg.To != "":
		return nil, errors.New("give either to or https: true, not both")
	case cfg.HTTPS:
		f.onlyHTTP = true
		to := "https://{hostname}"
		switch {
		case cfg.HTTPSPort < 0 || cfg.HTTPSPort > 65535:
			return nil, fmt.Errorf("https_port %d is not a port", cfg.HTTPSPort)
		case cfg.HTTPSPort != 0 && cfg.HTTPSPort != 443:
			to += ":" + strconv.Itoa(cfg.HTTPSPort)
		}
		cfg.To = to + "{path}"
		if f.status == 0 {
			f.status = defaultHTTPSStatus
		}
	case cfg.To == "":
		return nil, errors.New("to is required (or https: true)")
	case cfg.HTTPSPort != 0:
		return nil, errors.New("https_port is for https: true; write the port in to")
	}
	if f.status == 0 {
		f.status = defaultStatus
	}
	switch f.status {
	case 301, 302, 303, 307, 308:
	default:
		return nil, fmt.Errorf("status %d is not a redirect (301, 302, 303, 307 or 308)", f.status)
	}
	t, err := parseTemplate(cfg.To)
	if err != nil {
		return nil, err
	}
	if t.queryVar {
		if cfg.KeepQuery != nil && *cfg.KeepQuery {
			return nil, fmt.Errorf("to %q places the query with {query}; remove keep_query", cfg.To)
		}
		f.keepQuery = false
	}
	f.tpl = t
	return f, nil
}
