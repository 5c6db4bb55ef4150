package requestid

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/filters/internal/httpcheck"
)

// Name is the name configs use for this filter.
const Name = "request-id"

func init() { filter.Register(Name, New) }

// Config is the filter's config. Fields left out keep the defaults set in New.
type Config struct {
	// Header carries the id, on the upstream request and on the response.
	Header string `mapstructure:"header"`
	// TrustIncoming keeps a well-formed id sent by the client instead of generating one.
	TrustIncoming bool `mapstructure:"trust_incoming"`
	// Response copies the id onto the response sent to the client.
	Response bool `mapstructure:"response"`
	// MaxLength is the longest incoming id accepted, in bytes.
	MaxLength int `mapstructure:"max_length"`
	// Format of generated ids: "uuid" (UUIDv4 text, 36 bytes) or "hex" (32 hex digits).
	Format string `mapstructure:"format"`
}

// Limits of max_length: ids longer than a few hundred bytes are rarely ids and bloat every log
// line they end up in.
const (
	defaultMaxLength = 128
	maxMaxLength     = 1024
)

// New is the filter's factory: it applies defaults, decodes and validates the config, and seeds
// the filter's id generator from crypto/rand.
func New(_ filter.Env, decode filter.Decoder) (filter.Filter, error) {
	cfg := Config{
		Header:        "X-Request-Id",
		TrustIncoming: true,
		Response:      true,
		MaxLength:     defaultMaxLength,
		Format:        "uuid",
	}
	if err := decode(&cfg); err != nil {
		// Returned as is: its *config.Error values carry key paths the engine completes
		// with the file, route and filter.
		return nil, err
	}
	if err := checkName(cfg.Header); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if cfg.MaxLength < 1 || cfg.MaxLength > maxMaxLength {
		return nil, fmt.Errorf("max_length %d out of range: want 1 to %d", cfg.MaxLength, maxMaxLength)
	}
	f := &Filter{
		header:        []byte(cfg.Header),
		headerStr:     cfg.Header,
		trustIncoming: cfg.TrustIncoming,
		response:      cfg.Response,
		maxLength:     cfg.MaxLength,
	}
	switch cfg.Format {
	case "uuid":
		f.uuid = true
	case "hex":
	default:
		return nil, fmt.Errorf("format %q: want uuid or hex", cfg.Format)
	}
	var seed [16]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("seed request id generator: %w", err)
	}
	f.gen.init(binary.BigEndian.Uint64(seed[:8]), binary.BigEndian.Uint64(seed[8:]), f.uuid)
	return f, nil
}

// checkName validates a header name as an RFC 9110 token.
func checkName(n string) error {
	canon, err := httpcheck.Name(n)
	if err != nil {
		return err
	}
	switch canon {
	case "Connection", "Content-Length", "Content-Type", "Host", "Keep-Alive", "Proxy-Connection",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Cookie", "Set-Cookie":
		// These carry framing, routing or state that fasthttp treats specially; an id there
		// would break the message rather than label it.
		return fmt.Errorf("header %q cannot carry a request id", n)
	}
	return nil
}
