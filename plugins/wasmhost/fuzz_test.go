package wasmhost

import (
	"sort"
	"testing"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/plugins/wasmhost/wasmtest"
)

// hostNames lists the http_handler functions in a fixed order for the fuzzer.
var hostNames = func() []string {
	var out []string
	for name := range wasmtest.HTTPHandler {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}()

// FuzzHostCall is the guest-memory boundary: any host function called with any pointers,
// lengths, kinds and levels, in either phase, with or without features, must trap or succeed —
// never panic the host, never leave an instance in the pool after a fault, and always leave a
// response behind.
func FuzzHostCall(f *testing.F) {
	f.Add(uint8(0), uint32(0), uint32(0), uint32(8), uint32(16), uint32(2), false, uint8(0))
	f.Add(uint8(3), uint32(1), uint32(0xfffffff0), uint32(100), uint32(0), uint32(0), true, uint8(2))
	f.Add(uint8(9), uint32(0), uint32(65530), uint32(100), uint32(1024), uint32(1<<31), false, uint8(7))
	f.Add(uint8(14), uint32(1), uint32(0), uint32(0), uint32(0), uint32(0), true, uint8(4))
	f.Fuzz(func(t *testing.T, fn uint8, a, b, c, d, e uint32, response bool, features uint8) {
		name := hostNames[int(fn)%len(hostNames)]
		args := []int32{int32(a), int32(b), int32(c), int32(d), int32(e)}[:len(wasmtest.HTTPHandler[name].Params)]
		steps := []step{call("enable_features", int32(features&7))}
		var req, resp []step
		if response {
			req, resp = steps, []step{call(name, args...)}
		} else {
			req = append(steps, call(name, args...))
		}
		spec := testSpec("fuzz", probeGuest("X-Name", "value", 1, req, resp))
		flt, err := NewFilter(filter.Env{Shared: filter.NewShared()}, spec)
		if err != nil {
			t.Fatal(err)
		}
		defer flt.Close()
		rc := newRequest("POST", "/fuzz?x=1")
		rc.Request.Header.Set("X-Name", "v")
		rc.Request.SetBodyString("body")
		serve(flt, rc)
		st := flt.m.stats.Values()
		if st.Traps+st.Timeouts != st.Discarded {
			t.Errorf("faults %d but discarded %d", st.Traps+st.Timeouts, st.Discarded)
		}
		if code := rc.Response.StatusCode(); code < 100 || code > 599 {
			t.Errorf("status %d", code)
		}
	})
}
