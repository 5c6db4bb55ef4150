// add-header: a proxy-wasm filter in AssemblyScript with @solo-io/proxy-runtime, the runtime
// Envoy and Istio users write AssemblyScript filters with. It tags every request with
// "X-Wasm: proxywasm-assemblyscript" on its way upstream, and every response with
// "X-Wasm-Plugin: proxywasm-assemblyscript-add-header" on its way back.
export * from "@solo-io/proxy-runtime/proxy"; // the callbacks the host calls
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context } from "@solo-io/proxy-runtime";

class AddHeaderRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new AddHeader(context_id, this);
  }
}

class AddHeader extends Context {
  constructor(context_id: u32, root_context: AddHeaderRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.request.replace("x-wasm", "proxywasm-assemblyscript");
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.replace("x-wasm-plugin", "proxywasm-assemblyscript-add-header");
    return FilterHeadersStatusValues.Continue;
  }
}

// Weir's root id is empty (plugin_root_id): the root context is registered under "".
registerRootContext((context_id: u32) => { return new AddHeaderRoot(context_id); }, "");
