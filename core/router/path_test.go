package router

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/weir-gateway/weir/core/filter"
)

// runRaw matches r the way the engine does: the normal routes on the path's normal form (none
// when it has none), the raw routes on the path as given.
func runRaw(t *Table, routes []Route, r req) (string, string) {
	var params [filter.MaxParams]filter.Param
	n := -1
	norm, err := NormalizePath(nil, []byte(r.path))
	if err != nil {
		norm = nil
	}
	id, _ := t.MatchPaths([]byte(r.method), []byte(r.host), norm, []byte(r.path), r.header(), &params, &n)
	var ps []string
	for _, p := range params[:max(n, 0)] {
		ps = append(ps, p.Key+"="+string(p.Value))
	}
	if id < 0 {
		return "", strings.Join(ps, ",")
	}
	return routes[id].Name, strings.Join(ps, ",")
}

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		raw     string
		want    string
		wantErr error
	}{
		{"/", "/", nil},
		{"/a/b", "/a/b", nil},
		{"/a/b/", "/a/b/", nil},
		{"//admin", "/admin", nil},
		{"/a///b//", "/a/b/", nil},
		{"/./admin", "/admin", nil},
		{"/admin/.", "/admin/", nil},
		{"/admin/../public", "/public", nil},
		{"/admin/%2e%2e/public", "/public", nil},
		{"/admin/%2E%2e/public", "/public", nil},
		{"/admin/.%2e/", "/", nil},
		{"/..", "/", nil},
		{"/../../a", "/a", nil},
		{"/a/b/../../..", "/", nil},
		{"/a/..b/c", "/a/..b/c", nil},
		{"/a/...", "/a/...", nil},
		{"/%61dmin", "/admin", nil},
		{"/%7euser", "/~user", nil},
		{"/ADMIN", "/ADMIN", nil}, // case-sensitive
		{"/a%3fb", "/a%3Fb", nil},
		{"/a%3Bb;c=d", "/a%3Bb;c=d", nil},
		{"/x/..;/admin", "/x/..;/admin", nil}, // "..;" is not a dot segment
		{"/caf%c3%a9", "/caf%C3%A9", nil},
		{"/caf\xc3\xa9", "/caf%C3%A9", nil},
		{"/a{b}|c", "/a%7Bb%7D%7Cc", nil},
		{"/%25", "/%25", nil},
		{"/%252e%252e/", "/%252e%252e/", nil},
		{"/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,=", nil},

		{"", "", ErrPathNotAbsolute},
		{"admin", "", ErrPathNotAbsolute},
		{"/admin%2f..", "", ErrPathEncodedSep},
		{"/admin/..%2f", "", ErrPathEncodedSep},
		{"/admin%2F", "", ErrPathEncodedSep},
		{"/%5cadmin", "", ErrPathEncodedSep},
		{"/%5Cadmin", "", ErrPathEncodedSep},
		{"/a%00", "", ErrPathEncodedCtl},
		{"/a%0d%0a", "", ErrPathEncodedCtl},
		{"/a%7f", "", ErrPathEncodedCtl},
		{"/a%", "", ErrPathBadEscape},
		{"/a%2", "", ErrPathBadEscape},
		{"/a%zz", "", ErrPathBadEscape},
		{"/a%%30", "", ErrPathBadEscape},
		{"\\admin", "", ErrPathNotAbsolute},
		{"/\\admin", "", ErrPathBadByte},
		{"/a b", "", ErrPathBadByte},
		{"/a\x00", "", ErrPathBadByte},
		{"/a\tb", "", ErrPathBadByte},
		{"/a#f", "", ErrPathBadByte},
		{"/a\x7f", "", ErrPathBadByte},
	}
	for _, tc := range tests {
		got, err := NormalizePath([]byte("keep"), []byte(tc.raw))
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("NormalizePath(%q): error %v, want %v", tc.raw, err, tc.wantErr)
			continue
		}
		if string(got[:4]) != "keep" {
			t.Errorf("NormalizePath(%q) overwrote dst: %q", tc.raw, got)
		}
		if err == nil && string(got[4:]) != tc.want {
			t.Errorf("NormalizePath(%q) = %q, want %q", tc.raw, got[4:], tc.want)
		}
	}
}

func TestNormalizePathAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	raw := []byte("/api/v1/users/%7Ealice/../bob/posts")
	if n := testing.AllocsPerRun(100, func() { buf, _ = NormalizePath(buf[:0], raw) }); n != 0 {
		t.Errorf("NormalizePath allocates %.0f times, want 0", n)
	}
}

func BenchmarkNormalizePath(b *testing.B) {
	for _, bc := range []struct{ name, raw string }{
		{"plain", "/api/v1/users/12345/posts"},
		{"dirty", "/api//v1/./users/%7Ealice/../12345/posts%3f"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 256)
			raw := []byte(bc.raw)
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for i := 0; i < b.N; i++ {
				buf, _ = NormalizePath(buf[:0], raw)
			}
		})
	}
}

// TestRoutePatternsNormalized: route literals are put in normal form at compile time, so a
// route written with escapes or raw non-ASCII bytes matches every spelling of its path.
func TestRoutePatternsNormalized(t *testing.T) {
	routes := []Route{
		{Name: "cafe", PathPrefix: "/café/"},
		{Name: "tilde", Path: "/%7euser/{id}"},
		{Name: "lower-hex", Path: "/a%3fb"},
	}
	tab := mustCompile(t, routes)
	tests := []struct{ path, want string }{
		{"/caf%C3%A9/menu", "cafe"},
		{"/caf%c3%a9/menu", "cafe"},
		{"/caf\xc3\xa9/menu", "cafe"},
		{"/~user/7", "tilde"},
		{"/%7Euser/7", "tilde"},
		{"/a%3Fb", "lower-hex"},
		{"/a%3fb", "lower-hex"},
	}
	for _, tc := range tests {
		if got, _ := runRaw(tab, routes, get("h", tc.path)); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.path, got, tc.want)
		}
	}
	for _, bad := range []Route{{Path: "/a/../b"}, {Path: "/a//b/{x}"}, {Path: "/a%2fb"}, {PathPrefix: "/a%00"}} {
		if _, err := Compile([]Route{bad}); err == nil {
			t.Errorf("Compile(%+v): no error, want one", bad)
		}
		bad.Raw = true
		if _, err := Compile([]Route{bad}); err != nil {
			t.Errorf("Compile(%+v) as raw: %v", bad, err)
		}
	}
}

// TestRawRoutes: a raw route matches the path as received, and competes with the normal
// routes under the usual specificity rules.
func TestRawRoutes(t *testing.T) {
	routes := []Route{
		{Name: "admin", PathPrefix: "/admin"},
		{Name: "files-raw", PathPrefix: "/files/", Raw: true},
		{Name: "files-secret", PathPrefix: "/files/secret"},
		{Name: "exact-raw", Path: "/x/../y", Raw: true},
		{Name: "host-raw", Host: "raw.test", Raw: true},
		{Name: "all", PathPrefix: "/"},
	}
	tab := mustCompile(t, routes)
	if !tab.HasRaw() {
		t.Fatal("HasRaw: false, want true")
	}
	tests := []struct{ host, path, want string }{
		{"h", "/admin/../public", "all"},
		{"h", "/public/../admin", "admin"},
		{"h", "/files/a%2Fb", "files-raw"},         // no normal form: only a raw route takes it
		{"h", "/files/a/../../admin", "files-raw"}, // the longer raw prefix wins over /admin
		{"h", "/files/secret", "files-secret"},     // the longer normal prefix wins
		{"h", "/x/../y", "exact-raw"},              // an exact path beats every prefix
		{"h", "/y", "all"},
		{"h", "/a%2Fb", ""},                // no normal form and no raw route
		{"raw.test", "/admin", "host-raw"}, // host first (rule 1)
	}
	for _, tc := range tests {
		if got, _ := runRaw(tab, routes, get(tc.host, tc.path)); got != tc.want {
			t.Errorf("%s %s: got %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
	plain := mustCompile(t, routes[:1])
	if plain.HasRaw() {
		t.Error("HasRaw: true for a table without raw routes")
	}
}

// FuzzNormalizePath: the normal form is a fixed point, never holds what the policy refuses,
// and never leaves a dot segment or an empty one.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "//x", "/%2e%2e/", "/a%2fb", "/caf\xc3\xa9", "/%00", "/a/./b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := NormalizePath(nil, []byte(raw))
		if err != nil {
			return
		}
		again, err := NormalizePath(nil, got)
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("NormalizePath(%q) = %q, which normalises to %q, %v", raw, got, again, err)
		}
		for _, seg := range strings.Split(string(got[1:]), "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("NormalizePath(%q) = %q keeps a dot segment", raw, got)
			}
		}
		if bytes.Contains(got, []byte("//")) {
			t.Fatalf("NormalizePath(%q) = %q keeps an empty segment", raw, got)
		}
	})
}
