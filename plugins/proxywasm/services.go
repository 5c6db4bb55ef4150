package proxywasm

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero/api"

	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/plugins/internal/anycase"
)

// vmShared is what every instance of one VM id shares, across reloads and routes, for the life
// of the process: shared data, shared queues and metrics. Weir's VM id is the plugin's name.
type vmShared struct {
	id string

	mu    sync.Mutex
	data  map[string]*sharedValue
	bytes int
	cas   uint32

	queues map[string]uint32 // name -> queue id

	metricsMu sync.Mutex
	metrics   []guestMetric
	byName    map[string]uint32
}

type sharedValue struct {
	v   []byte
	cas uint32
}

// Limits on what a VM id's guests may keep in the gateway.
const (
	maxSharedBytes = 64 << 20
	maxQueueItems  = 1 << 16
)

var (
	vmsMu sync.Mutex
	vms   = map[string]*vmShared{}

	queuesMu  sync.Mutex
	queues    = map[uint32]*queue{}
	nextQueue uint32
)

type queue struct {
	vmID  string
	name  string
	items [][]byte
	owner *vm // the instance whose root context hears proxy_on_queue_ready
}

func sharedFor(id string) *vmShared {
	vmsMu.Lock()
	defer vmsMu.Unlock()
	s, ok := vms[id]
	if !ok {
		s = &vmShared{id: id, data: map[string]*sharedValue{}, queues: map[string]uint32{}, byName: map[string]uint32{}}
		vms[id] = s
	}
	return s
}

// --- shared data ---------------------------------------------------------------------------------

func proxyGetSharedData(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	key, ok := view(mod, u32(stack[0]), u32(stack[1]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	s := v.p.vmID
	s.mu.Lock()
	e, found := s.data[string(key)]
	var val []byte
	var cas uint32
	if found {
		val, cas = e.v, e.cas
	}
	s.mu.Unlock()
	if !found {
		stack[0] = statusNotFound
		return
	}
	if _, ok := view(mod, u32(stack[4]), 4); !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	if st := v.give(ctx, mod, val, u32(stack[2]), u32(stack[3])); st != statusOK {
		stack[0] = st
		return
	}
	writeU32(mod, u32(stack[4]), cas)
	stack[0] = statusOK
}

// proxySetSharedData stores a value; a non-zero cas must match the value's current one.
// Stored values are never changed in place, so a reader may keep one without the lock.
func proxySetSharedData(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	key, ok := view(mod, u32(stack[0]), u32(stack[1]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	val, ok := view(mod, u32(stack[2]), u32(stack[3]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	cas := u32(stack[4])
	s := v.p.vmID
	s.mu.Lock()
	defer s.mu.Unlock()
	e, found := s.data[string(key)]
	if found && cas != 0 && cas != e.cas {
		stack[0] = statusCasMismatch
		return
	}
	grow := len(val)
	if found {
		grow -= len(e.v)
	} else {
		grow += len(key)
	}
	if s.bytes+grow > maxSharedBytes {
		stack[0] = statusBadArgument
		return
	}
	s.bytes += grow
	s.cas++
	if s.cas == 0 {
		s.cas = 1
	}
	if !found {
		e = &sharedValue{}
		s.data[string(key)] = e
	}
	e.v = append([]byte(nil), val...)
	e.cas = s.cas
	stack[0] = statusOK
}

// --- shared queues -------------------------------------------------------------------------------

func proxyRegisterSharedQueue(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	name, ok := view(mod, u32(stack[0]), u32(stack[1]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	if _, ok := view(mod, u32(stack[2]), 4); !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	s := v.p.vmID
	queuesMu.Lock()
	id, found := s.queues[string(name)]
	if !found {
		nextQueue++
		id = nextQueue
		queues[id] = &queue{vmID: s.id, name: string(name)}
		s.queues[string(name)] = id
	}
	q := queues[id]
	if q.owner == nil || q.owner.dead.Load() || q.owner.p != v.p {
		q.owner = v
	}
	v.queues = append(v.queues, id)
	queuesMu.Unlock()
	writeU32(mod, u32(stack[2]), id)
	stack[0] = statusOK
}

func proxyResolveSharedQueue(ctx context.Context, mod api.Module, stack []uint64) {
	vmID, ok := view(mod, u32(stack[0]), u32(stack[1]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	name, ok := view(mod, u32(stack[2]), u32(stack[3]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	if len(vmID) == 0 {
		vmID = []byte(vmOf(ctx).p.vmID.id)
	}
	vmsMu.Lock()
	s := vms[string(vmID)]
	vmsMu.Unlock()
	if s == nil {
		stack[0] = statusNotFound
		return
	}
	queuesMu.Lock()
	id, found := s.queues[string(name)]
	queuesMu.Unlock()
	if !found {
		stack[0] = statusNotFound
		return
	}
	if !writeU32(mod, u32(stack[4]), id) {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	stack[0] = statusOK
}

func proxyEnqueueSharedQueue(_ context.Context, mod api.Module, stack []uint64) {
	id := u32(stack[0])
	val, ok := view(mod, u32(stack[1]), u32(stack[2]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	queuesMu.Lock()
	q := queues[id]
	if q == nil {
		queuesMu.Unlock()
		stack[0] = statusNotFound
		return
	}
	if len(q.items) >= maxQueueItems {
		queuesMu.Unlock()
		stack[0] = statusBadArgument
		return
	}
	q.items = append(q.items, append([]byte(nil), val...))
	owner := q.owner
	queuesMu.Unlock()
	if owner != nil && !owner.dead.Load() {
		// Never from here: the caller holds its own instance's lock, and the owner may be it.
		go owner.queueReady(id)
	}
	stack[0] = statusOK
}

func proxyDequeueSharedQueue(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	id := u32(stack[0])
	queuesMu.Lock()
	q := queues[id]
	if q == nil {
		queuesMu.Unlock()
		stack[0] = statusNotFound
		return
	}
	if len(q.items) == 0 {
		queuesMu.Unlock()
		stack[0] = statusEmpty
		return
	}
	item := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	queuesMu.Unlock()
	stack[0] = v.give(ctx, mod, item, u32(stack[1]), u32(stack[2]))
}

// dropQueues forgets v as the owner of the queues it registered (its root context is gone).
// The queues and their items stay: other instances of the VM id may still use them.
func (s *vmShared) dropQueues(v *vm) {
	queuesMu.Lock()
	defer queuesMu.Unlock()
	for _, id := range v.queues {
		if q := queues[id]; q != nil && q.owner == v {
			q.owner = nil
		}
	}
}

// --- metrics -------------------------------------------------------------------------------------

// guestMetric is a metric a guest defined, published in telemetry.Metrics under the group
// "plugins", the plugin's name and "guest.<name>"; a histogram is published as two counters,
// guest.<name>.count and guest.<name>.sum.
type guestMetric struct {
	kind     uint32
	value    *telemetry.Metric
	count    *telemetry.Metric // histograms
	name     string
	disabled bool
}

func proxyDefineMetric(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	kind := u32(stack[0])
	if kind > metricHistogram {
		stack[0] = statusBadArgument
		return
	}
	name, ok := view(mod, u32(stack[1]), u32(stack[2]))
	if !ok || len(name) == 0 {
		if !ok {
			stack[0] = statusInvalidMemoryAccess
		} else {
			stack[0] = statusBadArgument
		}
		return
	}
	if _, ok := view(mod, u32(stack[3]), 4); !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	id, st := v.p.vmID.defineMetric(v.p.spec.Name, kind, string(name))
	if st != statusOK {
		stack[0] = st
		return
	}
	writeU32(mod, u32(stack[3]), id)
	stack[0] = statusOK
}

func (s *vmShared) defineMetric(plugin string, kind uint32, name string) (uint32, uint64) {
	s.metricsMu.Lock()
	defer s.metricsMu.Unlock()
	if id, ok := s.byName[name]; ok {
		if s.metrics[id-1].kind != kind {
			return 0, statusBadArgument
		}
		return id, statusOK
	}
	m := guestMetric{kind: kind, name: name}
	if !register(&m, plugin) {
		return 0, statusBadArgument
	}
	s.metrics = append(s.metrics, m)
	id := uint32(len(s.metrics))
	s.byName[name] = id
	return id, statusOK
}

// register creates m's telemetry metrics; false when the name is already there as another
// kind (a reload that changed a metric's type), which the registry refuses.
func register(m *guestMetric, plugin string) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	n := "guest." + m.name
	switch m.kind {
	case metricCounter:
		m.value = telemetry.Metrics.Counter("plugins", plugin, n)
	case metricGauge:
		m.value = telemetry.Metrics.Gauge("plugins", plugin, n)
	case metricHistogram:
		m.value = telemetry.Metrics.Counter("plugins", plugin, n+".sum")
		m.count = telemetry.Metrics.Counter("plugins", plugin, n+".count")
	}
	return true
}

func (s *vmShared) metric(id uint32) (guestMetric, bool) {
	s.metricsMu.Lock()
	defer s.metricsMu.Unlock()
	if id == 0 || int(id) > len(s.metrics) {
		return guestMetric{}, false
	}
	return s.metrics[id-1], true
}

func proxyRecordMetric(ctx context.Context, _ api.Module, stack []uint64) {
	m, ok := vmOf(ctx).p.vmID.metric(u32(stack[0]))
	if !ok {
		stack[0] = statusNotFound
		return
	}
	val := int64(stack[1])
	switch m.kind {
	case metricHistogram:
		m.value.Add(val)
		m.count.Add(1)
	default:
		// Set: not atomic against a concurrent increment, as in hosts that keep metrics per
		// worker and merge them.
		m.value.Add(val - m.value.Load())
	}
	stack[0] = statusOK
}

func proxyIncrementMetric(ctx context.Context, _ api.Module, stack []uint64) {
	m, ok := vmOf(ctx).p.vmID.metric(u32(stack[0]))
	if !ok {
		stack[0] = statusNotFound
		return
	}
	delta := int64(stack[1])
	if m.kind == metricHistogram || (m.kind == metricCounter && delta < 0) {
		stack[0] = statusBadArgument
		return
	}
	m.value.Add(delta)
	stack[0] = statusOK
}

func proxyGetMetric(ctx context.Context, mod api.Module, stack []uint64) {
	m, ok := vmOf(ctx).p.vmID.metric(u32(stack[0]))
	if !ok {
		stack[0] = statusNotFound
		return
	}
	if m.kind == metricHistogram {
		stack[0] = statusBadArgument
		return
	}
	if !mod.Memory().WriteUint64Le(u32(stack[1]), uint64(m.value.Load())) {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	stack[0] = statusOK
}

// --- properties ----------------------------------------------------------------------------------

// propertyPath turns a serialised path (segments separated by NUL, as the SDKs send them, or
// dotted) into dotted form.
func propertyPath(raw []byte) string {
	raw = bytes.TrimRight(raw, "\x00")
	return strings.ReplaceAll(string(raw), "\x00", ".")
}

func int64LE(n int64) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, uint64(n))
	return b
}

// property returns a well-known property's value: strings as bytes, integers as 8 bytes
// little-endian, booleans as one byte, as Envoy serialises them.
func (v *vm) property(path string) ([]byte, bool) {
	switch path {
	case "plugin_name":
		return []byte(v.p.spec.Name), true
	case "plugin_root_id":
		return []byte(""), true
	case "plugin_vm_id":
		return []byte(v.p.vmID.id), true
	}
	h := v.cur
	if h == nil {
		if b, ok := v.rootProps[path]; ok {
			return b, true
		}
		return nil, false
	}
	if b, ok := h.props[path]; ok {
		return b, true
	}
	rc := h.c.RequestCtx
	switch path {
	case "route_name", "xds.route_name":
		return []byte(h.c.Route), true
	case "request.path":
		return rc.Request.Header.RequestURI(), true
	case "request.url_path":
		return rc.Path(), true
	case "request.query":
		return rc.URI().QueryString(), true
	case "request.host":
		return rc.Request.Header.Host(), true
	case "request.method":
		return rc.Request.Header.Method(), true
	case "request.scheme":
		if rc.IsTLS() {
			return []byte("https"), true
		}
		return []byte("http"), true
	case "request.protocol":
		return rc.Request.Header.Protocol(), true
	case "request.id":
		if id := rc.Request.Header.Peek("X-Request-Id"); id != nil {
			return id, true
		}
		return nil, false
	case "request.useragent":
		return rc.Request.Header.UserAgent(), true
	case "request.referer":
		return rc.Request.Header.Referer(), true
	case "request.size":
		return int64LE(int64(max(rc.Request.Header.ContentLength(), 0))), true
	case "request.time":
		return int64LE(rc.Time().UnixNano()), true
	case "response.code":
		if !h.response {
			return nil, false
		}
		return int64LE(int64(rc.Response.StatusCode())), true
	case "source.address":
		return []byte(rc.RemoteAddr().String()), true
	case "source.port":
		return addrPort(rc.RemoteAddr())
	case "destination.address":
		return []byte(rc.LocalAddr().String()), true
	case "destination.port":
		return addrPort(rc.LocalAddr())
	case "connection.id":
		return int64LE(int64(rc.ConnID())), true
	case "connection.mtls":
		st := rc.TLSConnectionState()
		if st != nil && len(st.VerifiedChains) > 0 {
			return []byte{1}, true
		}
		return []byte{0}, true
	case "connection.requested_server_name":
		if st := rc.TLSConnectionState(); st != nil {
			return []byte(st.ServerName), true
		}
		return []byte(""), true
	case "connection.tls_version":
		if st := rc.TLSConnectionState(); st != nil {
			return []byte(tlsVersion(st.Version)), true
		}
		return []byte(""), true
	}
	if name, ok := strings.CutPrefix(path, "request.headers."); ok {
		if b := rc.Request.Header.Peek(name); b != nil {
			return b, true
		}
		return nil, false
	}
	if name, ok := strings.CutPrefix(path, "response.headers."); ok && h.response {
		if b := anycase.Peek(&rc.Response.Header, []byte(name)); b != nil {
			return b, true
		}
	}
	return nil, false
}

func addrPort(a net.Addr) ([]byte, bool) {
	if t, ok := a.(*net.TCPAddr); ok {
		return int64LE(int64(t.Port)), true
	}
	return nil, false
}

func tlsVersion(v uint16) string {
	switch v {
	case 0x0301:
		return "TLSv1"
	case 0x0302:
		return "TLSv1.1"
	case 0x0303:
		return "TLSv1.2"
	case 0x0304:
		return "TLSv1.3"
	}
	return ""
}

func proxyGetProperty(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	raw, ok := view(mod, u32(stack[0]), u32(stack[1]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	val, ok := v.property(propertyPath(raw))
	if !ok {
		stack[0] = statusNotFound
		return
	}
	stack[0] = v.give(ctx, mod, val, u32(stack[2]), u32(stack[3]))
}

// proxySetProperty stores a value under a path for the context (the request's, or the root
// context's) that later proxy_get_property calls read. Well-known properties are read-only.
func proxySetProperty(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	raw, ok := view(mod, u32(stack[0]), u32(stack[1]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	val, ok := view(mod, u32(stack[2]), u32(stack[3]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	path := propertyPath(raw)
	if _, known := v.property(path); known && !v.custom(path) {
		stack[0] = statusBadArgument
		return
	}
	if len(path) > 1024 || len(val) > 64<<10 {
		stack[0] = statusBadArgument
		return
	}
	cp := append([]byte(nil), val...)
	if h := v.cur; h != nil {
		if h.props == nil {
			h.props = map[string][]byte{}
		}
		if len(h.props) >= 256 {
			stack[0] = statusBadArgument
			return
		}
		h.props[path] = cp
	} else {
		if v.rootProps == nil {
			v.rootProps = map[string][]byte{}
		}
		if len(v.rootProps) >= 256 {
			stack[0] = statusBadArgument
			return
		}
		v.rootProps[path] = cp
	}
	stack[0] = statusOK
}

// custom reports whether path was set by the guest (so it may be set again).
func (v *vm) custom(path string) bool {
	if h := v.cur; h != nil {
		_, ok := h.props[path]
		return ok
	}
	_, ok := v.rootProps[path]
	return ok
}
