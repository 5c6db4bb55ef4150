package compress

import (
	"fmt"
	"strings"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/httpsyntax"
)

// Name is the name configs use for this filter.
const Name = "compress"

func init() { filter.Register(Name, New) }

// Config is the filter's config.
type Config struct {
	// Encodings are the codings offered, in the server's order of preference (a tie between
	// the client's weights goes to the earlier one): zstd, br, gzip.
	Encodings []string `mapstructure:"encodings"`
	// MinSize is the smallest body compressed; smaller ones gain too little to pay the headers.
	MinSize *config.Size `mapstructure:"min_size"`
	// MaxSize is the largest body compressed whole in memory; longer and chunked bodies are
	// compressed as they stream.
	MaxSize *config.Size `mapstructure:"max_size"`
	// ContentTypes are the media types compressed: exact (application/json), a whole top-level
	// type (text/*), or a structured suffix (application/*+json).
	ContentTypes []string `mapstructure:"content_types"`
	// Levels are the compression levels per coding.
	Levels Levels `mapstructure:"levels"`
}

// Levels are per-coding compression levels.
type Levels struct {
	Gzip *int `mapstructure:"gzip"` // 1 (fastest) to 9
	Br   *int `mapstructure:"br"`   // 0 to 11
	Zstd *int `mapstructure:"zstd"` // 1 to 22 (the library maps them onto its four speeds)
}

// Defaults. zstd comes first: it compresses about as well as brotli at a medium level and is
// several times faster, and every browser that sends it also sends br and gzip. brotli level 4
// and gzip level 6 are the usual on-the-fly settings (level 11 brotli is for files compressed
// once, ahead of time).
var (
	defaultEncodings = []string{"zstd", "br", "gzip"}
	defaultLevels    = [numCodings]int{gzipCoding: 6, brCoding: 4, zstdCoding: 3}
	defaultTypes     = []string{
		"text/*",
		"application/json", "application/*+json",
		"application/xml", "application/*+xml",
		"application/javascript", "application/x-javascript", "application/ecmascript",
		"application/wasm", "application/x-ndjson", "application/graphql-response+json",
		"image/svg+xml", "image/x-icon", "image/bmp",
		"font/ttf", "font/otf", "application/vnd.ms-fontobject",
	}
)

// A body up to max_size is compressed whole in memory, which gives it a Content-Length and
// lets the original go out when compression does not pay; 1 MiB covers API answers and pages
// at a bounded cost per response, and longer bodies are compressed as they stream.
const (
	defaultMinSize = 1 << 10
	defaultMaxSize = 1 << 20
)

// New is the filter's factory: it resolves codings and levels, builds one compressor per coding
// (so a level the library refuses fails here) and compiles the content-type list.
func New(env filter.Env, decode filter.Decoder) (filter.Filter, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	f := &Filter{slot: env.Slot, minSize: defaultMinSize, maxSize: defaultMaxSize}
	if cfg.MinSize != nil {
		if *cfg.MinSize < 0 {
			return nil, fmt.Errorf("min_size must not be negative")
		}
		f.minSize = int(*cfg.MinSize)
	}
	if cfg.MaxSize != nil {
		if *cfg.MaxSize <= 0 {
			return nil, fmt.Errorf("max_size must be positive")
		}
		f.maxSize = int(*cfg.MaxSize)
	}
	if f.minSize > f.maxSize {
		return nil, fmt.Errorf("min_size (%d) is larger than max_size (%d)", f.minSize, f.maxSize)
	}

	names := cfg.Encodings
	if names == nil {
		names = defaultEncodings
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("encodings is empty: list at least one of zstd, br, gzip")
	}
	levels := defaultLevels
	for c, l := range map[coding]*int{gzipCoding: cfg.Levels.Gzip, brCoding: cfg.Levels.Br, zstdCoding: cfg.Levels.Zstd} {
		if l != nil {
			levels[c] = *l
		}
	}
	if err := checkLevels(levels); err != nil {
		return nil, err
	}
	for _, n := range names {
		c := codingByName(n)
		if c == none {
			return nil, fmt.Errorf("encodings: unknown coding %q (want zstd, br or gzip)", n)
		}
		if f.enc[c] != nil {
			return nil, fmt.Errorf("encodings: %q listed twice", n)
		}
		e, err := newEncoders(c, levels[c])
		if err != nil {
			return nil, fmt.Errorf("levels: %w", err)
		}
		f.enc[c] = e
		f.prefs = append(f.prefs, c)
	}

	types := cfg.ContentTypes
	if types == nil {
		types = defaultTypes
	}
	if len(types) == 0 {
		return nil, fmt.Errorf("content_types is empty: nothing would be compressed")
	}
	for _, t := range types {
		r, err := parseTypeRule(t)
		if err != nil {
			return nil, fmt.Errorf("content_types: %w", err)
		}
		f.types = append(f.types, r)
	}
	return f, nil
}

func codingByName(n string) coding {
	for c := gzipCoding; c < numCodings; c++ {
		if strings.EqualFold(n, codingNames[c]) {
			return c
		}
	}
	return none
}

func checkLevels(l [numCodings]int) error {
	switch {
	case l[gzipCoding] < 1 || l[gzipCoding] > 9:
		return fmt.Errorf("levels: gzip level %d is outside 1 to 9", l[gzipCoding])
	case l[brCoding] < 0 || l[brCoding] > 11:
		return fmt.Errorf("levels: br level %d is outside 0 to 11", l[brCoding])
	case l[zstdCoding] < 1 || l[zstdCoding] > 22:
		return fmt.Errorf("levels: zstd level %d is outside 1 to 22", l[zstdCoding])
	}
	return nil
}

// typeRule matches a media type (lower case, without parameters): exactly, by its top-level
// type (prefix "text/"), or by a structured suffix within a top-level type ("application/"
// and "+json").
type typeRule struct {
	exact, prefix, suffix string
}

func parseTypeRule(s string) (typeRule, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	top, sub, ok := strings.Cut(t, "/")
	if !ok || !httpsyntax.IsToken(top) || top == "*" {
		return typeRule{}, fmt.Errorf("%q is not a media type (type/subtype, type/* or type/*+suffix)", s)
	}
	switch {
	case sub == "*":
		return typeRule{prefix: top + "/"}, nil
	case strings.HasPrefix(sub, "*+") && httpsyntax.IsToken(sub[2:]) && !strings.Contains(sub[2:], "*"):
		return typeRule{prefix: top + "/", suffix: sub[1:]}, nil
	case httpsyntax.IsToken(sub) && !strings.Contains(sub, "*"):
		return typeRule{exact: t}, nil
	}
	return typeRule{}, fmt.Errorf("%q is not a media type (type/subtype, type/* or type/*+suffix)", s)
}
