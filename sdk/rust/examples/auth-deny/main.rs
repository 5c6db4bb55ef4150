//! auth-deny: answers 401 with a JSON body, without calling the upstream, unless the request
//! carries `Authorization: Bearer letmein`.

struct AuthDeny;

impl weir::Handler for AuthDeny {
    fn handle_request(&self, req: &weir::Request, resp: &weir::Response) -> weir::Next {
        if req.headers().get("Authorization").as_deref() == Some("Bearer letmein") {
            return weir::Next::Continue(0);
        }
        resp.set_status_code(401);
        resp.headers().set("Content-Type", "application/json");
        resp.headers().set("WWW-Authenticate", "Bearer");
        resp.body().write_str(r#"{"error":"unauthorized"}"#);
        weir::Next::Stop
    }
}

weir::handler!(AuthDeny);
