// auth-deny: answers 401 with a JSON body, without calling the upstream, unless the request
// carries "Authorization: Bearer letmein".
import { Handler, Request, Response, handle, next, stop } from "../../assembly";
export { handle_request, handle_response } from "../../assembly";

class AuthDeny extends Handler {
  handleRequest(req: Request, resp: Response): u64 {
    const auth = req.headers.get("Authorization");
    if (auth !== null && auth == "Bearer letmein") return next();
    resp.statusCode = 401;
    resp.headers.set("Content-Type", "application/json");
    resp.headers.set("WWW-Authenticate", "Bearer");
    resp.body.write('{"error":"unauthorized"}');
    return stop();
  }
}

handle(new AuthDeny());
