package wasmhost

import (
	"encoding/binary"
	"testing"

	"github.com/weir-gateway/weir/plugins/wasmhost/wasmtest"
)

// step is one host call made by a test guest (see wasmtest.Step).
type step = wasmtest.Step

var (
	call   = wasmtest.Call
	callTo = wasmtest.CallTo
)

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
	g := wasmtest.Guest{Imports: wasmtest.StepImports(req, resp), Data: []wasmtest.Data{{Offset: offA, Bytes: []byte(a)}, {Offset: offB, Bytes: []byte(b)}}}
	g.HandleRequest = g.Steps(wasmtest.NewCode(), req).I64(7<<32 | next)
	g.HandleResponse = g.Steps(wasmtest.NewCode(), resp)
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
