package wasmtest

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite config/plugins/hello.wasm")

// TestHelloIsCommitted keeps the bundled demo plugin equal to Hello's output; run with -update
// after changing Hello.
func TestHelloIsCommitted(t *testing.T) {
	const path = "../../../config/plugins/hello.wasm"
	want := Hello()
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./plugins/wasmhost/wasmtest -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: %d bytes, Hello() gives %d (run go test ./plugins/wasmhost/wasmtest -update)", path, len(got), len(want))
	}
}
