package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/plugins/httpwasm"
)

// BenchmarkGuest isolates what an SDK costs: one add-header request (handle_request and
// handle_response, each setting one header through Weir's real host functions) on a bare
// wazero instance, without the runtime's pool, deadline or fault handling. BenchmarkAddHeader
// minus this is what the runtime around the guest costs.
func BenchmarkGuest(b *testing.B) {
	for _, lang := range append(Languages[:len(Languages):len(Languages)], "wat") {
		b.Run(lang, func(b *testing.B) {
			bl := buildAll(b)[lang]
			if bl.failed != "" {
				b.Fatalf("building the %s examples failed:\n%s", lang, bl.failed)
			}
			if bl.skip != "" {
				b.Skipf("%s skipped: %s", lang, bl.skip)
			}
			code, err := os.ReadFile(filepath.Join(bl.dir, lang+"-add-header.wasm"))
			if err != nil {
				b.Fatal(err)
			}
			state := httpwasm.NewState(nil, zerolog.Nop())
			ctx := context.WithValue(context.Background(), httpwasm.StateKey{}, state)
			r := wazero.NewRuntime(ctx)
			defer r.Close(ctx)
			wasi_snapshot_preview1.MustInstantiate(ctx, r)
			if err := httpwasm.Instantiate(ctx, r); err != nil {
				b.Fatal(err)
			}
			mod, err := r.InstantiateWithConfig(ctx, code, wazero.NewModuleConfig().WithStartFunctions("_initialize", "_start"))
			if err != nil {
				b.Fatal(err)
			}
			hreq, hresp := mod.ExportedFunction("handle_request"), mod.ExportedFunction("handle_response")
			var rc fasthttp.RequestCtx
			rc.Request.SetRequestURI("/x")
			var stack [2]uint64
			run := func() {
				state.Begin(&rc)
				if err := hreq.CallWithStack(ctx, stack[:]); err != nil {
					b.Fatal(err)
				}
				state.Respond()
				stack[0], stack[1] = stack[0]>>32, 0
				if err := hresp.CallWithStack(ctx, stack[:]); err != nil {
					b.Fatal(err)
				}
				state.End()
			}
			run()
			if got := string(rc.Response.Header.Peek("X-Wasm-Plugin")); got != lang+"-add-header" {
				b.Fatalf("X-Wasm-Plugin %q, want %q", got, lang+"-add-header")
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run()
			}
		})
	}
}
