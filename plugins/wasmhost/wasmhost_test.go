package wasmhost

import (
	"testing"
)

func TestHeaderPluginSetsHeaderAndContinues(t *testing.T) {
	f := newTestFilter(t, testSpec("hdr", headerGuest()))
	rc := newRequest("GET", "/x")
	if !serve(f, rc) {
		t.Fatal("terminal not reached")
	}
	if got := string(rc.Request.Header.Peek("X-Plugin")); got != "on" {
		t.Errorf("X-Plugin = %q, want on", got)
	}
	if got := rc.Response.StatusCode(); got != 201 {
		t.Errorf("status = %d, want 201", got)
	}
	if n := f.Module().Stats().Calls.Load(); n != 2 {
		t.Errorf("calls = %d, want 2", n)
	}
}
