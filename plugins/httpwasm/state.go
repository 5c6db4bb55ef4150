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
	"github.com/weir-gateway/weir/core/httpsyntax"
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
	http10                      bool

	// What the guest made of the response in handle_request, kept across next (see Next and
	// Respond). respTouched and statusSet are set by the host functions that change the
	// response before next; the rest is filled in by Next.
	respTouched, statusSet bool
	pendHeader             fasthttp.ResponseHeader
	pendBody               []byte
	pendStatus             int
	pendBodySet            bool

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
	s.http10 = !rc.Request.Header.IsHTTP11()
	s.respTouched, s.statusSet, s.pendBodySet = false, false, false
}

// Next records, when handle_request returned next=1, what the guest put in the response:
// the rest of the chain (the upstream above all) replaces the response, and MergeResponse merges
// the guest's part back, as the ABI's reference host does. A guest that left the response
// alone costs nothing here.
func (s *State) Next() {
	if !s.respTouched {
		return
	}
	resp := &s.rc.Response
	resp.Header.CopyTo(&s.pendHeader)
	s.pendStatus = resp.StatusCode()
	if s.respBodyWrote {
		s.pendBody = append(s.pendBody[:0], resp.Body()...)
		s.pendBodySet = true
	}
}

// Respond moves to the response phase of the same request.
func (s *State) Respond() {
	s.phase = PhaseResponse
	s.respBodyOff = 0
	s.respBodyWrote = false
}

// MergeResponse runs after the rest of the chain and before Respond, when handle_request
// returned next=1. It merges into the response the chain produced what the guest set in
// handle_request (recorded by Next), following the reference host
// (whose guest writes to the same response writer the next handler does):
//
//   - Headers: every field the guest set is kept, and the next response's own fields are added
//     to them, so both are sent. A field that holds one value (Content-Type, Content-Encoding,
//     Server) keeps the next response's value, which describes its body. A value already
//     present is not repeated.
//   - Body: the guest's bytes come first, the next response's body follows.
//   - Status: without buffer_response the guest's status stays (the reference host has sent it
//     already); with it the next response's status replaces it, and handle_response may set
//     it again.
//
// failed (the host could not produce a response; the gateway's error answer is in place)
// keeps the error's status and body and merges the headers only. A body that must be
// assembled from a streamed upstream body is read within the plugin's max_body_bytes; past
// it MergeResponse returns a Trap with status 502 and changes nothing.
func (s *State) MergeResponse(failed bool) error {
	if !s.respTouched {
		return nil
	}
	resp := &s.rc.Response
	if s.pendBodySet && !failed {
		if err := s.prependBody(resp); err != nil {
			return err
		}
	}
	mergeHeader(&resp.Header, &s.pendHeader)
	if s.statusSet && !failed && s.features&FeatureBufferResponse == 0 {
		resp.SetStatusCode(s.pendStatus)
	}
	return nil
}

// prependBody puts the guest's body before resp's.
func (s *State) prependBody(resp *fasthttp.Response) error {
	if resp.IsBodyStream() {
		// fasthttp closes a body stream it is told to replace, so the upstream's stream is
		// read whole here; the result is bounded like any body buffered for the guest.
		limit := s.bodyLimit() - len(s.pendBody)
		if cl := resp.Header.ContentLength(); cl > limit {
			return tooLarge("handle_response", fasthttp.StatusBadGateway, "guest and upstream response body", s.bodyLimit())
		}
		b, err := readLimited(resp.BodyStream(), max(limit, 0))
		switch {
		case err != nil:
			return &Trap{Func: "handle_response", Msg: "read response body: " + err.Error(), Status: fasthttp.StatusBadGateway}
		case len(b) > limit:
			return tooLarge("handle_response", fasthttp.StatusBadGateway, "guest and upstream response body", s.bodyLimit())
		}
		s.pendBody = append(s.pendBody, b...)
	} else {
		s.pendBody = append(s.pendBody, resp.Body()...)
	}
	resp.SetBody(s.pendBody) // copies, and closes a stream
	return nil
}

// mergeHeader adds the fields of guest to dst (see Respond).
func mergeHeader(dst, guest *fasthttp.ResponseHeader) {
	for name := range guest.Trailers() {
		_ = dst.AddTrailerBytes(name)
	}
	for k, v := range guest.All() {
		switch {
		case ownedHeader(k):
			continue
		case httpsyntax.EqualFold(k, "Content-Type"), httpsyntax.EqualFold(k, "Content-Encoding"),
			httpsyntax.EqualFold(k, "Server"):
			if len(dst.PeekBytes(k)) > 0 {
				continue
			}
		}
		if hasValue(dst.PeekAll(b2s(k)), v) {
			continue
		}
		dst.AddBytesKV(k, v)
	}
}

func hasValue(vals [][]byte, v []byte) bool {
	for _, x := range vals {
		if string(x) == string(v) {
			return true
		}
	}
	return false
}

// End forgets the request, so nothing of it is retained after it finishes.
func (s *State) End() {
	if cap(s.pendBody) > 64<<10 {
		s.pendBody = nil // a large one-off body is not held for the instance's life
	}
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
