package wasmhost

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/plugins/httpwasm"
)

const (
	kReq   = httpwasm.HeaderRequest
	kResp  = httpwasm.HeaderResponse
	kReqT  = httpwasm.HeaderRequestTrailers
	kRespT = httpwasm.HeaderResponseTrailers
)

// TestGetters covers every host function that writes a value into guest memory: the returned
// length (or count_len) and the bytes written, with a limit that fits and one that does not.
func TestGetters(t *testing.T) {
	setup := func(rc *fasthttp.RequestCtx) {
		rc.Request.Header.Add("Accept", "a")
		rc.Request.Header.Add("Accept", "b")
		rc.Request.Header.Set("X-One", "1")
	}
	tests := []struct {
		name     string
		a        string
		step     func(limit int32) step
		wantRet  uint64
		wantMem  string
		phaseRes bool // run in handle_response
	}{
		{"get_method", "", func(l int32) step { return callTo(offResult, "get_method", offBuf, l) }, 3, "GET", false},
		{"get_uri", "", func(l int32) step { return callTo(offResult, "get_uri", offBuf, l) }, 8, "/a/b?q=1", false},
		{"get_protocol_version", "", func(l int32) step { return callTo(offResult, "get_protocol_version", offBuf, l) }, 8, "HTTP/1.1", false},
		{"get_source_addr", "", func(l int32) step { return callTo(offResult, "get_source_addr", offBuf, l) }, 13, "10.1.2.3:4567", false},
		{"get_config", "", func(l int32) step { return callTo(offResult, "get_config", offBuf, l) }, 14, `{"CamelKey":1}`, false},
		{"get_header_values", "accept", func(l int32) step {
			return callTo(offResult, "get_header_values", kReq, offA, 6, offBuf, l)
		}, 2<<32 | 4, "a\x00b\x00", false},
		{"get_header_values missing", "x-none", func(l int32) step {
			return callTo(offResult, "get_header_values", kReq, offA, 6, offBuf, l)
		}, 0, "", false},
		{"get_header_values response", "x-upstream", func(l int32) step {
			return callTo(offResult, "get_header_values", kResp, offA, 10, offBuf, l)
		}, 1<<32 | 4, "yes\x00", true},
		{"get_header_names request", "", func(l int32) step {
			return callTo(offResult, "get_header_names", kReq, offBuf, l)
		}, 3<<32 | 18, "host\x00accept\x00x-one\x00", false},
		{"get_header_names trailers without feature", "", func(l int32) step {
			return callTo(offResult, "get_header_names", kReqT, offBuf, l)
		}, 0, "", false},
	}
	for _, tt := range tests {
		for _, fits := range []bool{true, false} {
			name := tt.name + map[bool]string{true: "/fits", false: "/too_small"}[fits]
			t.Run(name, func(t *testing.T) {
				limit := int32(1024)
				if !fits {
					limit = int32(uint32(tt.wantRet)) - 1
					if limit < 0 {
						limit = 0
					}
				}
				var req, resp []step
				if tt.phaseRes {
					resp = []step{tt.step(limit)}
				} else {
					req = []step{tt.step(limit)}
				}
				spec := testSpec("get", probeGuest(tt.a, "", 1, req, resp))
				spec.Config = []byte(`{"CamelKey":1}`)
				f := newTestFilter(t, spec)
				rc := newRequest("GET", "/a/b?q=1")
				setup(rc)
				serve(f, rc)
				mem := memOf(t, f, 0, 2048)
				got := u64At(mem[offResult:], 0)
				if !strings.HasPrefix(tt.name, "get_header_") {
					got &= 0xffffffff // an i32 result; header getters return an i64 count_len
				}
				if got != tt.wantRet {
					t.Fatalf("result = %#x, want %#x (mem %q)", got, tt.wantRet, bytes.TrimRight(mem[offBuf:offBuf+64], "\x00"))
				}
				wantMem := tt.wantMem
				if !fits {
					wantMem = ""
				}
				if gotMem := string(mem[offBuf : offBuf+len(tt.wantMem)]); strings.Trim(gotMem, "\x00") != strings.Trim(wantMem, "\x00") {
					t.Errorf("memory = %q, want %q", gotMem, wantMem)
				}
			})
		}
	}
}

func TestStatusAndContext(t *testing.T) {
	wasm := probeGuest("", "", 1, nil, []step{callTo(offResult, "get_status_code")})
	f := newTestFilter(t, testSpec("status", wasm))
	rc := newRequest("GET", "/")
	serve(f, rc)
	mem := memOf(t, f, 0, 2048)
	if got := u64At(mem[offResult:], 0) & 0xffffffff; got != 201 {
		t.Errorf("get_status_code in handle_response = %d, want 201", got)
	}
	if got := binary.LittleEndian.Uint32(mem[offResult+504:]); got != 7 {
		t.Errorf("handle_response reqCtx = %d, want 7 (the high half of ctx_next)", got)
	}
	if got := binary.LittleEndian.Uint32(mem[offResult+508:]); got != 0 {
		t.Errorf("handle_response isError = %d, want 0", got)
	}
}

func TestReadRequestBodyInChunks(t *testing.T) {
	wasm := probeGuest("", "", 1, []step{
		callTo(offResult, "read_body", httpwasm.BodyRequest, offBuf, 5),
		callTo(offResult+8, "read_body", httpwasm.BodyRequest, offBuf+5, 100),
		callTo(offResult+16, "read_body", httpwasm.BodyRequest, offBuf+100, 100),
	}, nil)
	f := newTestFilter(t, testSpec("body", wasm))
	rc := newRequest("POST", "/")
	rc.Request.SetBodyString("hello world")
	serve(f, rc)
	seen := string(rc.Request.Body())
	mem := memOf(t, f, 0, 2048)
	for i, want := range []uint64{5, 1<<32 | 6, 1 << 32} {
		if got := u64At(mem[offResult:], i); got != want {
			t.Errorf("read %d = %#x, want %#x", i, got, want)
		}
	}
	if got := string(mem[offBuf : offBuf+11]); got != "hello world" {
		t.Errorf("guest read %q", got)
	}
	if seen != "hello world" {
		t.Errorf("body after the guest read it = %q; the next handler must still see it", seen)
	}
}

func TestReadResponseBody(t *testing.T) {
	for _, buffered := range []bool{true, false} {
		req := []step{}
		if buffered {
			req = append(req, call("enable_features", int32(httpwasm.FeatureBufferResponse)))
		}
		wasm := probeGuest("", "", 1, req, []step{callTo(offResult, "read_body", httpwasm.BodyResponse, offBuf, 100)})
		f := newTestFilter(t, testSpec("rbody", wasm))
		serve(f, newRequest("GET", "/"))
		mem := memOf(t, f, 0, 2048)
		got := u64At(mem[offResult:], 0)
		want := uint64(1<<32 | 13)
		if !buffered {
			want = 1 << 32 // EOF: without buffering the body counts as already sent
		}
		if got != want {
			t.Errorf("buffered=%v: read_body = %#x, want %#x", buffered, got, want)
		}
	}
}

// TestSetters covers every host function that changes the request or response.
func TestSetters(t *testing.T) {
	tests := []struct {
		name  string
		a, b  string
		next  int64
		req   []step
		resp  []step
		check func(t *testing.T, rc *fasthttp.RequestCtx, reached bool)
	}{
		{"set_method", "POST", "", 1, []step{call("set_method", offA, 4)}, nil, func(t *testing.T, rc *fasthttp.RequestCtx, _ bool) {
			if got := string(rc.Request.Header.Method()); got != "POST" {
				t.Errorf("method = %q", got)
			}
		}},
		{"set_uri", "/new/path?x=1", "", 1, []step{call("set_uri", offA, 13)}, nil, func(t *testing.T, rc *fasthttp.RequestCtx, _ bool) {
			if got := string(rc.Request.URI().RequestURI()); got != "/new/path?x=1" {
				t.Errorf("uri = %q", got)
			}
		}},
		{"set_header_value request", "X-Hi", "there", 1, []step{call("set_header_value", kReq, offA, 4, offB, 5)}, nil, func(t *testing.T, rc *fasthttp.RequestCtx, _ bool) {
			if got := string(rc.Request.Header.Peek("X-Hi")); got != "there" {
				t.Errorf("X-Hi = %q", got)
			}
		}},
		{"add_header_value request", "Accept", "text/x", 1, []step{call("add_header_value", kReq, offA, 6, offB, 6)}, nil, func(t *testing.T, rc *fasthttp.RequestCtx, _ bool) {
			if got := len(rc.Request.Header.PeekAll("Accept")); got != 2 {
				t.Errorf("Accept values = %d, want 2", got)
			}
		}},
		{"remove_header request", "X-Drop", "", 1, []step{call("remove_header", kReq, offA, 6)}, nil, func(t *testing.T, rc *fasthttp.RequestCtx, _ bool) {
			if rc.Request.Header.Peek("X-Drop") != nil {
				t.Error("X-Drop still there")
			}
		}},
		{"write_body request", "new body", "", 1, []step{call("write_body", httpwasm.BodyRequest, offA, 4), call("write_body", httpwasm.BodyRequest, offA+3, 5)}, nil, func(t *testing.T, rc *fasthttp.RequestCtx, _ bool) {
			if got := string(rc.Request.Body()); got != "new  body" {
				t.Errorf("request body = %q", got)
			}
		}},
		{"local response", "X-Why", "denied", 0, []step{
			call("set_status_code", 403),
			call("set_header_value", kResp, offA, 5, offB, 6),
			call("write_body", httpwasm.BodyResponse, offB, 6),
		}, nil, func(t *testing.T, rc *fasthttp.RequestCtx, reached bool) {
			if reached {
				t.Error("next=0 must not reach the upstream")
			}
			if rc.Response.StatusCode() != 403 || string(rc.Response.Body()) != "denied" || string(rc.Response.Header.Peek("X-Why")) != "denied" {
				t.Errorf("response = %d %q %q", rc.Response.StatusCode(), rc.Response.Body(), rc.Response.Header.Peek("X-Why"))
			}
		}},
		{"response phase with buffer_response", "X-Resp", "changed", 1,
			[]step{call("enable_features", int32(httpwasm.FeatureBufferResponse))},
			[]step{
				call("set_status_code", 202),
				call("set_header_value", kResp, offA, 6, offB, 7),
				call("remove_header", kResp, offA+2, 0+4), // "Resp" is not a header: a no-op
				call("write_body", httpwasm.BodyResponse, offB, 7),
			}, func(t *testing.T, rc *fasthttp.RequestCtx, reached bool) {
				if !reached || rc.Response.StatusCode() != 202 || string(rc.Response.Body()) != "changed" || string(rc.Response.Header.Peek("X-Resp")) != "changed" {
					t.Errorf("response = %d %q %q", rc.Response.StatusCode(), rc.Response.Body(), rc.Response.Header.Peek("X-Resp"))
				}
			}},
		{"trailers with feature", "X-Trailer", "v", 0,
			[]step{
				call("enable_features", int32(httpwasm.FeatureTrailers)),
				call("set_header_value", kRespT, offA, 9, offB, 1),
				callTo(offResult, "get_header_names", kRespT, offBuf, 100),
			}, nil, func(t *testing.T, rc *fasthttp.RequestCtx, _ bool) {
				if got := string(rc.Response.Header.Peek("X-Trailer")); got != "v" {
					t.Errorf("trailer value = %q", got)
				}
				if keys := rc.Response.Header.PeekTrailerKeys(); len(keys) != 1 {
					t.Errorf("trailer keys = %q, want [X-Trailer]", keys)
				}
			}},
		{"enable_features reports all", "", "", 1, []step{callTo(offResult, "enable_features", 0)}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFilter(t, testSpec("set", probeGuest(tt.a, tt.b, tt.next, tt.req, tt.resp)))
			rc := newRequest("GET", "/")
			rc.Request.Header.Set("Accept", "*/*")
			rc.Request.Header.Set("X-Drop", "1")
			reached := serve(f, rc)
			if f.m.stats.Traps.Load() != 0 {
				t.Fatalf("guest trapped: %v", rc.Response.Body())
			}
			if tt.check != nil {
				tt.check(t, rc, reached)
			}
			if tt.name == "enable_features reports all" {
				if got := u64At(memOf(t, f, 0, 2048)[offResult:], 0) & 0xffffffff; got != uint64(httpwasm.Supported) {
					t.Errorf("enable_features = %d, want %d", got, httpwasm.Supported)
				}
			}
		})
	}
}

// TestMisuseTraps checks that the host traps where the ABI says it must, and that a trap
// answers per the fail policy (closed: 500) and is counted.
func TestMisuseTraps(t *testing.T) {
	tests := []struct {
		name      string
		a, b      string
		req, resp []step
	}{
		{"response header after next without buffer_response", "X-A", "1", nil, []step{call("set_header_value", kResp, offA, 3, offB, 1)}},
		{"status after next without buffer_response", "", "", nil, []step{call("set_status_code", 204)}},
		{"response body after next without buffer_response", "x", "", nil, []step{call("write_body", httpwasm.BodyResponse, offA, 1)}},
		{"request header in handle_response", "X-A", "1", nil, []step{call("set_header_value", kReq, offA, 3, offB, 1)}},
		{"set_method in handle_response", "PUT", "", nil, []step{call("set_method", offA, 3)}},
		{"set_uri in handle_response", "/x", "", nil, []step{call("set_uri", offA, 2)}},
		{"request body in handle_response", "x", "", nil, []step{call("write_body", httpwasm.BodyRequest, offA, 1)}},
		{"trailer without feature", "X-T", "1", []step{call("set_header_value", kReqT, offA, 3, offB, 1)}, nil},
		{"read_body zero limit", "", "", []step{call("read_body", httpwasm.BodyRequest, offBuf, 0)}, nil},
		{"status out of range", "", "", []step{call("set_status_code", 42)}, nil},
		{"CRLF in header value", "X-A", "a\r\nEvil: 1", []step{call("set_header_value", kReq, offA, 3, offB, 10)}, nil},
		{"invalid header name", "Bad Name", "1", []step{call("set_header_value", kReq, offA, 8, offB, 1)}, nil},
		{"empty header name", "", "1", []step{call("add_header_value", kReq, offA, 0, offB, 1)}, nil},
		{"unknown header kind", "X-A", "1", []step{call("set_header_value", 9, offA, 3, offB, 1)}, nil},
		{"unknown body kind", "", "", []step{call("read_body", 5, offBuf, 10)}, nil},
		{"invalid method", "G T", "", []step{call("set_method", offA, 3)}, nil},
		{"uri without slash", "x", "", []step{call("set_uri", offA, 1)}, nil},
		{"uri with space", "/a b", "", []step{call("set_uri", offA, 4)}, nil},
		{"get buffer out of bounds", "", "", []step{call("get_method", -16, 100)}, nil},
		{"name pointer out of bounds", "", "", []step{call("get_header_values", kReq, 65530, 100, offBuf, 10)}, nil},
		{"huge header write", "X-A", "", []step{call("set_header_value", kReq, offA, 3, offB, httpwasm.MaxFieldLen)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFilter(t, testSpec("trap", probeGuest(tt.a, tt.b, 1, tt.req, tt.resp)))
			rc := newRequest("GET", "/")
			serve(f, rc)
			st := f.m.stats
			if st.Traps.Load() != 1 || st.Discarded.Load() != 1 {
				t.Errorf("traps = %d, discarded = %d; want 1 and 1", st.Traps.Load(), st.Discarded.Load())
			}
			if got := rc.Response.StatusCode(); got != 500 {
				t.Errorf("status = %d, want 500 (fail closed)", got)
			}
		})
	}
}

func TestLogging(t *testing.T) {
	var buf bytes.Buffer
	log := zerolog.New(&buf).Level(zerolog.InfoLevel)
	wasm := probeGuest("hello log", "", 1, []step{
		callTo(offResult, "log_enabled", httpwasm.LogDebug),
		callTo(offResult+8, "log_enabled", httpwasm.LogWarn),
		call("log", httpwasm.LogInfo, offA, 9),
		call("log", httpwasm.LogDebug, offA, 5),     // below the level: dropped
		call("log", httpwasm.LogError, 1<<30, 1000), // bad pointer: ignored, not a trap
	}, nil)
	spec := testSpec("log", wasm)
	m, err := Load(spec, log)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	f := &Filter{m: m, name: "log", release: func() error { return nil }}
	serve(f, newRequest("GET", "/"))
	mem := memOf(t, f, 0, 2048)
	if u64At(mem[offResult:], 0)&1 != 0 || u64At(mem[offResult:], 1)&1 != 1 {
		t.Errorf("log_enabled(debug, warn) = %d, %d; want 0, 1", u64At(mem[offResult:], 0), u64At(mem[offResult:], 1))
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 || !strings.Contains(buf.String(), `"message":"hello log"`) {
		t.Errorf("log output = %q, want one info line with the message", buf.String())
	}
	if m.stats.Traps.Load() != 0 {
		t.Error("a bad log pointer trapped")
	}
}
