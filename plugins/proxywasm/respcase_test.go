package proxywasm

import (
	"testing"
)

// TestResponseFieldsInAnyCase: an upstream's response keeps its fields' case (the proxy reads
// it without normalizing), yet a guest's lowercase names find, replace and remove them.
func TestResponseFieldsInAnyCase(t *testing.T) {
	e := newHostEnv(t)
	e.h.response = true
	rh := &e.h.c.Response.Header
	rh.DisableNormalizing()
	rh.Set("X-User", "a")
	rh.SetContentType("text/plain")
	ret, retSize := uint32(3100), uint32(3104)
	get := func(name string) (uint64, string) {
		k, kn := e.put(3000, name)
		st := e.callIn(e.h, proxyGetHeaderMapValue, mapResponseHeaders, k, kn, uint64(ret), uint64(retSize))
		if st != statusOK {
			return st, ""
		}
		return st, e.got(ret, retSize)
	}
	for name, want := range map[string]string{"x-user": "a", "content-type": "text/plain"} {
		if st, got := get(name); st != statusOK || got != want {
			t.Errorf("get %s: status %d %q, want %q", name, st, got, want)
		}
	}
	k, kn := e.put(3000, "x-user")
	v, vn := e.put(3050, "b")
	if st := e.callIn(e.h, proxyReplaceHeaderMapValue, mapResponseHeaders, k, kn, v, vn); st != statusOK {
		t.Fatalf("replace: status %d", st)
	}
	n := 0
	rh.VisitAll(func(k, val []byte) {
		if string(k) == "X-User" || string(k) == "x-user" {
			n++
			if string(val) != "b" {
				t.Errorf("x-user = %q after replace, want b", val)
			}
		}
	})
	if n != 1 {
		t.Errorf("%d x-user fields after replace, want 1", n)
	}
	if st := e.callIn(e.h, proxyRemoveHeaderMapValue, mapResponseHeaders, k, kn); st != statusOK {
		t.Fatalf("remove: status %d", st)
	}
	if st, got := get("x-user"); st != statusNotFound {
		t.Errorf("x-user after remove: status %d %q, want NotFound", st, got)
	}
	args := append(pathArgs(e, "response.headers.content-type"), uint64(ret), uint64(retSize))
	if st := e.callIn(e.h, proxyGetProperty, args...); st != statusOK || e.got(ret, retSize) != "text/plain" {
		t.Errorf("property response.headers.content-type: status %d %q", st, e.got(ret, retSize))
	}
}
