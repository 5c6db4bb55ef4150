package e2e

import (
	"os"
	"os/exec"
	"testing"
)

// TestGoSDKModule runs the Go SDK's own tests and vets it for both its targets: sdk/go is a
// separate module (plugins depend on it alone), so the main module's `go test ./...` and
// `go vet ./...` do not reach it.
func TestGoSDKModule(t *testing.T) {
	gobin := goBinary()
	for _, c := range []struct {
		env  []string
		args []string
	}{
		{nil, []string{"vet", "./..."}},
		{nil, []string{"test", "-count=1", "./..."}},
		{[]string{"GOOS=wasip1", "GOARCH=wasm"}, []string{"vet", "./..."}},
	} {
		cmd := exec.Command(gobin, c.args...)
		cmd.Dir = "../go"
		cmd.Env = append(os.Environ(), c.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%v go %v in sdk/go: %v\n%s", c.env, c.args, err, out)
		}
	}
}
