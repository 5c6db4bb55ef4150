package sdk

import (
	"bytes"
	"os"
	"testing"
)

// TestGoSDKCopyCurrent: the embedded copy of the Go SDK is what sdk/go holds.
func TestGoSDKCopyCurrent(t *testing.T) {
	names, data, err := GoSources("go")
	if err != nil {
		t.Fatal(err)
	}
	want := FormatArchive(names, data)
	got, err := os.ReadFile("gosdk.txtar")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("sdk/gosdk.txtar is stale: run go generate ./sdk")
	}
	for _, n := range names {
		if !bytes.Equal(ParseArchive(got)[n], data[n]) {
			t.Errorf("%s does not round-trip through the archive", n)
		}
	}
}

func TestFiles(t *testing.T) {
	for lang, want := range map[string]string{
		"go": "weirsdk/go.mod", "c": "weir.h", "rust": "weir/lib.rs", "assemblyscript": "assembly/weir.ts",
	} {
		fs, err := Files(lang)
		if err != nil || len(fs[want]) == 0 {
			t.Errorf("Files(%q) lacks %s (%v)", lang, want, err)
		}
	}
	if _, err := Files("cobol"); err == nil {
		t.Error("Files(cobol) did not fail")
	}
	if !bytes.Contains(PackageLock(), []byte(`"assemblyscript": "`+AssemblyScriptVersion+`"`)) {
		t.Errorf("package-lock.json does not pin assemblyscript %s", AssemblyScriptVersion)
	}
}
