//! Weir plugin SDK for Rust: the http-wasm handler ABI with no dependencies.
//!
//! Builds with Debian's `rustc` and `libstd-rust-dev-wasm32`, no cargo registry:
//!
//! ```sh
//! rustc --edition 2021 --target wasm32-wasi -O --crate-type rlib --crate-name weir src/lib.rs -o libweir.rlib
//! rustc --edition 2021 --target wasm32-wasi -O --crate-type cdylib --extern weir=libweir.rlib -L . plugin.rs -o plugin.wasm
//! ```
//! (newer toolchains call the target `wasm32-wasip1`).
//!
//! A plugin implements [`Handler`] and exports it with [`handler!`]:
//!
//! ```ignore
//! struct AddHeader;
//! impl weir::Handler for AddHeader {
//!     fn handle_request(&self, req: &weir::Request, _resp: &weir::Response) -> weir::Next {
//!         req.headers().set("X-Wasm", "rust");
//!         weir::Next::Continue(0)
//!     }
//! }
//! weir::handler!(AddHeader);
//! ```
//!
//! Memory rules (sdk/ABI.md): every buffer belongs to the plugin; the host writes into a buffer
//! only when the whole value fits and otherwise returns the size it needs, so the getters here
//! retry once with a buffer of exactly that size.

#![no_std]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

/// The raw host functions, exactly as the ABI defines them.
pub mod sys {
    #[link(wasm_import_module = "http_handler")]
    extern "C" {
        pub fn enable_features(features: u32) -> u32;
        pub fn get_config(buf: *mut u8, buf_limit: u32) -> u32;
        pub fn log_enabled(level: i32) -> u32;
        pub fn log(level: i32, msg: *const u8, msg_len: u32);
        pub fn get_method(buf: *mut u8, buf_limit: u32) -> u32;
        pub fn set_method(method: *const u8, method_len: u32);
        pub fn get_uri(buf: *mut u8, buf_limit: u32) -> u32;
        pub fn set_uri(uri: *const u8, uri_len: u32);
        pub fn get_protocol_version(buf: *mut u8, buf_limit: u32) -> u32;
        pub fn get_source_addr(buf: *mut u8, buf_limit: u32) -> u32;
        pub fn get_header_names(kind: u32, buf: *mut u8, buf_limit: u32) -> u64;
        pub fn get_header_values(
            kind: u32,
            name: *const u8,
            name_len: u32,
            buf: *mut u8,
            buf_limit: u32,
        ) -> u64;
        pub fn set_header_value(
            kind: u32,
            name: *const u8,
            name_len: u32,
            value: *const u8,
            value_len: u32,
        );
        pub fn add_header_value(
            kind: u32,
            name: *const u8,
            name_len: u32,
            value: *const u8,
            value_len: u32,
        );
        pub fn remove_header(kind: u32, name: *const u8, name_len: u32);
        pub fn read_body(kind: u32, buf: *mut u8, buf_limit: u32) -> u64;
        pub fn write_body(kind: u32, body: *const u8, body_len: u32);
        pub fn get_status_code() -> u32;
        pub fn set_status_code(status_code: u32);
    }
}

/// Feature flags for [`enable_features`].
pub const FEATURE_BUFFER_REQUEST: u32 = 1;
pub const FEATURE_BUFFER_RESPONSE: u32 = 2;
pub const FEATURE_TRAILERS: u32 = 4;

/// Log levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Level {
    Debug = -1,
    Info = 0,
    Warn = 1,
    Error = 2,
}

/// Asks the host for `features` and returns every feature it supports. Called from
/// [`Handler::init`] it lasts for the instance; called during a request, for that request only.
pub fn enable_features(features: u32) -> u32 {
    unsafe { sys::enable_features(features) }
}

/// The plugin's `config:` as the host hands it over (JSON in Weir).
pub fn config() -> Vec<u8> {
    read_field(|buf, limit| unsafe { sys::get_config(buf, limit) })
}

/// Writes `msg` to the host log at `level`.
pub fn log(level: Level, msg: &str) {
    unsafe { sys::log(level as i32, msg.as_ptr(), msg.len() as u32) }
}

/// Whether the host would keep a message at `level`; use it to skip formatting.
pub fn log_enabled(level: Level) -> bool {
    unsafe { sys::log_enabled(level as i32) == 1 }
}

/// What `handle_request` decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Run the rest of the chain, then `handle_response` with this request context.
    Continue(u32),
    /// The plugin wrote the response; the upstream is not called.
    Stop,
}

impl Next {
    /// The `ctx_next` packing: ctx in the upper 32 bits, next in the lowest bit.
    pub fn pack(self) -> i64 {
        match self {
            Next::Continue(ctx) => (((ctx as u64) << 32) | 1) as i64,
            Next::Stop => 0,
        }
    }
}

/// A plugin. One instance of the module handles one request at a time, so `&self` needs no
/// locking; state kept in it may be dropped whenever the host recycles the instance.
pub trait Handler {
    /// Runs once per instance, before its first request: the place for [`enable_features`]
    /// and parsing [`config`].
    fn init(&self) {}
    fn handle_request(&self, req: &Request, resp: &Response) -> Next;
    /// Runs after the rest of the chain when `handle_request` returned `Continue`.
    fn handle_response(&self, _req_ctx: u32, _req: &Request, _resp: &Response, _is_error: bool) {}
}

/// Exports `handle_request`, `handle_response` and `_initialize` for a [`Handler`] value (a
/// constant expression, e.g. a unit struct).
///
/// `_initialize` is the WASI reactor hook the host calls once per instance before any handler;
/// Rust has no stable constructor on wasm, so the macro defines it to run [`Handler::init`].
#[macro_export]
macro_rules! handler {
    ($h:expr) => {
        #[no_mangle]
        pub extern "C" fn _initialize() {
            $crate::Handler::init(&$h)
        }
        #[no_mangle]
        pub extern "C" fn handle_request() -> i64 {
            $crate::__run_request(&$h)
        }
        #[no_mangle]
        pub extern "C" fn handle_response(req_ctx: u32, is_error: u32) {
            $crate::__run_response(&$h, req_ctx, is_error)
        }
    };
}

#[doc(hidden)]
pub fn __run_request<H: Handler>(h: &H) -> i64 {
    h.handle_request(&Request(()), &Response(())).pack()
}

#[doc(hidden)]
pub fn __run_response<H: Handler>(h: &H, req_ctx: u32, is_error: u32) {
    h.handle_response(req_ctx, &Request(()), &Response(()), is_error != 0)
}

/// Reads a host field with the buf/buf_limit convention: try a stack buffer, and if the value
/// is larger, retry once with exactly the size the host reported.
fn read_field(f: impl Fn(*mut u8, u32) -> u32) -> Vec<u8> {
    let mut stack = [0u8; 256];
    let n = f(stack.as_mut_ptr(), stack.len() as u32) as usize;
    if n <= stack.len() {
        return stack[..n].to_vec();
    }
    let mut v = Vec::with_capacity(n);
    let got = f(v.as_mut_ptr(), n as u32) as usize;
    // The value can only change between the calls if the host is broken; never expose
    // bytes it did not write.
    unsafe { v.set_len(if got <= n { got } else { 0 }) };
    v
}

fn lossy(v: Vec<u8>) -> String {
    match String::from_utf8(v) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// The request being handled.
pub struct Request(());

impl Request {
    pub fn method(&self) -> String {
        lossy(read_field(|b, l| unsafe { sys::get_method(b, l) }))
    }
    pub fn set_method(&self, method: &str) {
        unsafe { sys::set_method(method.as_ptr(), method.len() as u32) }
    }
    /// The request target as sent: path and query, still percent-encoded.
    pub fn uri(&self) -> String {
        lossy(read_field(|b, l| unsafe { sys::get_uri(b, l) }))
    }
    /// Replaces path and query; `uri` must already be percent-encoded.
    pub fn set_uri(&self, uri: &str) {
        unsafe { sys::set_uri(uri.as_ptr(), uri.len() as u32) }
    }
    pub fn protocol_version(&self) -> String {
        lossy(read_field(|b, l| unsafe { sys::get_protocol_version(b, l) }))
    }
    /// The client address, "ip:port" or "[ipv6]:port".
    pub fn source_addr(&self) -> String {
        lossy(read_field(|b, l| unsafe { sys::get_source_addr(b, l) }))
    }
    pub fn headers(&self) -> Headers {
        Headers(0)
    }
    /// Needs [`FEATURE_TRAILERS`].
    pub fn trailers(&self) -> Headers {
        Headers(2)
    }
    pub fn body(&self) -> Body {
        Body(0)
    }
}

/// The response: the local one being built, or in `handle_response` the upstream's.
pub struct Response(());

impl Response {
    pub fn status_code(&self) -> u32 {
        unsafe { sys::get_status_code() }
    }
    pub fn set_status_code(&self, code: u32) {
        unsafe { sys::set_status_code(code) }
    }
    pub fn headers(&self) -> Headers {
        Headers(1)
    }
    /// Needs [`FEATURE_TRAILERS`].
    pub fn trailers(&self) -> Headers {
        Headers(3)
    }
    pub fn body(&self) -> Body {
        Body(1)
    }
}

/// One header set (request, response or their trailers). Names are case-insensitive.
#[derive(Clone, Copy)]
pub struct Headers(u32);

impl Headers {
    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<String> {
        self.values(name).into_iter().next()
    }
    /// Every value of `name`, in order.
    pub fn values(&self, name: &str) -> Vec<String> {
        let k = self.0;
        let (count, raw) = read_seq(|b, l| unsafe {
            sys::get_header_values(k, name.as_ptr(), name.len() as u32, b, l)
        });
        split_nul(count, raw)
    }
    /// Every header name, lowercased by the host.
    pub fn names(&self) -> Vec<String> {
        let k = self.0;
        let (count, raw) = read_seq(|b, l| unsafe { sys::get_header_names(k, b, l) });
        split_nul(count, raw)
    }
    /// Whether `name` is present, without copying its value.
    pub fn has(&self, name: &str) -> bool {
        let v = unsafe {
            sys::get_header_values(self.0, name.as_ptr(), name.len() as u32, core::ptr::null_mut(), 0)
        };
        (v >> 32) != 0
    }
    /// Replaces every value of `name` with `value`.
    pub fn set(&self, name: &str, value: &str) {
        unsafe {
            sys::set_header_value(
                self.0,
                name.as_ptr(),
                name.len() as u32,
                value.as_ptr(),
                value.len() as u32,
            )
        }
    }
    /// Appends one value to `name`.
    pub fn add(&self, name: &str, value: &str) {
        unsafe {
            sys::add_header_value(
                self.0,
                name.as_ptr(),
                name.len() as u32,
                value.as_ptr(),
                value.len() as u32,
            )
        }
    }
    /// Removes every value of `name`.
    pub fn remove(&self, name: &str) {
        unsafe { sys::remove_header(self.0, name.as_ptr(), name.len() as u32) }
    }
}

/// Like `read_field`, for the count_len results of the header getters.
fn read_seq(f: impl Fn(*mut u8, u32) -> u64) -> (u32, Vec<u8>) {
    let mut stack = [0u8; 256];
    let cl = f(stack.as_mut_ptr(), stack.len() as u32);
    let (count, len) = ((cl >> 32) as u32, cl as u32 as usize);
    if len <= stack.len() {
        return (count, stack[..len].to_vec());
    }
    let mut v = Vec::with_capacity(len);
    let cl2 = f(v.as_mut_ptr(), len as u32);
    let len2 = cl2 as u32 as usize;
    unsafe { v.set_len(if len2 <= len { len2 } else { 0 }) };
    ((cl2 >> 32) as u32, v)
}

/// Splits "a\0b\0" into its values.
fn split_nul(count: u32, raw: Vec<u8>) -> Vec<String> {
    let mut out = Vec::with_capacity(count as usize);
    for part in raw.split(|&b| b == 0) {
        if out.len() == count as usize {
            break;
        }
        out.push(lossy(part.to_vec()));
    }
    out
}

/// A request or response body. Reads and writes are streams: each read continues where the
/// last stopped, and the first write of a phase replaces the body.
#[derive(Clone, Copy)]
pub struct Body(u32);

impl Body {
    /// Reads up to `buf.len()` bytes (at least one byte of room is required). Returns how many
    /// bytes were read and whether the body is exhausted.
    pub fn read(&self, buf: &mut [u8]) -> (usize, bool) {
        assert!(!buf.is_empty(), "weir: read into an empty buffer");
        let el = unsafe { sys::read_body(self.0, buf.as_mut_ptr(), buf.len() as u32) };
        (el as u32 as usize, (el >> 32) != 0)
    }
    /// Reads the rest of the body.
    pub fn read_all(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 2048];
        loop {
            let (n, eof) = self.read(&mut chunk);
            out.extend_from_slice(&chunk[..n]);
            if eof {
                return out;
            }
        }
    }
    pub fn write(&self, data: &[u8]) {
        unsafe { sys::write_body(self.0, data.as_ptr(), data.len() as u32) }
    }
    pub fn write_str(&self, s: &str) {
        self.write(s.as_bytes())
    }
}
