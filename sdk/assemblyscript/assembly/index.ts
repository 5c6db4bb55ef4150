// Weir plugin SDK for AssemblyScript: the http-wasm handler ABI.
//
// A plugin extends Handler, registers it with handle(), and re-exports the entry points:
//
//   import { Handler, Request, Response, Next, handle } from "weir-sdk";
//   export { handle_request, handle_response, _initialize } from "weir-sdk";
//   class Hello extends Handler {
//     handleRequest(req: Request, resp: Response): u64 { req.headers.set("X-Hello", "world"); return next(); }
//   }
//   handle(new Hello());
//
// Build (what `make plugins` runs; --exportStart makes top-level code run from _initialize):
//   asc plugin.ts -O3 --noAssert --exportStart _initialize --use abort=assembly/index/weirAbort -o plugin.wasm
//
// Memory rules (sdk/ABI.md): every buffer belongs to the plugin; the host writes into a buffer
// only when the whole value fits and otherwise returns the size it needs, so the getters here
// retry once with a buffer of exactly that size. Strings cross the boundary as UTF-8; the
// *Bytes methods take already-encoded ArrayBuffers and allocate nothing.

// ---- The raw host functions, exactly as the ABI defines them. ----

@external("http_handler", "enable_features")
export declare function enable_features(features: u32): u32;
@external("http_handler", "get_config")
export declare function get_config(buf: usize, buf_limit: u32): u32;
@external("http_handler", "log_enabled")
export declare function log_enabled(level: i32): u32;
@external("http_handler", "log")
export declare function log(level: i32, msg: usize, msg_len: u32): void;
@external("http_handler", "get_method")
export declare function get_method(buf: usize, buf_limit: u32): u32;
@external("http_handler", "set_method")
export declare function set_method(method: usize, method_len: u32): void;
@external("http_handler", "get_uri")
export declare function get_uri(buf: usize, buf_limit: u32): u32;
@external("http_handler", "set_uri")
export declare function set_uri(uri: usize, uri_len: u32): void;
@external("http_handler", "get_protocol_version")
export declare function get_protocol_version(buf: usize, buf_limit: u32): u32;
@external("http_handler", "get_source_addr")
export declare function get_source_addr(buf: usize, buf_limit: u32): u32;
@external("http_handler", "get_header_names")
export declare function get_header_names(kind: u32, buf: usize, buf_limit: u32): u64;
@external("http_handler", "get_header_values")
export declare function get_header_values(kind: u32, name: usize, name_len: u32, buf: usize, buf_limit: u32): u64;
@external("http_handler", "set_header_value")
export declare function set_header_value(kind: u32, name: usize, name_len: u32, value: usize, value_len: u32): void;
@external("http_handler", "add_header_value")
export declare function add_header_value(kind: u32, name: usize, name_len: u32, value: usize, value_len: u32): void;
@external("http_handler", "remove_header")
export declare function remove_header(kind: u32, name: usize, name_len: u32): void;
@external("http_handler", "read_body")
export declare function read_body(kind: u32, buf: usize, buf_limit: u32): u64;
@external("http_handler", "write_body")
export declare function write_body(kind: u32, body: usize, body_len: u32): void;
@external("http_handler", "get_status_code")
export declare function get_status_code(): u32;
@external("http_handler", "set_status_code")
export declare function set_status_code(code: u32): void;

// ---- Constants. ----

export namespace Feature {
  export const BufferRequest: u32 = 1;
  export const BufferResponse: u32 = 2;
  export const Trailers: u32 = 4;
}

export namespace Level {
  export const Debug: i32 = -1;
  export const Info: i32 = 0;
  export const Warn: i32 = 1;
  export const Error: i32 = 2;
}

// handleRequest's result is the ABI's ctx_next packing (ctx in the upper 32 bits, next in bit 0).

// next: run the rest of the chain, then handleResponse with reqCtx.
export function next(reqCtx: u32 = 0): u64 {
  return (<u64>reqCtx << 32) | 1;
}

// stop: the plugin wrote the response; the upstream is not called.
export function stop(): u64 {
  return 0;
}

// ---- Helpers. ----

// utf8 encodes s once, for the allocation-free *Bytes methods.
export function utf8(s: string): ArrayBuffer {
  return String.UTF8.encode(s);
}

// readField applies the buf/buf_limit convention: try the scratch buffer, and if the value is
// larger, retry once with a buffer of exactly the reported size.
const scratch = new ArrayBuffer(2048);

function readField(get: (buf: usize, limit: u32) => u32): ArrayBuffer {
  let n = get(changetype<usize>(scratch), <u32>scratch.byteLength);
  if (n <= <u32>scratch.byteLength) return scratch.slice(0, <i32>n);
  const big = new ArrayBuffer(<i32>n);
  const got = get(changetype<usize>(big), n);
  return got <= n ? big.slice(0, <i32>got) : new ArrayBuffer(0);
}

function fieldString(get: (buf: usize, limit: u32) => u32): string {
  return String.UTF8.decode(readField(get));
}

// Splits "a\0b\0" into its values.
function splitNul(raw: ArrayBuffer, count: u32): string[] {
  const out = new Array<string>(0);
  const p = changetype<usize>(raw);
  const len = raw.byteLength;
  let start = 0;
  for (let i = 0; i < len && <u32>out.length < count; i++) {
    if (load<u8>(p + i) == 0) {
      out.push(String.UTF8.decodeUnsafe(p + start, i - start));
      start = i + 1;
    }
  }
  return out;
}

// The plugin's config: as the host hands it over (JSON in Weir).
export function config(): string {
  return fieldString((b: usize, l: u32): u32 => get_config(b, l));
}

export function logMessage(level: i32, msg: string): void {
  const b = String.UTF8.encode(msg);
  log(level, changetype<usize>(b), <u32>b.byteLength);
}

export function logEnabled(level: i32): bool {
  return log_enabled(level) == 1;
}

// ---- Headers and bodies. ----

// One header set (request, response or their trailers). Names are case-insensitive.
export class Headers {
  constructor(readonly kind: u32) {}

  // The first value of name, or null when absent.
  get(name: string): string | null {
    const v = this.values(name);
    return v.length > 0 ? v[0] : null;
  }

  // Every value of name, in order.
  values(name: string): string[] {
    const n = String.UTF8.encode(name);
    const np = changetype<usize>(n);
    const nl = <u32>n.byteLength;
    let cl = get_header_values(this.kind, np, nl, changetype<usize>(scratch), <u32>scratch.byteLength);
    let len = <u32>cl;
    if (len <= <u32>scratch.byteLength) return splitNul(scratch.slice(0, <i32>len), <u32>(cl >> 32));
    const big = new ArrayBuffer(<i32>len);
    cl = get_header_values(this.kind, np, nl, changetype<usize>(big), len);
    return <u32>cl <= len ? splitNul(big, <u32>(cl >> 32)) : new Array<string>(0);
  }

  // Every header name, lowercased by the host.
  names(): string[] {
    let cl = get_header_names(this.kind, changetype<usize>(scratch), <u32>scratch.byteLength);
    let len = <u32>cl;
    if (len <= <u32>scratch.byteLength) return splitNul(scratch.slice(0, <i32>len), <u32>(cl >> 32));
    const big = new ArrayBuffer(<i32>len);
    cl = get_header_names(this.kind, changetype<usize>(big), len);
    return <u32>cl <= len ? splitNul(big, <u32>(cl >> 32)) : new Array<string>(0);
  }

  // Whether name is present, without copying its value.
  has(name: string): bool {
    const n = String.UTF8.encode(name);
    return (get_header_values(this.kind, changetype<usize>(n), <u32>n.byteLength, 0, 0) >> 32) != 0;
  }

  // Replaces every value of name with value.
  set(name: string, value: string): void {
    this.setBytes(String.UTF8.encode(name), String.UTF8.encode(value));
  }

  setBytes(name: ArrayBuffer, value: ArrayBuffer): void {
    set_header_value(this.kind, changetype<usize>(name), <u32>name.byteLength, changetype<usize>(value), <u32>value.byteLength);
  }

  // Appends one value to name.
  add(name: string, value: string): void {
    this.addBytes(String.UTF8.encode(name), String.UTF8.encode(value));
  }

  addBytes(name: ArrayBuffer, value: ArrayBuffer): void {
    add_header_value(this.kind, changetype<usize>(name), <u32>name.byteLength, changetype<usize>(value), <u32>value.byteLength);
  }

  // Removes every value of name.
  delete(name: string): void {
    const n = String.UTF8.encode(name);
    remove_header(this.kind, changetype<usize>(n), <u32>n.byteLength);
  }
}

// A request or response body. Reads continue where the last stopped; the first write of a
// phase replaces the body.
export class Body {
  constructor(readonly kind: u32) {}

  // Reads the rest of the body.
  readAll(): ArrayBuffer {
    let out = new Uint8Array(0);
    while (true) {
      const el = read_body(this.kind, changetype<usize>(scratch), <u32>scratch.byteLength);
      const n = <i32><u32>el;
      if (n > 0) {
        const next = new Uint8Array(out.length + n);
        next.set(out);
        memory.copy(changetype<usize>(next.buffer) + <usize>out.length, changetype<usize>(scratch), n);
        out = next;
      }
      if ((el >> 32) != 0) return out.buffer;
    }
  }

  readString(): string {
    return String.UTF8.decode(this.readAll());
  }

  writeBytes(data: ArrayBuffer): void {
    write_body(this.kind, changetype<usize>(data), <u32>data.byteLength);
  }

  write(s: string): void {
    this.writeBytes(String.UTF8.encode(s));
  }
}

// ---- Request and response. ----

export class Request {
  readonly headers: Headers = new Headers(0);
  // Needs Feature.Trailers.
  readonly trailers: Headers = new Headers(2);
  readonly body: Body = new Body(0);

  get method(): string {
    return fieldString((b: usize, l: u32): u32 => get_method(b, l));
  }
  set method(m: string) {
    const b = String.UTF8.encode(m);
    set_method(changetype<usize>(b), <u32>b.byteLength);
  }
  // The request target as sent: path and query, still percent-encoded.
  get uri(): string {
    return fieldString((b: usize, l: u32): u32 => get_uri(b, l));
  }
  // Replaces path and query; the value must already be percent-encoded.
  set uri(u: string) {
    const b = String.UTF8.encode(u);
    set_uri(changetype<usize>(b), <u32>b.byteLength);
  }
  get protocolVersion(): string {
    return fieldString((b: usize, l: u32): u32 => get_protocol_version(b, l));
  }
  // The client address, "ip:port" or "[ipv6]:port".
  get sourceAddr(): string {
    return fieldString((b: usize, l: u32): u32 => get_source_addr(b, l));
  }
}

// The response: the local one being built, or in handleResponse the upstream's.
export class Response {
  readonly headers: Headers = new Headers(1);
  // Needs Feature.Trailers.
  readonly trailers: Headers = new Headers(3);
  readonly body: Body = new Body(1);

  get statusCode(): u32 {
    return get_status_code();
  }
  set statusCode(code: u32) {
    set_status_code(code);
  }
}

// ---- The handler. ----

// A plugin. One instance of the module handles one request at a time; state kept in it may be
// dropped whenever the host recycles the instance.
export abstract class Handler {
  abstract handleRequest(req: Request, resp: Response): u64;
  // Runs after the rest of the chain when handleRequest returned next().
  handleResponse(reqCtx: u32, req: Request, resp: Response, isError: bool): void {}
}

let current: Handler | null = null;
const theRequest = new Request();
const theResponse = new Response();

// handle registers the plugin's handler. Call it from top-level code, which runs once per
// instance (from _initialize) before the first request; enable features there too.
export function handle(h: Handler): void {
  current = h;
}

export function handle_request(): u64 {
  const h = current;
  if (h === null) return next();
  return h.handleRequest(theRequest, theResponse);
}

export function handle_response(reqCtx: u32, isError: u32): void {
  const h = current;
  if (h !== null) h.handleResponse(reqCtx, theRequest, theResponse, isError != 0);
}

// weirAbort replaces AssemblyScript's env.abort import (--use abort=...): the message goes to
// the host log and the call traps, which the host answers per the plugin's fail policy.
export function weirAbort(msg: string | null, file: string | null, line: u32, column: u32): void {
  if (msg !== null) logMessage(Level.Error, msg);
  unreachable();
}
