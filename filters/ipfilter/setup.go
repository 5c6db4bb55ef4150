package ipfilter

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
)

// Name is the name configs use for this filter.
const Name = "ipfilter"

func init() { filter.Register(Name, New) }

// Config is the filter's config.
type Config struct {
	// Allow lists the networks (CIDR prefixes or single addresses) that may pass. When it is
	// not empty, every other client is denied.
	Allow []string `mapstructure:"allow"`
	// Deny lists the networks that are refused. Deny wins over allow.
	Deny []string `mapstructure:"deny"`
}

// New is the filter's factory: it parses both lists into sorted, merged address ranges, so a
// request costs one binary search per list and allocates nothing.
func New(env filter.Env, decode filter.Decoder) (filter.Filter, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	if len(cfg.Allow) == 0 && len(cfg.Deny) == 0 {
		return nil, fmt.Errorf("allow or deny is required (a list of CIDR prefixes or addresses)")
	}
	allow, err := parseList(cfg.Allow)
	if err != nil {
		return nil, fmt.Errorf("allow: %w", err)
	}
	deny, err := parseList(cfg.Deny)
	if err != nil {
		return nil, fmt.Errorf("deny: %w", err)
	}
	return &Filter{decisions: telemetry.NewAuthDecisions(env.Route, env.Filter), allow: newSet(allow), deny: newSet(deny), hasAllow: len(cfg.Allow) > 0}, nil
}

// parseList parses every entry, reporting each bad one by its position.
func parseList(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// ParsePrefix parses one list entry: a CIDR prefix (10.0.0.0/8, 2001:db8::/32) or a single
// address (192.0.2.7, 2001:db8::1). An IPv4-mapped IPv6 entry (::ffff:10.0.0.0/104) is turned
// into its IPv4 form, since client addresses are compared unmapped. A prefix with bits set past
// its length (10.1.2.3/8) is refused: it usually means a typo, and reading it as 10.0.0.0/8
// would widen the list silently. Zones (fe80::1%eth0) are refused: they name an interface of
// this host, not a network.
func ParsePrefix(s string) (netip.Prefix, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return netip.Prefix{}, fmt.Errorf("empty entry")
	}
	if strings.Contains(t, "%") {
		return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
	}
	var p netip.Prefix
	if strings.Contains(t, "/") {
		var err error
		p, err = netip.ParsePrefix(t)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix (want 10.0.0.0/8 or 2001:db8::/32)", s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("%q has bits set past the prefix length; write %s", s, m)
		}
	} else {
		a, err := netip.ParseAddr(t)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}
