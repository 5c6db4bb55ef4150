// Package httpwasm implements the host side of the http-wasm "HTTP handler" ABI (import module
// "http_handler") on top of fasthttp: the 19 host functions a guest may import, the features
// buffer_request, buffer_response and trailers, and the misuse rules under which the host traps.
//
// The package knows nothing about pools or deadlines (plugins/wasmhost owns those). A host
// function finds the request it works on through a *State reachable from the call's context
// (see StateKey), so a call carries no per-request allocation.
package httpwasm

import (
	"context"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/config"
)

// ModuleName is the import module of every host function.
const ModuleName = "http_handler"

// Feature is the bit set of enable_features.
type Feature uint32

// Features defined by the ABI.
const (
	FeatureBufferRequest  Feature = 1
	FeatureBufferResponse Feature = 2
	FeatureTrailers       Feature = 4
	// Supported is every feature this host implements; enable_features always returns it.
	Supported = FeatureBufferRequest | FeatureBufferResponse | FeatureTrailers
)

// Header kinds (the first parameter of the header functions).
const (
	HeaderRequest          = 0
	HeaderResponse         = 1
	HeaderRequestTrailers  = 2
	HeaderResponseTrailers = 3
)

// Body kinds (the first parameter of read_body and write_body).
const (
	BodyRequest  = 0
	BodyResponse = 1
)

// Log levels of log and log_enabled.
const (
	LogDebug = -1
	LogInfo  = 0
	LogWarn  = 1
	LogError = 2
	LogNone  = 3
)

// Limits on what a guest may hand the host. They bound what one misbehaving guest can make the
// gateway hold or send, beyond the guest's own memory cap.
const (
	// MaxFieldLen bounds a header name plus value, a URI and a method. Larger writes trap.
	MaxFieldLen = 64 << 10
	// MaxLogLen truncates one log message.
	MaxLogLen = 4 << 10
)

// Limits bound what one request's guest calls can make the host hold or send. They come from
// the plugin's settings (plugins/wasmhost fills them in); a zero field means the default below.
type Limits struct {
	// HeaderBytes bounds the header bytes a guest may write in one request: every
	// set_header_value and add_header_value, of any kind, spends len(name)+len(value)+4 (the
	// ": " and CRLF it takes on the wire). The write that would pass it traps. Counting writes,
	// not the resulting header block, keeps the check O(1) and also bounds the work of a guest
	// that rewrites one header in a loop.
	HeaderBytes int
	// BodyBytes bounds a body the host reads or buffers for the guest (read_body of a request
	// or of a buffered response) and the bytes one request may write through write_body.
	BodyBytes int
}

// Default limits, used for a zero Limits field; config is their one home.
const (
	// DefaultHeaderBytes is the server's default max_header_bytes.
	DefaultHeaderBytes = config.DefaultMaxHeaderBytes
	// DefaultBodyBytes is a plugin's default max_body_bytes.
	DefaultBodyBytes = config.DefaultPluginMaxBodyBytes
)

// Phase says which lifecycle call is running.
type Phase uint8

// Phases.
const (
	// PhaseNone: no request (instantiation, start functions).
	PhaseNone Phase = iota
	// PhaseRequest: inside handle_request.
	PhaseRequest
	// PhaseResponse: inside handle_response.
	PhaseResponse
)

// StateKey is the context key under which a call's *State is found.
type StateKey struct{}

// State is what the host functions of one guest instance work on. An instance runs one call at
// a time, so State needs no lock. It is reused across requests; Begin and End bracket one.
type State struct {
	// Config is returned by get_config. It is fixed for the instance's life.
	Config []byte
	// Log receives the guest's log calls.
	Log zerolog.Logger
	// Limits bound each request; set them before the first request.
	Limits Limits

	base     Feature // enabled outside a request: for every request of this instance
	features Feature // enabled for the current request

	rc    *fasthttp.RequestCtx
	phase Phase

	reqBodyOff, respBodyOff     int
	reqBodyWrote, respBodyWrote bool
	wrote                       int // bytes written through write_body this request
	headerBytes                 int // header bytes written this request (see Limits)

	scratch []byte // reused for header name lists and addresses
}

// NewState returns the state of a new instance.
func NewState(config []byte, log zerolog.Logger) *State {
	return &State{Config: config, Log: log, scratch: make([]byte, 0, 256)}
}

// Begin starts the request phase for rc.
func (s *State) Begin(rc *fasthttp.RequestCtx) {
	s.rc = rc
	s.phase = PhaseRequest
	s.features = s.base
	s.reqBodyOff, s.respBodyOff = 0, 0
	s.reqBodyWrote, s.respBodyWrote = false, false
	s.wrote = 0
	s.headerBytes = 0
}

// Respond moves to the response phase of the same request.
func (s *State) Respond() {
	s.phase = PhaseResponse
	s.respBodyOff = 0
	s.respBodyWrote = false
}

// End forgets the request, so nothing of it is retained after it finishes.
func (s *State) End() {
	s.rc = nil
	s.phase = PhaseNone
	s.features = s.base
}

func (s *State) headerLimit() int {
	if s.Limits.HeaderBytes > 0 {
		return s.Limits.HeaderBytes
	}
	return DefaultHeaderBytes
}

func (s *State) bodyLimit() int {
	if s.Limits.BodyBytes > 0 {
		return s.Limits.BodyBytes
	}
	return DefaultBodyBytes
}

// Phase returns the running phase.
func (s *State) Phase() Phase { return s.phase }

// Features returns the features enabled for the current request (or, outside one, for all).
func (s *State) Features() Feature {
	if s.phase == PhaseNone {
		return s.base
	}
	return s.features
}

// stateOf returns the state of the calling instance. A call without one is a host bug, but it
// must still not crash the gateway, so it traps the guest.
func stateOf(ctx context.Context) *State {
	if s, ok := ctx.Value(StateKey{}).(*State); ok && s != nil {
		return s
	}
	panic(errNoState)
}
