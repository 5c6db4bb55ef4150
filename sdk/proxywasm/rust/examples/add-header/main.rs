//! add-header: a proxy-wasm filter against the raw ABI, with no crates. It tags every request
//! with `X-Wasm: proxywasm-rust` on its way upstream, and every response with
//! `X-Wasm-Plugin: proxywasm-rust-add-header` on its way back.
//!
//! Build: `rustc --edition 2021 --target wasm32-wasi -O --crate-type cdylib main.rs` (or
//! `weir plugin build DIR`).

use std::alloc::{alloc, Layout};

// proxy_map_type_t and proxy_action_t.
const MAP_REQUEST_HEADERS: u32 = 0;
const MAP_RESPONSE_HEADERS: u32 = 2;
const ACTION_CONTINUE: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_replace_header_map_value(map: u32, key: *const u8, key_size: usize, value: *const u8, value_size: usize) -> u32;
}

fn set_header(map: u32, key: &str, value: &str) {
    unsafe {
        proxy_replace_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len());
    }
}

/// Declares the ABI version: its presence is the declaration.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The host hands the guest data in memory from here; this filter asks for none.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    unsafe { alloc(Layout::from_size_align(size.max(1), 1).unwrap()) }
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(_id: u32, _parent: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root: u32, _vm_config_size: u32) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_root: u32, _config_size: u32) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_ctx: u32, _headers: u32, _end_of_stream: u32) -> u32 {
    set_header(MAP_REQUEST_HEADERS, "x-wasm", "proxywasm-rust");
    ACTION_CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(_ctx: u32, _headers: u32, _end_of_stream: u32) -> u32 {
    set_header(MAP_RESPONSE_HEADERS, "x-wasm-plugin", "proxywasm-rust-add-header");
    ACTION_CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_done(_ctx: u32) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_log(_ctx: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_delete(_ctx: u32) {}
