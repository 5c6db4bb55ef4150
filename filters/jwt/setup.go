package jwt

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/filters/internal/httpcheck"
)

// Name is the name configs use for this filter.
const Name = "jwt"

func init() { filter.Register(Name, New) }

// Config is the filter's config.
type Config struct {
	// Issuers are the token issuers the route trusts, each with its keys and algorithms.
	Issuers []IssuerConfig `mapstructure:"issuers"`
	// From lists where the token is looked for, in order: "header:<name>" (Authorization takes
	// the Bearer scheme), "cookie:<name>", "query:<name>". Default: header:Authorization.
	From []string `mapstructure:"from"`
	// Leeway tolerates clock skew on exp, nbf and iat. Default 30s.
	Leeway *time.Duration `mapstructure:"leeway"`
	// Require lists claims every token must carry. Default [exp].
	Require *[]string `mapstructure:"require"`
	// ForwardClaims maps a claim to the request header that carries it upstream.
	ForwardClaims map[string]string `mapstructure:"forward_claims"`
	// MaxTokenBytes refuses longer tokens before any decoding. Default 8KiB.
	MaxTokenBytes config.Size `mapstructure:"max_token_bytes"`
	// HideCredentials removes the token from the request before it goes upstream.
	HideCredentials bool `mapstructure:"hide_credentials"`
	// ConsumerRequired refuses valid tokens that identify no declared consumer.
	ConsumerRequired bool `mapstructure:"consumer_required"`
	// CacheSize bounds how many verified tokens are remembered; 0 verifies every request.
	CacheSize *int `mapstructure:"cache_size"`
	// Realm is named in WWW-Authenticate.
	Realm string `mapstructure:"realm"`
}

// IssuerConfig is one trusted issuer.
type IssuerConfig struct {
	// Issuer is the exact iss claim of its tokens.
	Issuer string `mapstructure:"issuer"`
	// Audiences, when given, require an aud claim naming at least one of them.
	Audiences []string `mapstructure:"audiences"`
	// Algorithms is the issuer's allow-list; a token with another alg is refused unread.
	Algorithms []string `mapstructure:"algorithms"`
	// Exactly one key source.
	JWKSURL  string      `mapstructure:"jwks_url"`
	JWKSFile string      `mapstructure:"jwks_file"`
	Keys     []KeyConfig `mapstructure:"keys"`
	// JWKS tunes the fetching of jwks_url.
	JWKS JWKSConfig `mapstructure:"jwks"`
}

// JWKSConfig tunes a JWKS URL's background refresh.
type JWKSConfig struct {
	MinRefresh      time.Duration `mapstructure:"min_refresh"`
	MaxRefresh      time.Duration `mapstructure:"max_refresh"`
	RefreshThrottle time.Duration `mapstructure:"refresh_throttle"`
	Timeout         time.Duration `mapstructure:"timeout"`
	MaxBytes        config.Size   `mapstructure:"max_bytes"`
}

// KeyConfig is one inline key: a public key in PEM for RS/PS/ES/EdDSA, or an HMAC secret.
type KeyConfig struct {
	Kid            string `mapstructure:"kid"`
	Alg            string `mapstructure:"alg"`
	PEM            string `mapstructure:"pem"`
	PEMFile        string `mapstructure:"pem_file"`
	Secret         string `mapstructure:"secret"`
	SecretFile     string `mapstructure:"secret_file"`
	SecretEnv      string `mapstructure:"secret_env"`
	SecretEncoding string `mapstructure:"secret_encoding"`
}

// Defaults.
const (
	defaultLeeway    = 30 * time.Second
	maxLeeway        = 5 * time.Minute
	defaultMaxToken  = 8 << 10
	maxMaxToken      = 64 << 10
	defaultCacheSize = 10000
	defaultMinRef    = time.Minute
	defaultMaxRef    = time.Hour
	defaultThrottle  = 30 * time.Second
	defaultTimeout   = 5 * time.Second
	defaultJWKSBytes = 1 << 20
)

// New is the filter's factory. Everything is parsed and checked here: keys, algorithms,
// sources and header names; a JWKS URL's fetcher is shared through env.Shared.
func New(env filter.Env, decode filter.Decoder) (filter.Filter, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	f := &Filter{
		decisions: telemetry.NewAuthDecisions(env.Route, env.Filter),
		issuers:   map[string]*issuer{},
		consumers: env.Consumers,
		now:       time.Now,
		hide:      cfg.HideCredentials,
		consReq:   cfg.ConsumerRequired,
		log:       env.Log,
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
		}
	}()

	f.leeway = defaultLeeway
	if cfg.Leeway != nil {
		if *cfg.Leeway < 0 || *cfg.Leeway > maxLeeway {
			return nil, fmt.Errorf("leeway %s is outside 0s to %s", *cfg.Leeway, maxLeeway)
		}
		f.leeway = *cfg.Leeway
	}
	require := []string{"exp"}
	if cfg.Require != nil {
		require = *cfg.Require
	}
	var reqExp, reqNbf bool
	for _, r := range require {
		switch r {
		case "":
			return nil, errors.New("require: empty claim name")
		case "exp":
			reqExp = true
		case "nbf":
			reqNbf = true
		case "iss":
			// always required: it picks the issuer
		default:
			f.require = append(f.require, r)
		}
	}

	f.maxToken = defaultMaxToken
	if cfg.MaxTokenBytes != 0 {
		if cfg.MaxTokenBytes < 16 || cfg.MaxTokenBytes > maxMaxToken {
			return nil, fmt.Errorf("max_token_bytes %s is outside 16 to 64KiB", cfg.MaxTokenBytes)
		}
		f.maxToken = int(cfg.MaxTokenBytes)
	}
	size := defaultCacheSize
	if cfg.CacheSize != nil {
		if *cfg.CacheSize < 0 || *cfg.CacheSize > 1<<22 {
			return nil, fmt.Errorf("cache_size %d is outside 0 to %d", *cfg.CacheSize, 1<<22)
		}
		size = *cfg.CacheSize
	}
	f.cache = newTokenCache(size)

	if err := f.sourcesFrom(cfg.From); err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	if err := f.forwardFrom(cfg.ForwardClaims); err != nil {
		return nil, fmt.Errorf("forward_claims: %w", err)
	}
	if strings.ContainsAny(cfg.Realm, "\"\\") || httpcheck.Value(cfg.Realm) != nil {
		return nil, errors.New("realm: must not contain quotes, backslashes or control bytes")
	}
	f.wwwMissing, f.wwwInvalid, f.wwwRequest = challenges(cfg.Realm)

	if len(cfg.Issuers) == 0 {
		return nil, errors.New("issuers: at least one issuer is required")
	}
	for i, ic := range cfg.Issuers {
		is, err := f.buildIssuer(env, ic, reqExp, reqNbf)
		if err != nil {
			return nil, fmt.Errorf("issuers[%d]: %w", i, err)
		}
		if f.issuers[is.name] != nil {
			return nil, fmt.Errorf("issuers[%d]: issuer %q is listed twice", i, is.name)
		}
		f.issuers[is.name] = is
	}
	ok = true
	return f, nil
}

func challenges(realm string) (missing, invalid, request []byte) {
	base := "Bearer"
	sep := " "
	if realm != "" {
		base += ` realm="` + realm + `"`
		sep = ", "
	}
	return []byte(base), []byte(base + sep + `error="invalid_token"`), []byte(base + sep + `error="invalid_request"`)
}

func (f *Filter) sourcesFrom(from []string) error {
	if len(from) == 0 {
		from = []string{"header:Authorization"}
	}
	seen := map[string]bool{}
	for _, s := range from {
		kind, name, ok := strings.Cut(s, ":")
		if !ok || name == "" {
			return fmt.Errorf("%q: want header:<name>, cookie:<name> or query:<name>", s)
		}
		src := source{name: name}
		switch kind {
		case "header":
			canon, err := httpcheck.Name(name)
			if err != nil {
				return err
			}
			src.kind, src.name = srcHeader, canon
			src.bearer = canon == "Authorization" || canon == "Proxy-Authorization"
		case "cookie":
			if _, err := httpcheck.Name(name); err != nil {
				return fmt.Errorf("%q: invalid cookie name", s)
			}
			src.kind = srcCookie
		case "query":
			if strings.ContainsAny(name, "&=#?% +") {
				return fmt.Errorf("%q: invalid query parameter name", s)
			}
			src.kind = srcQuery
		default:
			return fmt.Errorf("%q: want header:<name>, cookie:<name> or query:<name>", s)
		}
		id := kind + ":" + src.name
		if seen[id] {
			return fmt.Errorf("%q is listed twice", s)
		}
		seen[id] = true
		src.nameB = []byte(src.name)
		f.sources = append(f.sources, src)
	}
	return nil
}

func (f *Filter) forwardFrom(m map[string]string) error {
	claims := make([]string, 0, len(m))
	for c := range m {
		claims = append(claims, c)
	}
	slices.Sort(claims) // a stable order on the wire
	seen := map[string]string{}
	for _, c := range claims {
		if c == "" {
			return errors.New("empty claim name")
		}
		canon, err := httpcheck.EditableName(m[c])
		if err != nil {
			return fmt.Errorf("claim %q: %w", c, err)
		}
		if canon == "Authorization" || canon == "Cookie" || canon == "Host" {
			return fmt.Errorf("claim %q: header %q cannot carry a claim", c, canon)
		}
		if prev, dup := seen[canon]; dup {
			return fmt.Errorf("claims %q and %q both forward to header %q", prev, c, canon)
		}
		seen[canon] = c
		f.forward = append(f.forward, forward{claim: c, name: []byte(canon)})
	}
	return nil
}

func (f *Filter) buildIssuer(env filter.Env, ic IssuerConfig, reqExp, reqNbf bool) (*issuer, error) {
	if ic.Issuer == "" {
		return nil, errors.New("issuer is required (the exact iss claim of its tokens)")
	}
	is := &issuer{name: ic.Issuer}
	if len(ic.Algorithms) == 0 {
		return nil, errors.New("algorithms is required: list the algorithms this issuer signs with (RS256, ES256, …)")
	}
	var hmac, asym bool
	for _, a := range ic.Algorithms {
		info, ok := algs[a]
		if !ok {
			if strings.EqualFold(a, "none") {
				return nil, errors.New("algorithms: \"none\" (unsigned tokens) is never accepted")
			}
			return nil, fmt.Errorf("algorithms: %q is not supported (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384/512, EdDSA)", a)
		}
		if slices.Contains(is.algs, a) {
			return nil, fmt.Errorf("algorithms: %q is listed twice", a)
		}
		if info.fam == famHMAC {
			hmac = true
		} else {
			asym = true
		}
		is.algs = append(is.algs, a)
	}
	if hmac && asym {
		// One issuer signs with a shared secret or with a private key, not both; mixing them
		// in one list is how HS/RS confusion creeps into configs.
		return nil, errors.New("algorithms: HMAC (HS*) and public-key algorithms cannot share an issuer")
	}
	for _, a := range ic.Audiences {
		if a == "" {
			return nil, errors.New("audiences: empty audience")
		}
	}

	n := 0
	for _, set := range []bool{ic.JWKSURL != "", ic.JWKSFile != "", len(ic.Keys) > 0} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("give exactly one of jwks_url, jwks_file and keys")
	}
	if ic.JWKSURL == "" && ic.JWKS != (JWKSConfig{}) {
		return nil, errors.New("jwks: settings apply to jwks_url only")
	}
	var keys []*key
	switch {
	case ic.JWKSURL != "":
		if hmac {
			return nil, errors.New("jwks_url: HMAC secrets are never fetched from a URL; use keys or jwks_file")
		}
		if err := f.attachFetcher(env, is, ic); err != nil {
			return nil, err
		}
	case ic.JWKSFile != "":
		data, err := os.ReadFile(env.Path(ic.JWKSFile))
		if err != nil {
			return nil, fmt.Errorf("jwks_file: %w", err)
		}
		var skipped []error
		keys, skipped, err = parseJWKS(data, true)
		if err != nil {
			return nil, fmt.Errorf("jwks_file %q: %w", ic.JWKSFile, err)
		}
		if len(skipped) > 0 {
			return nil, fmt.Errorf("jwks_file %q: %w", ic.JWKSFile, errors.Join(skipped...))
		}
	default:
		for i, kc := range ic.Keys {
			k, err := buildKey(env, kc)
			if err != nil {
				return nil, fmt.Errorf("keys[%d]: %w", i, err)
			}
			keys = append(keys, k)
		}
	}
	if is.fetcher == nil {
		kids := map[string]bool{}
		for i, k := range keys {
			if k.alg != "" && !slices.Contains(is.algs, k.alg) {
				return nil, fmt.Errorf("key %d: alg %q is not in algorithms", i, k.alg)
			}
			if !slices.ContainsFunc(is.algs, k.fits) {
				return nil, fmt.Errorf("key %d: suits none of the algorithms %v (wrong type, curve or a secret too short)", i, is.algs)
			}
			if k.kid != "" && kids[k.kid] {
				return nil, fmt.Errorf("key %d: kid %q is used twice", i, k.kid)
			}
			kids[k.kid] = true
		}
		if len(keys) == 0 {
			return nil, errors.New("no keys")
		}
		is.static = newKeySet(keys)
	}

	opts := []gojwt.ParserOption{
		gojwt.WithValidMethods(is.algs),
		gojwt.WithJSONNumber(),
		gojwt.WithStrictDecoding(),
		gojwt.WithLeeway(f.leeway),
		gojwt.WithTimeFunc(func() time.Time { return f.now() }),
		gojwt.WithIssuedAt(),
		gojwt.WithIssuer(is.name),
	}
	if reqExp {
		opts = append(opts, gojwt.WithExpirationRequired())
	}
	if reqNbf {
		opts = append(opts, gojwt.WithNotBeforeRequired())
	}
	if len(ic.Audiences) > 0 {
		opts = append(opts, gojwt.WithAudience(ic.Audiences...))
	}
	is.parser = gojwt.NewParser(opts...)
	return is, nil
}

func (f *Filter) attachFetcher(env filter.Env, is *issuer, ic IssuerConfig) error {
	u, err := url.Parse(ic.JWKSURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("jwks_url: want an http:// or https:// URL with a host")
	}
	if u.User != nil {
		return errors.New("jwks_url: credentials in the URL are not supported")
	}
	j := ic.JWKS
	o := fetchOptions{
		minRefresh: or(j.MinRefresh, defaultMinRef),
		maxRefresh: or(j.MaxRefresh, defaultMaxRef),
		throttle:   or(j.RefreshThrottle, defaultThrottle),
		timeout:    or(j.Timeout, defaultTimeout),
		maxBytes:   int64(j.MaxBytes),
	}
	if o.maxBytes == 0 {
		o.maxBytes = defaultJWKSBytes
	}
	if o.minRefresh < 0 || o.maxRefresh < 0 || o.throttle < 0 || o.timeout < 0 || o.maxBytes < 0 {
		return errors.New("jwks: durations and sizes must not be negative")
	}
	if o.minRefresh > o.maxRefresh {
		return fmt.Errorf("jwks: min_refresh %s is above max_refresh %s", o.minRefresh, o.maxRefresh)
	}
	create := func() (io.Closer, error) { return newFetcher(ic.JWKSURL, o, env.Log), nil }
	if env.Shared == nil {
		fc, _ := create()
		is.fetcher = fc.(*fetcher)
		f.closers = append(f.closers, fc.Close)
		return nil
	}
	v, release, err := env.Shared.Acquire("jwt.jwks "+ic.JWKSURL+" "+o.String(), create)
	if err != nil {
		return fmt.Errorf("jwks_url: %w", err)
	}
	is.fetcher = v.(*fetcher)
	f.closers = append(f.closers, release)
	return nil
}

func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func buildKey(env filter.Env, kc KeyConfig) (*key, error) {
	n := 0
	for _, s := range []string{kc.PEM, kc.PEMFile, kc.Secret, kc.SecretFile, kc.SecretEnv} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("give exactly one of pem, pem_file, secret, secret_file and secret_env")
	}
	if kc.Alg != "" {
		if _, ok := algs[kc.Alg]; !ok {
			return nil, fmt.Errorf("alg %q is not supported", kc.Alg)
		}
	}
	var k *key
	switch {
	case kc.PEM != "" || kc.PEMFile != "":
		data := []byte(kc.PEM)
		if kc.PEMFile != "" {
			var err error
			if data, err = os.ReadFile(env.Path(kc.PEMFile)); err != nil {
				return nil, fmt.Errorf("pem_file: %w", err)
			}
		}
		var err error
		if k, err = parsePEM(data); err != nil {
			return nil, err
		}
		if kc.SecretEncoding != "" {
			return nil, errors.New("secret_encoding applies to secrets only")
		}
	default:
		raw := kc.Secret
		switch {
		case kc.SecretFile != "":
			b, err := os.ReadFile(env.Path(kc.SecretFile))
			if err != nil {
				return nil, fmt.Errorf("secret_file: %w", err)
			}
			raw = strings.TrimRight(string(b), "\r\n")
		case kc.SecretEnv != "":
			v, ok := os.LookupEnv(kc.SecretEnv)
			if !ok || v == "" {
				return nil, fmt.Errorf("secret_env: environment variable %q is not set", kc.SecretEnv)
			}
			raw = v
		}
		secret := []byte(raw)
		switch kc.SecretEncoding {
		case "", "raw":
		case "base64url":
			b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(raw, "="))
			if err != nil {
				return nil, errors.New("secret is not valid base64url") // never quote it
			}
			secret = b
		case "base64":
			b, err := base64.StdEncoding.DecodeString(raw)
			if err != nil {
				return nil, errors.New("secret is not valid base64")
			}
			secret = b
		default:
			return nil, fmt.Errorf("secret_encoding %q: want raw, base64 or base64url", kc.SecretEncoding)
		}
		if len(secret) < 32 {
			return nil, fmt.Errorf("secret has %d bytes; HMAC needs at least 32 (64 for HS512)", len(secret))
		}
		k = &key{fam: famHMAC, pub: secret}
	}
	k.kid, k.alg = kc.Kid, kc.Alg
	if k.alg != "" && !k.fits(k.alg) {
		return nil, fmt.Errorf("alg %q does not suit this key", k.alg)
	}
	return k, nil
}
