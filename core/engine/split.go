package engine

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
)

// splitBuckets is how finely a split's weights divide the clients: a client's place is one of
// these buckets, drawn at random (and kept in the sticky cookie), and each side owns a run of
// buckets in proportion to its weight. Raising a canary's weight only moves buckets from the
// other sides to it, so a sticky client already on the canary stays there.
const splitBuckets = 10000

// defaultStickyCookie names the sticky cookie when split.sticky gives no name.
const defaultStickyCookie = "weir_split"

// splitter is the terminal step of a route with a split: it picks one side per request and
// forwards through that side's terminal. It is immutable once built.
type splitter struct {
	sides []splitSide
	// bound[i] is the first bucket past side i's run.
	bound [](uint32)
	// header and cookie name the request header and cookie that choose a side by name.
	header, cookie string
	// sticky names the cookie keeping the client's bucket ("" when not sticky); setCookie is
	// what follows its value in Set-Cookie.
	sticky    string
	setCookie []byte
	// draw returns a bucket in [0, n); tests replace it with a seeded source.
	draw func(n uint64) uint64
}

func init() {
	telemetry.Metrics.Export("split", telemetry.Export{Prefix: "weir_split", Member: "route",
		As:   map[string]telemetry.As{"*": {Family: "requests", Label: "upstream"}},
		Help: map[string]string{"requests": "Requests a route's traffic split sent to each upstream."}})
}

type splitSide struct {
	name    []byte
	forward func(*filter.Ctx)
	// count is the requests sent to this side (telemetry group "split", member the route).
	count *telemetry.Metric
}

// splitTerminal builds route i's splitter, whose forward is the route's terminal step, from
// the upstreams' terminals.
func (s *snapshot) splitTerminal(cfg *config.Config, i int, terminals map[string]func(*filter.Ctx)) (*splitter, error) {
	rc := cfg.Routes[i]
	sp, err := newSplitter(rc.Name, rc.Split, func(name string) (func(*filter.Ctx), error) {
		def, ok := terminals[name]
		if !ok {
			// Its build failed, and that error is already reported.
			return nil, fmt.Errorf("upstream %q is not available", name)
		}
		return s.routeTerminal(cfg, i, name, def)
	})
	if err != nil {
		return nil, &config.Error{File: cfg.File, Path: fmt.Sprintf("routes[%d].split", i), Route: rc.Name, Err: err}
	}
	return sp, nil
}

// splitWebSocket builds route i's handshake step for a split: the side is chosen as for any
// request (header, cookie, sticky bucket, weights), then that upstream's handshake step runs.
func (s *snapshot) splitWebSocket(cfg *config.Config, i int, sp *splitter) (func(*filter.Ctx) net.Conn, error) {
	dials := make([]func(*filter.Ctx) net.Conn, len(sp.sides))
	for j := range sp.sides {
		d, err := s.websocketDial(cfg, i, string(sp.sides[j].name))
		if err != nil || d == nil {
			return nil, err
		}
		dials[j] = d
	}
	return func(c *filter.Ctx) net.Conn {
		j, b, fresh := sp.choose(c)
		sp.sides[j].count.Add(1)
		conn := dials[j](c)
		sp.stick(c, b, fresh)
		return conn
	}, nil
}

func newSplitter(route string, cfg *config.Split, terminal func(string) (func(*filter.Ctx), error)) (*splitter, error) {
	sp := &splitter{header: cfg.Header, cookie: cfg.Cookie, draw: rand.Uint64N}
	total := 0
	for _, u := range cfg.Upstreams {
		total += u.Weight
	}
	if total <= 0 {
		return nil, fmt.Errorf("every weight is 0")
	}
	cum := 0
	for _, u := range cfg.Upstreams {
		fwd, err := terminal(u.Upstream)
		if err != nil {
			return nil, err
		}
		cum += u.Weight
		sp.sides = append(sp.sides, splitSide{
			name:    []byte(u.Upstream),
			forward: fwd,
			count:   telemetry.Metrics.Counter("split", route, u.Upstream),
		})
		sp.bound = append(sp.bound, uint32(int64(cum)*splitBuckets/int64(total)))
	}
	if st := cfg.Sticky; st != nil {
		sp.sticky = st.Cookie
		if sp.sticky == "" {
			sp.sticky = defaultStickyCookie
		}
		attrs := "; Path=/; HttpOnly; SameSite=Lax"
		if st.TTL > 0 {
			attrs = "; Max-Age=" + strconv.FormatInt(int64((st.TTL+time.Second-1)/time.Second), 10) + attrs
		}
		sp.setCookie = []byte(attrs)
	}
	return sp, nil
}

// forward sends the request to the side its header or cookie names, else to the side of the
// client's bucket: the sticky cookie's when it holds a valid one, else a fresh draw (which the
// sticky cookie then keeps). It allocates nothing.
func (sp *splitter) forward(c *filter.Ctx) {
	i, b, fresh := sp.choose(c)
	sp.send(c, i)
	sp.stick(c, b, fresh)
}

// choose returns the side for c and, when the client's bucket chose it, the bucket and
// whether it was drawn fresh (the sticky cookie then keeps it).
func (sp *splitter) choose(c *filter.Ctx) (side, bucket int, fresh bool) {
	if i := sp.named(c); i >= 0 {
		return i, -1, false
	}
	b := -1
	if sp.sticky != "" {
		b = parseBucket(c.Request.Header.Cookie(sp.sticky))
	}
	if b < 0 {
		b, fresh = int(sp.draw(splitBuckets)), sp.sticky != ""
	}
	return sp.side(b), b, fresh
}

// stick sets the sticky cookie for a freshly drawn bucket b, after the answer was written.
func (sp *splitter) stick(c *filter.Ctx, b int, fresh bool) {
	if fresh {
		var buf [128]byte
		v := append(buf[:0], sp.sticky...)
		v = append(v, '=')
		v = strconv.AppendInt(v, int64(b), 10)
		v = append(v, sp.setCookie...)
		c.Response.Header.AddBytesV("Set-Cookie", v)
	}
}

func (sp *splitter) send(c *filter.Ctx, i int) {
	sp.sides[i].count.Add(1)
	sp.sides[i].forward(c)
}

// named returns the side the request names in the split's header or cookie, or -1.
func (sp *splitter) named(c *filter.Ctx) int {
	if sp.header != "" {
		if i := sp.lookup(c.Request.Header.Peek(sp.header)); i >= 0 {
			return i
		}
	}
	if sp.cookie != "" {
		return sp.lookup(c.Request.Header.Cookie(sp.cookie))
	}
	return -1
}

func (sp *splitter) lookup(v []byte) int {
	if len(v) == 0 {
		return -1
	}
	for i := range sp.sides {
		if string(sp.sides[i].name) == string(v) {
			return i
		}
	}
	return -1
}

// side returns the side owning bucket b.
func (sp *splitter) side(b int) int {
	for i, end := range sp.bound {
		if uint32(b) < end {
			return i
		}
	}
	return len(sp.sides) - 1
}

// parseBucket reads a sticky cookie's value: a bucket number written by the gateway. Anything
// else (empty, signed, too long, out of range) is no bucket (-1), and the client gets a new one.
func parseBucket(v []byte) int {
	if len(v) == 0 || len(v) > 4 {
		return -1
	}
	n := 0
	for _, ch := range v {
		if ch < '0' || ch > '9' {
			return -1
		}
		n = n*10 + int(ch-'0')
	}
	if n >= splitBuckets {
		return -1
	}
	return n
}
