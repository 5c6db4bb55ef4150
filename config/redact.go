package config

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Redaction replaces secret values in Redacted, RedactText and RedactError.
const Redaction = "[redacted]"

// secretWords mark a config key or header name as secret when its name contains one of them,
// ignoring case: "api_key", "client_secret", "Password", "token", "X-Api-Key", "X-Auth-Token".
var secretWords = []string{"token", "secret", "password", "passwd", "key", "credential"}

// secretSegments mark a key or header name as secret when one of its parts (split at "-", "_"
// and ".") is one of them: "Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie",
// "X-Auth". Whole parts only, so that "oauth_issuer" or "authority" stay visible.
var secretSegments = []string{"auth", "authorization", "cookie", "session", "signature"}

// IsSecretKey reports whether the value of a config key or of a header with this name must not
// be shown (admin API, logs, error messages).
func IsSecretKey(name string) bool {
	l := strings.ToLower(name)
	for _, w := range secretWords {
		if strings.Contains(l, w) {
			return true
		}
	}
	for _, part := range strings.FieldsFunc(l, func(r rune) bool { return r == '-' || r == '_' || r == '.' }) {
		if slices.Contains(secretSegments, part) {
			return true
		}
	}
	return false
}

// Credentials that are recognisable by their shape wherever they appear, under any key: in a
// header value, a plugin's config or the text of an error. Each pattern is specific enough that
// ordinary config values (paths, host names, durations, sha256 pins, route names) never match.
var (
	// An HTTP auth scheme and its credentials: "Bearer abc", "Basic dXNlcjpwYXNz". In error
	// text the value may have been quoted with %q, so an escaped tab counts as a space. Basic is
	// only taken when its credentials decode to "user:password", so "Basic realm" survives.
	authScheme = regexp.MustCompile(`(?i)\b(bearer|basic)((?:\s|\\t)+)([A-Za-z0-9\-._~+/]+=*)`)
	// A JSON Web Token: three base64url parts, the first being a JSON object ("eyJ" is `{"`).
	jwt = regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`)
	// Well-known key formats: AWS access key ids, GitHub, Slack and Stripe tokens, PEM
	// private keys.
	knownKey = regexp.MustCompile(`\b(?:(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|xox[abposr]-[A-Za-z0-9-]{10,}|[sr]k_(?:live|test)_[A-Za-z0-9]{16,})\b|-----BEGIN [A-Z ]*PRIVATE KEY-----(?:[^-]|-[^-])*(?:-----END [A-Z ]*PRIVATE KEY-----)?`)
	// URL user info: "https://user:password@host" keeps the user and hides the password.
	userinfo = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@"]+:)([^/\s@"]+)@`)
	// Candidates for a random token: long runs of base64 and base64url characters.
	tokenRun = regexp.MustCompile(`[A-Za-z0-9+/_=-]{24,}`)
)

// highEntropy reports whether s looks like a randomly generated token rather than a word, a
// path or a name: it mixes upper case, lower case and digits, and switches between them often.
// Random base62 switches on about 62% of characters; CamelCase names with a number
// ("TestReload2873465123", "plugins/AddHeader2") on far fewer. Lowercase hex (sha256 pins,
// request ids) is never taken: it is how digests are written, and those must stay visible.
func highEntropy(s string) bool {
	class := func(c byte) int {
		switch {
		case c >= 'a' && c <= 'z':
			return 1
		case c >= 'A' && c <= 'Z':
			return 2
		case c >= '0' && c <= '9':
			return 3
		}
		return 0
	}
	var seen [4]bool
	alnum, switches, prev := 0, 0, 0
	for i := 0; i < len(s); i++ {
		c := class(s[i])
		if c == 0 {
			continue
		}
		seen[c] = true
		if prev != 0 && c != prev {
			switches++
		}
		prev = c
		alnum++
	}
	return seen[1] && seen[2] && seen[3] && alnum >= 20 && switches*3 >= alnum
}

// basicCredentials reports whether b64 is base64 of "user:password".
func basicCredentials(b64 string) bool {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(b64, "="))
	}
	return err == nil && strings.IndexByte(string(raw), ':') > 0
}

// RedactText replaces every credential recognisable by its shape in s (auth schemes with their
// credentials, JWTs, well-known key formats, URL passwords, long random tokens) with
// "[redacted]". It is for text that may quote config values: error messages and log lines.
func RedactText(s string) string {
	s = authScheme.ReplaceAllStringFunc(s, func(m string) string {
		sub := authScheme.FindStringSubmatch(m)
		if strings.EqualFold(sub[1], "basic") && !basicCredentials(sub[3]) {
			return m
		}
		return sub[1] + sub[2] + Redaction
	})
	s = jwt.ReplaceAllString(s, Redaction)
	s = knownKey.ReplaceAllString(s, Redaction)
	s = userinfo.ReplaceAllString(s, "${1}"+Redaction+"@")
	return tokenRun.ReplaceAllStringFunc(s, func(m string) string {
		if highEntropy(m) {
			return Redaction
		}
		return m
	})
}

// LooksSecret reports whether a config value is a credential by its shape alone (see
// RedactText), whatever key it is under.
func LooksSecret(v string) bool {
	return v != "" && RedactText(v) != v
}

// hashKey keys the config hash. It is drawn once per process: the hash only has to compare
// equal within one process (an unchanged reload is a no-op), and being keyed it cannot be
// recomputed from a config, so a logged hash gives no way to test guesses of the secrets the
// config holds. See RATIONALE.md ("Config hash").
var hashKey = func() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic(fmt.Sprintf("config: read random hash key: %v", err))
	}
	return k
}()

// computeHash returns an HMAC-SHA256, under the process's hashKey, of c's canonical JSON.
// encoding/json writes struct fields in declaration order and map keys sorted, so equal configs
// hash equally whatever the key order or formatting of the file; environment overrides are
// included because they are decoded in. Secrets are included too, so that rotating one is a
// change a reload applies; the key is what keeps them from being guessed through the hash.
func (c *Config) computeHash() string {
	cp := *c
	cp.Hash = ""
	b, err := json.Marshal(&cp)
	if err != nil {
		// Only reachable with filter config values JSON cannot encode (NaN, ±Inf). Such a config
		// must still never hash equal to another one, so hash the Go syntax instead.
		b = fmt.Appendf(nil, "%#v", cp)
	}
	m := hmac.New(sha256.New, hashKey)
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil))
}

// Redacted returns a copy of c that is safe to show: the admin token, every filter and plugin
// config value whose key looks secret (see IsSecretKey), every value that looks like a credential
// by its shape (see LooksSecret) and the values of secret headers in route matches are replaced
// by "[redacted]". c is not changed; the copy shares nothing mutable with it.
func (c *Config) Redacted() *Config {
	if c == nil {
		return nil
	}
	cp := *c
	if cp.Server.AdminToken != "" {
		cp.Server.AdminToken = Redaction
	}
	cp.Server.TrustedProxies = slices.Clone(c.Server.TrustedProxies)
	cp.Server.AdminHosts = slices.Clone(c.Server.AdminHosts)
	if c.Upstreams != nil {
		cp.Upstreams = make(map[string]Upstream, len(c.Upstreams))
		for k, u := range c.Upstreams {
			u.Targets = slices.Clone(u.Targets)
			cp.Upstreams[k] = u
		}
	}
	cp.lines = maps.Clone(c.lines)
	if c.Routes != nil {
		cp.Routes = make([]Route, len(c.Routes))
		for i, r := range c.Routes {
			r.Match.Methods = slices.Clone(r.Match.Methods)
			if r.Match.Headers != nil {
				h := make(map[string]string, len(r.Match.Headers))
				for k, v := range r.Match.Headers {
					h[k] = redactString(k, v)
				}
				r.Match.Headers = h
			}
			if r.Filters != nil {
				fs := make([]FilterConfig, len(r.Filters))
				for j, f := range r.Filters {
					fs[j] = FilterConfig{Name: f.Name}
					if f.Config != nil {
						fs[j].Config = redactMap(f.Config)
					}
				}
				r.Filters = fs
			}
			cp.Routes[i] = r
		}
	}
	if c.Plugins != nil {
		// Plugin configs often carry API keys for the guest; redact them like filter configs.
		cp.Plugins = make(map[string]Plugin, len(c.Plugins))
		for k, p := range c.Plugins {
			if p.Config != nil {
				p.Config = redactMap(p.Config)
			}
			cp.Plugins[k] = p
		}
	}
	cp.Consumers = redactConsumers(c.Consumers)
	cp.Tracing.Headers = c.Tracing.redactedHeaders()
	return &cp
}

// redactString is the shown form of the string v found under key.
func redactString(key, v string) string {
	// "*" (any value, in a route match) and "" say nothing about a secret.
	if v != "" && v != "*" && (IsSecretKey(key) || LooksSecret(v)) {
		return Redaction
	}
	return v
}

// redactMap deep-copies m, redacting secret keys at every depth. A secret key hides its whole
// value, whatever its type: a list of API keys or a mapping of credentials.
func redactMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if IsSecretKey(k) && v != nil && v != "" {
			out[k] = Redaction
			continue
		}
		out[k] = redactValue(v)
	}
	return out
}

func redactValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return redactMap(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactValue(e)
		}
		return out
	case string:
		if LooksSecret(x) {
			return Redaction
		}
	}
	return v
}

// minSecretLen is the shortest secret value RedactError hides by its literal text. Shorter
// ones would turn up inside ordinary words of every message; a secret that short protects
// nothing anyway.
const minSecretLen = 4

// secretValues lists the literal secrets of c that no pattern may recognise: the admin token
// and every string under a secret key or secret header name, at any depth of route matches,
// filter configs and plugin configs. Longest first, so that a secret containing another is
// replaced whole.
func (c *Config) secretValues() []string {
	if c == nil {
		return nil
	}
	var out []string
	add := func(s string) {
		if len(s) >= minSecretLen {
			out = append(out, s)
		}
	}
	var walk func(v any, secret bool)
	walk = func(v any, secret bool) {
		switch x := v.(type) {
		case string:
			if secret {
				add(x)
			}
		case map[string]any:
			for k, e := range x {
				walk(e, secret || IsSecretKey(k))
			}
		case []any:
			for _, e := range x {
				walk(e, secret)
			}
		}
	}
	add(c.Server.AdminToken)
	for _, r := range c.Routes {
		for k, v := range r.Match.Headers {
			walk(v, IsSecretKey(k))
		}
		for _, f := range r.Filters {
			walk(f.Config, false)
		}
	}
	for _, p := range c.Plugins {
		walk(p.Config, false)
	}
	for _, k := range c.Consumers {
		for name, v := range k.Headers {
			walk(v, IsSecretKey(name))
		}
	}
	for _, v := range c.Tracing.Headers {
		add(v)
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(out)
}

// RedactError returns err with the text of every problem passed through RedactText and with
// every secret value of c (see secretValues) hidden, as written and as quoted by %q. The
// problems keep their file, line, path, route and filter, and still unwrap to the original
// errors. c may be nil (the config could not be decoded): then only patterns apply.
func (c *Config) RedactError(err error) error {
	if err == nil {
		return nil
	}
	secrets := c.secretValues()
	var out []error
	for _, e := range Errors(err) {
		cp := *e
		if cp.Err != nil {
			text := cp.Err.Error()
			for _, s := range secrets {
				text = strings.ReplaceAll(text, s, Redaction)
				if q := strconv.Quote(s); q[1:len(q)-1] != s {
					text = strings.ReplaceAll(text, q[1:len(q)-1], Redaction)
				}
			}
			cp.Err = &redactedError{text: RedactText(text), err: cp.Err}
		}
		out = append(out, &cp)
	}
	return errors.Join(out...)
}

// redactedError shows redacted text and unwraps to the error it came from, so errors.Is and
// errors.As still see what went wrong.
type redactedError struct {
	text string
	err  error
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.err }
