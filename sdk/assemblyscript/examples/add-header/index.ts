// add-header: tags every request with "X-Wasm: assemblyscript" on its way upstream, and every
// response with "X-Wasm-Plugin: assemblyscript-add-header" on its way back.
import { Feature, Handler, Request, Response, enable_features, handle, next, utf8 } from "../../assembly";
export { handle_request, handle_response } from "../../assembly";

// Encoded once per instance, so a request allocates nothing.
const X_WASM = utf8("X-Wasm");
const AS = utf8("assemblyscript");
const X_WASM_PLUGIN = utf8("X-Wasm-Plugin");
const PLUGIN = utf8("assemblyscript-add-header");

class AddHeader extends Handler {
  handleRequest(req: Request, resp: Response): u64 {
    req.headers.setBytes(X_WASM, AS);
    return next();
  }

  handleResponse(reqCtx: u32, req: Request, resp: Response, isError: bool): void {
    if (!isError) resp.headers.setBytes(X_WASM_PLUGIN, PLUGIN);
  }
}

// handleResponse changes the response, which the ABI allows only with buffer_response.
enable_features(Feature.BufferResponse);
handle(new AddHeader());
