// inspect: answers every request itself with a plain-text report of what the host told it:
// method, URI, protocol, client address, config, the values of X-Multi, whether x-multi is
// among the header names, and the request body. It exercises every getter of the SDK.
import { Handler, Level, Request, Response, config, handle, logMessage, stop } from "../../assembly";
export { handle_request, handle_response } from "../../assembly";

class Inspect extends Handler {
  handleRequest(req: Request, resp: Response): u64 {
    const names = req.headers.names();
    let listed = "no";
    for (let i = 0; i < names.length; i++) {
      if (names[i] == "x-multi") listed = "yes";
    }
    const lines: string[] = [
      "method=" + req.method,
      "uri=" + req.uri,
      "protocol=" + req.protocolVersion,
      "source=" + req.sourceAddr,
      "config=" + config(),
      "multi=" + req.headers.values("X-Multi").join(","),
      "listed=" + listed,
      "body=" + req.body.readString(),
    ];
    logMessage(Level.Info, "inspect: answered " + req.uri);
    resp.statusCode = 200;
    resp.headers.set("Content-Type", "text/plain");
    // Line by line: every write after the first appends.
    for (let i = 0; i < lines.length; i++) {
      resp.body.write(lines[i] + "\n");
    }
    return stop();
  }
}

handle(new Inspect());
