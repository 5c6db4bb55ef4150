//! auth-deny: a proxy-wasm filter against the raw ABI, with no crates. It answers 401 itself,
//! with a JSON body and `WWW-Authenticate: Bearer`, without calling the upstream, unless the
//! request carries `Authorization: Bearer letmein`.

use std::alloc::{alloc, dealloc, Layout};

const STATUS_OK: u32 = 0;
const MAP_REQUEST_HEADERS: u32 = 0;
const ACTION_CONTINUE: u32 = 0;
const ACTION_PAUSE: u32 = 1;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_value(map: u32, key: *const u8, key_size: usize, value: *mut *mut u8, value_size: *mut usize) -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size.max(1), 1).unwrap()
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The host hands the guest data (a header's value here) in memory from here; the guest owns
/// it and frees it with the same layout.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    unsafe { alloc(layout(size)) }
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(_id: u32, _parent: u32) {}

/// The value of a request header, copied out of the host's allocation, which is freed.
fn request_header(name: &str) -> Option<Vec<u8>> {
    let mut ptr: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    let st = unsafe { proxy_get_header_map_value(MAP_REQUEST_HEADERS, name.as_ptr(), name.len(), &mut ptr, &mut size) };
    if st != STATUS_OK {
        return None;
    }
    if ptr.is_null() {
        return Some(Vec::new());
    }
    let v = unsafe { std::slice::from_raw_parts(ptr, size) }.to_vec();
    unsafe { dealloc(ptr, layout(size)) };
    Some(v)
}

/// A header map as the ABI serialises it: a count, each pair's sizes, then each name and value
/// followed by a NUL (little-endian u32s).
fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_ctx: u32, _headers: u32, _end_of_stream: u32) -> u32 {
    if request_header("authorization").as_deref() == Some(b"Bearer letmein".as_slice()) {
        return ACTION_CONTINUE;
    }
    let details = "unauthorized";
    let body = br#"{"error":"unauthorized"}"#;
    let headers = serialize(&[("content-type", "application/json"), ("www-authenticate", "Bearer")]);
    unsafe {
        proxy_send_local_response(
            401,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        );
    }
    ACTION_PAUSE // the local reply ends the request
}

#[no_mangle]
pub extern "C" fn proxy_on_done(_ctx: u32) -> u32 {
    1
}
