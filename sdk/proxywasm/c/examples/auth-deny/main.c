// auth-deny: a proxy-wasm filter against the raw ABI. It answers 401 itself, with a JSON body
// and "WWW-Authenticate: Bearer", without calling the upstream, unless the request carries
// "Authorization: Bearer letmein".
#include <string.h>

#include "../../proxywasm.h"

PROXY_WASM_ABI_0_2_1
PROXY_WASM_ALLOCATOR

PROXY_EXPORT("proxy_on_context_create") void proxy_on_context_create(uint32_t id, uint32_t parent) {
	(void)id;
	(void)parent;
}

static const char want[] = "Bearer letmein";

// The serialised header map of the local reply: a count, each pair's sizes, then each name and
// value followed by a NUL (little-endian u32s, as the ABI has them).
static const char reply_headers[] = "\x02\0\0\0"
				    "\x0c\0\0\0\x10\0\0\0"
				    "\x10\0\0\0\x06\0\0\0"
				    "content-type\0application/json\0"
				    "www-authenticate\0Bearer";

PROXY_EXPORT("proxy_on_request_headers")
uint32_t proxy_on_request_headers(uint32_t ctx, uint32_t headers, uint32_t end_of_stream) {
	(void)ctx;
	(void)headers;
	(void)end_of_stream;
	char *got = NULL;
	size_t n = 0;
	int ok = proxy_get_header_map_value(PROXY_MAP_REQUEST_HEADERS, PROXY_STR("authorization"), &got, &n) == PROXY_OK &&
		 n == sizeof want - 1 && memcmp(got, want, n) == 0;
	free(got); // the host's copy came from proxy_on_memory_allocate
	if (ok) {
		return PROXY_CONTINUE;
	}
	// sizeof counts the literal's final NUL, which ends the last value.
	proxy_send_local_response(401, PROXY_STR("unauthorized"), PROXY_STR("{\"error\":\"unauthorized\"}"),
				  reply_headers, sizeof reply_headers, -1);
	return PROXY_PAUSE; // the local reply ends the request
}

PROXY_EXPORT("proxy_on_done") uint32_t proxy_on_done(uint32_t ctx) {
	(void)ctx;
	return 1;
}
