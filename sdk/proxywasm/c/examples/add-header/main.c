// add-header: a proxy-wasm filter against the raw ABI. It tags every request with
// "X-Wasm: proxywasm-c" on its way upstream, and every response with
// "X-Wasm-Plugin: proxywasm-c-add-header" on its way back.
#include "../../proxywasm.h"

PROXY_WASM_ABI_0_2_1
PROXY_WASM_ALLOCATOR

// One root context per instance, then one HTTP context per request: this filter keeps no
// state in either.
PROXY_EXPORT("proxy_on_context_create") void proxy_on_context_create(uint32_t id, uint32_t parent) {
	(void)id;
	(void)parent;
}

PROXY_EXPORT("proxy_on_vm_start") uint32_t proxy_on_vm_start(uint32_t root, uint32_t vm_config_size) {
	(void)root;
	(void)vm_config_size;
	return 1;
}

PROXY_EXPORT("proxy_on_configure") uint32_t proxy_on_configure(uint32_t root, uint32_t config_size) {
	(void)root;
	(void)config_size;
	return 1;
}

PROXY_EXPORT("proxy_on_request_headers")
uint32_t proxy_on_request_headers(uint32_t ctx, uint32_t headers, uint32_t end_of_stream) {
	(void)ctx;
	(void)headers;
	(void)end_of_stream;
	proxy_replace_header_map_value(PROXY_MAP_REQUEST_HEADERS, PROXY_STR("x-wasm"), PROXY_STR("proxywasm-c"));
	return PROXY_CONTINUE;
}

PROXY_EXPORT("proxy_on_response_headers")
uint32_t proxy_on_response_headers(uint32_t ctx, uint32_t headers, uint32_t end_of_stream) {
	(void)ctx;
	(void)headers;
	(void)end_of_stream;
	proxy_replace_header_map_value(PROXY_MAP_RESPONSE_HEADERS, PROXY_STR("x-wasm-plugin"),
				       PROXY_STR("proxywasm-c-add-header"));
	return PROXY_CONTINUE;
}

PROXY_EXPORT("proxy_on_done") uint32_t proxy_on_done(uint32_t ctx) {
	(void)ctx;
	return 1;
}

PROXY_EXPORT("proxy_on_log") void proxy_on_log(uint32_t ctx) { (void)ctx; }

PROXY_EXPORT("proxy_on_delete") void proxy_on_delete(uint32_t ctx) { (void)ctx; }
