package wasmhost

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/weir-gateway/weir/plugins/wasmhost/wasmtest"
)

func benchBare(b *testing.B, ensure bool) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(ensure))
	defer rt.Close(ctx)
	g := wasmtest.Guest{HandleRequest: wasmtest.NewCode().I64(1)}
	mod, err := rt.Instantiate(ctx, g.Module().Encode())
	if err != nil {
		b.Fatal(err)
	}
	fn := mod.ExportedFunction("handle_request")
	cc := &callCtx{done: make(chan struct{})}
	stack := make([]uint64, 2)
	b.ReportAllocs()
	for range b.N {
		if err := fn.CallWithStack(cc, stack); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWazeroCall measures one empty guest call, with and without wazero's per-call
// context watcher (WithCloseOnContextDone), to separate the runtime's cost from the host's.
func BenchmarkWazeroCall(b *testing.B) {
	b.Run("close_on_context_done", func(b *testing.B) { benchBare(b, true) })
	b.Run("plain", func(b *testing.B) { benchBare(b, false) })
}
