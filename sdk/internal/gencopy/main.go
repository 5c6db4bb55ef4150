// Command gencopy writes sdk/gosdk.txtar, the copy of the Go SDK module that the weir binary
// embeds (go:embed cannot reach into sdk/go, which is a module of its own). Run it with
// `go generate ./sdk` from the repository root, or from sdk/.
package main

import (
	"fmt"
	"os"

	"github.com/weir-gateway/weir/sdk"
)

func main() {
	names, data, err := sdk.GoSources("go")
	if err == nil {
		err = os.WriteFile("gosdk.txtar", sdk.FormatArchive(names, data), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gencopy:", err)
		os.Exit(1)
	}
}
