package runtime

import (
	"encoding/binary"
	"testing"

	"github.com/weir-gateway/weir/plugins/runtime/wasmtest"
)

// step is one host call made by a test guest: fn with i32 args, its result (if any) stored
// little-endian at store (-1 drops it).
type step struct {
	fn    string
	args  []int32
	store int32
}

// call is a step whose result is dropped (or that has none).
func call(fn string, args ...int32) step { return step{fn: fn, args: args, store: -1} }

// callTo is a step whose result is stored at off.
func callTo(off int32, fn string, args ...int32) step { return step{fn: fn, args: args, store: off} }

// strings used by test guests live at fixed offsets.
const (
	offA      = 0    // first string
	offB      = 256  // second string
	offResult = 512  // results of the first steps (8 bytes apart)
	offBuf    = 1024 // buffers hosts write into
)

// probeGuest builds a guest whose handle_request runs req then returns next (with ctx 7 in
// the high half), and whose handle_response runs resp. a and b are placed at offA and offB.
func probeGuest(a, b string, next int64, req, resp []step) []byte {
	names := map[string]bool{}
	var imports []string
	for _, s := range append(append([]step{}, req...), resp...) {
		if !names[s.fn] {
			names[s.fn] = true
			imports = append(imports, s.fn)
		}
	}
	g := wasmtest.Guest{Imports: imports, Data: []wasmtest.Data{{Offset: offA, Bytes: []byte(a)}, {Offset: offB, Bytes: []byte(b)}}}
	emit := func(steps []step) *wasmtest.Code {
		c := wasmtest.NewCode()
		for _, s := range steps {
			sig := wasmtest.HTTPHandler[s.fn]
			if s.store >= 0 && len(sig.Results) == 1 {
				c.I32(s.store)
			}
			for _, a := range s.args {
				c.I32(a)
			}
			c.Call(g.Fn(s.fn))
			if len(sig.Results) == 1 {
				switch {
				case s.store < 0:
					c.Drop()
				case sig.Results[0] == wasmtest.I64:
					c.I64Store()
				default:
					c.I32Store()
				}
			}
		}
		return c
	}
	g.HandleRequest = emit(req).I64(7<<32 | next)
	g.HandleResponse = emit(resp)
	// handle_response records its reqCtx and isError parameters at offResult+504/508.
	g.HandleResponse.I32(offResult + 504).LocalGet(0).I32Store().I32(offResult + 508).LocalGet(1).I32Store()
	return g.Module().Encode()
}

// memOf returns a copy of n bytes at off of f's single idle instance.
func memOf(t *testing.T, f *Filter, off, n uint32) []byte {
	t.Helper()
	select {
	case in := <-f.m.idle:
		defer func() { f.m.idle <- in }()
		b, ok := in.mod.Memory().Read(off, n)
		if !ok {
			t.Fatalf("read %d bytes at %d: out of range", n, off)
		}
		return append([]byte(nil), b...)
	default:
		t.Fatal("no idle instance to inspect (the guest's instance was discarded)")
		return nil
	}
}

func u64At(b []byte, i int) uint64 { return binary.LittleEndian.Uint64(b[i*8:]) }
