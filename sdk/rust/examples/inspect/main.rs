//! inspect: answers every request itself with a plain-text report of what the host told it:
//! method, URI, protocol, client address, config, the values of X-Multi, whether x-multi is
//! among the header names, and the request body. It exercises every getter of the SDK.

struct Inspect;

impl weir::Handler for Inspect {
    fn handle_request(&self, req: &weir::Request, resp: &weir::Response) -> weir::Next {
        let h = req.headers();
        let listed = if h.names().iter().any(|n| n == "x-multi") { "yes" } else { "no" };
        let lines = [
            format!("method={}", req.method()),
            format!("uri={}", req.uri()),
            format!("protocol={}", req.protocol_version()),
            format!("source={}", req.source_addr()),
            format!("config={}", String::from_utf8_lossy(&weir::config())),
            format!("multi={}", h.values("X-Multi").join(",")),
            format!("listed={}", listed),
            format!("body={}", String::from_utf8_lossy(&req.body().read_all())),
        ];
        weir::log(weir::Level::Info, &format!("inspect: answered {}", req.uri()));
        resp.set_status_code(200);
        resp.headers().set("Content-Type", "text/plain");
        // Line by line: every write after the first appends.
        for l in lines.iter() {
            resp.body().write_str(l);
            resp.body().write_str("\n");
        }
        weir::Next::Stop
    }
}

weir::handler!(Inspect);
