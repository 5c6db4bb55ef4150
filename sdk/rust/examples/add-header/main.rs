//! add-header: tags every request with `X-Wasm: rust` on its way upstream, and every response
//! with `X-Wasm-Plugin: rust-add-header` on its way back.

struct AddHeader;

impl weir::Handler for AddHeader {
    fn init(&self) {
        // handle_response changes the response, which the ABI allows only with buffer_response.
        weir::enable_features(weir::FEATURE_BUFFER_RESPONSE);
    }

    fn handle_request(&self, req: &weir::Request, _resp: &weir::Response) -> weir::Next {
        req.headers().set("X-Wasm", "rust");
        weir::Next::Continue(0)
    }

    fn handle_response(&self, _ctx: u32, _req: &weir::Request, resp: &weir::Response, is_error: bool) {
        if !is_error {
            resp.headers().set("X-Wasm-Plugin", "rust-add-header");
        }
    }
}

weir::handler!(AddHeader);
