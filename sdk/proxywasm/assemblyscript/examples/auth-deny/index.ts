// auth-deny: a proxy-wasm filter in AssemblyScript with @solo-io/proxy-runtime. It answers 401
// itself, with a JSON body and "WWW-Authenticate: Bearer", without calling the upstream, unless
// the request carries "Authorization: Bearer letmein".
export * from "@solo-io/proxy-runtime/proxy"; // the callbacks the host calls
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context,
  send_local_response, HeaderPair, GrpcStatusValues,
} from "@solo-io/proxy-runtime";

class AuthDenyRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new AuthDeny(context_id, this);
  }
}

class AuthDeny extends Context {
  constructor(context_id: u32, root_context: AuthDenyRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    if (stream_context.headers.request.get("authorization") == "Bearer letmein") {
      return FilterHeadersStatusValues.Continue;
    }
    const headers = [
      new HeaderPair(String.UTF8.encode("content-type"), String.UTF8.encode("application/json")),
      new HeaderPair(String.UTF8.encode("www-authenticate"), String.UTF8.encode("Bearer")),
    ];
    // -1: no gRPC status (an HTTP answer).
    send_local_response(401, "unauthorized", String.UTF8.encode('{"error":"unauthorized"}'), headers, <GrpcStatusValues>-1);
    return FilterHeadersStatusValues.StopIteration; // the local reply ends the request
  }
}

registerRootContext((context_id: u32) => { return new AuthDenyRoot(context_id); }, "");
