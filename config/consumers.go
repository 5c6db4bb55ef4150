package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/weir-gateway/weir/core/httpsyntax"
)

// Consumer is one caller declared under `consumers:`: who it is (name, groups), what the
// upstream is told about it (headers) and the credentials that identify it. Auth filters
// (apikey, basicauth, jwt) resolve a request to a consumer; acl and ratelimit key on it.
type Consumer struct {
	// Name identifies the consumer in X-Consumer-Name, logs, acl and rate-limit keys.
	Name string `mapstructure:"name" json:"name"`
	// Groups are sent upstream in X-Consumer-Groups (comma-separated) and checked by acl.
	Groups []string `mapstructure:"groups" json:"groups,omitempty"`
	// Headers are set on the upstream request when this consumer is authenticated. Names keep
	// the case written; each is also stripped from every client request at the edge.
	Headers map[string]string `mapstructure:"headers" json:"headers,omitempty"`
	// Credentials identify the consumer.
	Credentials Credentials `mapstructure:"credentials" json:"credentials"`
}

// Credentials are a consumer's API keys, Basic auth users and JWT subjects.
type Credentials struct {
	APIKeys []APIKey    `mapstructure:"apikeys" json:"apikeys,omitempty"`
	Basic   []BasicUser `mapstructure:"basic" json:"basic,omitempty"`
	JWT     []JWTIdent  `mapstructure:"jwt" json:"jwt,omitempty"`
}

// APIKey is one API key, given by the SHA-256 of the key (so the config never holds the key)
// or by a file holding the key itself (read when the config loads; surrounding whitespace,
// such as a final newline, is ignored).
type APIKey struct {
	SHA256 string `mapstructure:"sha256" json:"sha256,omitempty"`
	File   string `mapstructure:"file" json:"file,omitempty"`

	// Path is File resolved against the config file's directory.
	Path string `mapstructure:"-" json:"-"`
	// Digest is the key's SHA-256 in lowercase hex, from SHA256 or from the file's contents,
	// so a changed key file changes Config.Hash and a reload picks it up. Empty when the key
	// could not be read or SHA256 is malformed.
	Digest string `mapstructure:"-" json:"digest"`
	// problem is why Digest is empty, reported by Validate. It never quotes the key.
	problem error
}

// BasicUser is one Basic auth user name and the bcrypt hash of its password.
type BasicUser struct {
	User   string `mapstructure:"user" json:"user"`
	Bcrypt string `mapstructure:"bcrypt" json:"bcrypt"`
}

// JWTIdent names the tokens of a consumer: those issued by Issuer with subject Subject.
type JWTIdent struct {
	Issuer  string `mapstructure:"issuer" json:"issuer"`
	Subject string `mapstructure:"subject" json:"subject"`
}

// The headers through which the upstream learns who the caller is. The edge strips them, and
// every consumer's own header names, from every client request.
const (
	ConsumerNameHeader   = "X-Consumer-Name"
	ConsumerGroupsHeader = "X-Consumer-Groups"
)

// consumerName is the syntax of consumer and group names: they travel in headers and in
// comma-separated lists, so no spaces, commas or control bytes.
var consumerName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$`)

// maxKeyFileBytes bounds an API key file: a key is a short token, and a large file is a
// mistake (a wrong path) that should not be read into memory whole.
const maxKeyFileBytes = 4096

// decodeConsumers reads the consumers section and reads every key file.
func decodeConsumers(p *problems, sec any, c *Config) {
	if sec == nil {
		return
	}
	list, ok := sec.([]any)
	if !ok {
		p.add("consumers", "", "", fmt.Errorf("expected a list of consumers, got %s", yamlKind(sec)))
		return
	}
	c.Consumers = make([]Consumer, 0, len(list))
	for i, item := range list {
		path := fmt.Sprintf("consumers[%d]", i)
		var k Consumer
		if err := decodeInto(item, &k, path); err != nil {
			// Decoding errors may quote a value; none of these fields is secret except the
			// header values, which the config's RedactError hides.
			p.addAll(err, "", "")
		}
		for j := range k.Credentials.APIKeys {
			readAPIKey(&k.Credentials.APIKeys[j], c.File)
		}
		c.Consumers = append(c.Consumers, k)
	}
}

// readAPIKey fills a key's Digest from its sha256 or its file.
func readAPIKey(k *APIKey, configFile string) {
	switch {
	case k.SHA256 != "" && k.File != "":
		k.problem = errors.New("give sha256 or file, not both")
	case k.SHA256 != "":
		d := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(k.SHA256)), "sha256:")
		if len(d) != 64 || strings.Trim(d, "0123456789abcdef") != "" {
			// Not quoted: a key pasted here by mistake must not end up in a log.
			k.problem = errors.New("sha256: not a hex SHA-256 (64 hex digits); write the digest of the key, e.g. `printf %s \"$KEY\" | sha256sum`")
			return
		}
		k.Digest = d
	case k.File != "":
		k.Path = k.File
		if !filepath.IsAbs(k.Path) && configFile != "" {
			k.Path = filepath.Join(filepath.Dir(configFile), k.Path)
		}
		key, err := readKeyFile(k.Path)
		if err != nil {
			k.problem = fmt.Errorf("file: %w", err)
			return
		}
		sum := sha256.Sum256(key)
		k.Digest = hex.EncodeToString(sum[:])
	default:
		k.problem = errors.New("give sha256 (the key's SHA-256 in hex) or file (a file holding the key)")
	}
}

// readKeyFile returns the key held in the file at path, checked. Errors name the path and
// never quote the contents.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, maxKeyFileBytes+1)
	n, _ := io.ReadFull(f, buf)
	if n > maxKeyFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes; it should hold one key", path, maxKeyFileBytes)
	}
	key := []byte(strings.TrimSpace(string(buf[:n])))
	if len(key) == 0 {
		return nil, fmt.Errorf("%s: empty; it should hold one key", path)
	}
	if err := checkKeyBytes(key); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// checkKeyBytes accepts keys a client can send in a header or a query parameter as written:
// visible ASCII, no spaces.
func checkKeyBytes(key []byte) error {
	for _, b := range key {
		if b <= ' ' || b >= 0x7f {
			return errors.New("the key has a space, a control byte or a non-ASCII byte (keys are visible ASCII, one per file)")
		}
	}
	return nil
}

// reservedConsumerHeaders may not be a consumer's metadata header: the gateway sets the first
// two itself, and the others frame or route the request.
var reservedConsumerHeaders = []string{
	ConsumerNameHeader, ConsumerGroupsHeader, "Host", "Content-Length", "Transfer-Encoding",
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Upgrade", "Content-Type",
	"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port", "Forwarded", "Via",
	"Authorization", "Proxy-Authorization", "Cookie",
}

// validateConsumers checks names, groups, headers and credentials, and that no credential
// belongs to two consumers (a request presenting it could not be told apart).
func validateConsumers(p *problems, c *Config) {
	names := map[string]int{}
	keys := map[string]string{}  // digest -> path of its first use
	users := map[string]string{} // user -> path
	subjects := map[JWTIdent]string{}
	for i, k := range c.Consumers {
		path := fmt.Sprintf("consumers[%d]", i)
		switch {
		case k.Name == "":
			p.add(path+".name", "", "", errors.New("is missing; every consumer needs a name"))
		case !consumerName.MatchString(k.Name):
			p.add(path+".name", "", "", fmt.Errorf("%q: use letters, digits, '.', '_', '@', ':' and '-' (at most 128)", k.Name))
		default:
			if first, dup := names[k.Name]; dup {
				p.add(path+".name", "", "", fmt.Errorf("consumer %q is declared twice (also consumers[%d])", k.Name, first))
			} else {
				names[k.Name] = i
			}
		}
		for j, g := range k.Groups {
			if !consumerName.MatchString(g) {
				p.add(fmt.Sprintf("%s.groups[%d]", path, j), "", "", fmt.Errorf("%q: use letters, digits, '.', '_', '@', ':' and '-' (at most 128)", g))
			} else if slices.Index(k.Groups, g) < j {
				p.add(fmt.Sprintf("%s.groups[%d]", path, j), "", "", fmt.Errorf("group %q is listed twice", g))
			}
		}
		seen := map[string]string{}
		for _, name := range sortedKeys(k.Headers) {
			hpath := path + ".headers." + name
			canon := textproto.CanonicalMIMEHeaderKey(name)
			switch {
			case !httpsyntax.IsToken(name):
				p.add(hpath, "", "", fmt.Errorf("header name %q is not an RFC 9110 token", name))
			case slices.ContainsFunc(reservedConsumerHeaders, func(r string) bool { return strings.EqualFold(r, name) }):
				p.add(hpath, "", "", fmt.Errorf("header %q is set by the gateway or frames the request; choose another name", canon))
			case seen[canon] != "":
				p.add(hpath, "", "", fmt.Errorf("header %q given twice (as %q and %q)", canon, seen[canon], name))
			}
			seen[canon] = name
			if strings.ContainsFunc(k.Headers[name], func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
				// Never quoted: metadata values may be credentials for the upstream.
				p.add(hpath, "", "", errors.New("the value has a control byte (CR, LF, NUL, …)"))
			}
		}
		cr := k.Credentials
		for j, key := range cr.APIKeys {
			kpath := fmt.Sprintf("%s.credentials.apikeys[%d]", path, j)
			if key.problem != nil {
				p.add(kpath, "", "", key.problem)
				continue
			}
			if first, dup := keys[key.Digest]; dup {
				p.add(kpath, "", "", fmt.Errorf("the same API key is also %s; a key identifies one consumer", first))
				continue
			}
			keys[key.Digest] = kpath
		}
		for j, b := range cr.Basic {
			bpath := fmt.Sprintf("%s.credentials.basic[%d]", path, j)
			switch {
			case b.User == "":
				p.add(bpath+".user", "", "", errors.New("is missing"))
			case strings.ContainsAny(b.User, ":") || strings.ContainsFunc(b.User, func(r rune) bool { return r < ' ' || r == 0x7f }):
				p.add(bpath+".user", "", "", errors.New("a Basic auth user name has no ':' and no control bytes"))
			default:
				if first, dup := users[b.User]; dup {
					p.add(bpath+".user", "", "", fmt.Errorf("user %q is also %s; a user identifies one consumer", b.User, first))
				} else {
					users[b.User] = bpath
				}
			}
			if err := CheckBcrypt(b.Bcrypt); err != nil {
				p.add(bpath+".bcrypt", "", "", err)
			}
		}
		for j, t := range cr.JWT {
			tpath := fmt.Sprintf("%s.credentials.jwt[%d]", path, j)
			if t.Issuer == "" || t.Subject == "" {
				p.add(tpath, "", "", errors.New("needs both issuer and subject"))
				continue
			}
			if first, dup := subjects[t]; dup {
				p.add(tpath, "", "", fmt.Errorf("issuer %q and subject %q are also %s", t.Issuer, t.Subject, first))
				continue
			}
			subjects[t] = tpath
		}
	}
}

// CheckBcrypt accepts a bcrypt hash ($2a$, $2b$ or $2y$, cost 4 to 31). The error never
// quotes the hash.
func CheckBcrypt(h string) error {
	if h == "" {
		return errors.New("is missing; write the password's bcrypt hash (htpasswd -nbB user password)")
	}
	if len(h) < 4 || h[0] != '$' || h[1] != '2' || (h[2] != 'a' && h[2] != 'b' && h[2] != 'y') || h[3] != '$' {
		return errors.New("not a bcrypt hash: only $2a$, $2b$ and $2y$ are accepted (MD5 $apr1$, SHA, crypt and plain text are not)")
	}
	if _, err := bcrypt.Cost([]byte(h)); err != nil || len(h) != 60 {
		return errors.New("malformed bcrypt hash (want 60 characters: $2y$<cost>$<salt and hash>)")
	}
	return nil
}

// ConsumerHeaderNames lists, canonically spelled and sorted, every header name through which
// the gateway tells the upstream about the caller: X-Consumer-Name, X-Consumer-Groups and
// every consumer's metadata headers. The edge strips them from every client request.
func (c *Config) ConsumerHeaderNames() []string {
	out := []string{ConsumerNameHeader, ConsumerGroupsHeader}
	for _, k := range c.Consumers {
		for n := range k.Headers {
			out = append(out, textproto.CanonicalMIMEHeaderKey(n))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// redactConsumers deep-copies list for showing: bcrypt hashes (a weak password can be cracked
// from its hash offline) and the digests of keys read from files (the file is the secret;
// inline sha256 values are in the config as written) are replaced, and so are metadata header
// values that look secret.
func redactConsumers(list []Consumer) []Consumer {
	if list == nil {
		return nil
	}
	out := make([]Consumer, len(list))
	for i, k := range list {
		k.Groups = slices.Clone(k.Groups)
		if k.Headers != nil {
			h := make(map[string]string, len(k.Headers))
			for n, v := range k.Headers {
				h[n] = redactString(n, v)
			}
			k.Headers = h
		}
		cr := k.Credentials
		cr.APIKeys = slices.Clone(cr.APIKeys)
		for j := range cr.APIKeys {
			if cr.APIKeys[j].File != "" && cr.APIKeys[j].Digest != "" {
				cr.APIKeys[j].Digest = Redaction
			}
		}
		cr.Basic = slices.Clone(cr.Basic)
		for j := range cr.Basic {
			if cr.Basic[j].Bcrypt != "" {
				cr.Basic[j].Bcrypt = Redaction
			}
		}
		cr.JWT = slices.Clone(cr.JWT)
		k.Credentials = cr
		out[i] = k
	}
	return out
}
