// proxywasm.h: the proxy-wasm ABI v0.2.1 as C declarations, for filters written against the raw
// ABI (no SDK). Only the host functions the examples use are declared; every other one is
// declared the same way, with the signature the ABI specification gives it. Build with
//
//   clang --target=wasm32-wasi -mexec-model=reactor -O2 -o filter.wasm main.c
//
// (or `weir plugin build DIR`). A module declares its ABI version by exporting
// proxy_abi_version_0_2_1 (PROXY_WASM_ABI_0_2_1 below does it) and must export
// proxy_on_memory_allocate, through which the host hands it data it then owns (free it).
#ifndef PROXYWASM_H
#define PROXYWASM_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define PROXY_EXPORT(name) __attribute__((export_name(name)))
#define PROXY_IMPORT(name) __attribute__((import_module("env"), import_name(name)))

// proxy_status_t
enum { PROXY_OK = 0, PROXY_NOT_FOUND = 1, PROXY_BAD_ARGUMENT = 2, PROXY_UNIMPLEMENTED = 12 };
// proxy_action_t, returned by the request and response callbacks.
enum { PROXY_CONTINUE = 0, PROXY_PAUSE = 1 };
// proxy_map_type_t
enum { PROXY_MAP_REQUEST_HEADERS = 0, PROXY_MAP_RESPONSE_HEADERS = 2, PROXY_MAP_HTTP_CALL_RESPONSE_HEADERS = 6 };
// proxy_buffer_type_t
enum { PROXY_BUFFER_HTTP_CALL_RESPONSE_BODY = 4, PROXY_BUFFER_PLUGIN_CONFIGURATION = 7 };
// proxy_log_level_t
enum { PROXY_LOG_TRACE, PROXY_LOG_DEBUG, PROXY_LOG_INFO, PROXY_LOG_WARN, PROXY_LOG_ERROR, PROXY_LOG_CRITICAL };

PROXY_IMPORT("proxy_log")
uint32_t proxy_log(uint32_t level, const char *msg, size_t msg_size);
PROXY_IMPORT("proxy_get_header_map_value")
uint32_t proxy_get_header_map_value(uint32_t map, const char *key, size_t key_size, char **value, size_t *value_size);
PROXY_IMPORT("proxy_replace_header_map_value")
uint32_t proxy_replace_header_map_value(uint32_t map, const char *key, size_t key_size, const char *value, size_t value_size);
PROXY_IMPORT("proxy_send_local_response")
uint32_t proxy_send_local_response(uint32_t status, const char *details, size_t details_size, const char *body,
				   size_t body_size, const char *headers, size_t headers_size, int32_t grpc_status);

// The version export: its presence is the declaration.
#define PROXY_WASM_ABI_0_2_1 \
	PROXY_EXPORT("proxy_abi_version_0_2_1") void proxy_abi_version_0_2_1(void) {}

// The host's allocations come from the guest's malloc.
#define PROXY_WASM_ALLOCATOR \
	PROXY_EXPORT("proxy_on_memory_allocate") void *proxy_on_memory_allocate(size_t size) { return malloc(size); }

// PROXY_STR passes a string literal as the pointer and size pair the ABI takes.
#define PROXY_STR(s) (s), (sizeof(s) - 1)

#endif
