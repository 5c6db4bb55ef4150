package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// targetSpec is one configured target: a literal address, a name to resolve (A/AAAA), or an SRV
// name.
type targetSpec struct {
	raw    string
	host   string // the name to resolve; empty for a literal address
	port   string
	srv    bool
	weight int
	last   []entry // the previous successful resolution, kept when a refresh fails
}

// entry is one resolved target address.
type entry struct {
	addr   string
	host   string
	weight int
}

// SRVPrefix marks a target resolved as an SRV record: "srv:_http._tcp.api.internal".
const SRVPrefix = "srv:"

// parseTarget reads one configured target. Names are resolved only when resolve is set;
// otherwise they are dialled as written.
func parseTarget(t string, weight int, resolve bool) (targetSpec, error) {
	if name, ok := strings.CutPrefix(t, SRVPrefix); ok {
		if name == "" || strings.ContainsAny(name, " /:") {
			return targetSpec{}, errors.New("want srv:_service._proto.name")
		}
		return targetSpec{raw: t, host: strings.TrimSuffix(name, "."), srv: true, weight: weight}, nil
	}
	host, port, err := net.SplitHostPort(t)
	if err != nil {
		return targetSpec{}, err
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 || host == "" {
		return targetSpec{}, errors.New("want host:port")
	}
	s := targetSpec{raw: t, port: port, weight: weight}
	if _, err := netip.ParseAddr(host); err != nil && resolve {
		s.host = host
	}
	return s, nil
}

// dynamic reports whether any target needs resolving.
func (u *Upstream) dynamic() bool {
	for i := range u.specs {
		if u.specs[i].host != "" {
			return true
		}
	}
	return false
}

// resolver is what discovery asks; tests replace it.
var resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
} = net.DefaultResolver

// resolveAll resolves every spec. A name that fails keeps its previous addresses; its error is
// reported and does not affect the others.
func (u *Upstream) resolveAll(ctx context.Context) []entry {
	var out []entry
	seen := map[string]bool{}
	add := func(e entry) {
		if !seen[e.addr] {
			seen[e.addr] = true
			out = append(out, e)
		}
	}
	for i := range u.specs {
		s := &u.specs[i]
		if s.host == "" {
			add(entry{addr: s.raw, weight: s.weight})
			continue
		}
		es, err := s.resolve(ctx)
		if err != nil {
			if u.onDNSErr != nil {
				u.onDNSErr(s.raw, err)
			}
			es = s.last
		} else {
			s.last = es
		}
		for _, e := range es {
			add(e)
		}
	}
	return out
}

func (s *targetSpec) resolve(ctx context.Context) ([]entry, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if !s.srv {
		return lookupHost(ctx, s.host, s.port, s.weight)
	}
	_, recs, err := resolver.LookupSRV(ctx, "", "", s.host)
	if err != nil {
		return nil, fmt.Errorf("resolve srv %s: %w", s.host, err)
	}
	var out []entry
	var errs []error
	for _, r := range recs {
		// SRV weights are 0..65535 where 0 means "rarely"; the balancer needs 1 at least.
		w := max(int(r.Weight), 1)
		es, err := lookupHost(ctx, strings.TrimSuffix(r.Target, "."), strconv.Itoa(int(r.Port)), w)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, es...)
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func lookupHost(ctx context.Context, host, port string, weight int) ([]entry, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []entry{{addr: net.JoinHostPort(a.String(), port), weight: weight}}, nil
	}
	ips, err := resolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	out := make([]entry, 0, len(ips))
	for _, ip := range ips {
		out = append(out, entry{addr: net.JoinHostPort(ip.IP.String(), port), host: host, weight: weight})
	}
	return out, nil
}

// refreshLoop re-resolves names every refresh interval and installs a new view when the set of
// addresses changed. Go's resolver does not expose record TTLs, so the interval stands in for
// them; keep it at or below the records' TTL.
func (u *Upstream) refreshLoop() {
	defer close(u.done)
	t := time.NewTicker(u.refresh)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-u.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-u.stop:
			return
		case <-t.C:
		}
		entries := u.resolveAll(ctx)
		if sameEntries(u.cur.Load(), entries) {
			continue
		}
		if err := u.install(entries); err != nil && u.onDNSErr != nil {
			u.onDNSErr(u.name, err)
		}
	}
}

func sameEntries(v *view, es []entry) bool {
	if v == nil || len(v.members) != len(es) {
		return false
	}
	for i, m := range v.members {
		if m.addr != es[i].addr || m.target.Weight() != es[i].weight {
			return false
		}
	}
	return true
}
