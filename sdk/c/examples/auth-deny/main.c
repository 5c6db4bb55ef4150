// auth-deny: answers 401 with a JSON body, without calling the upstream, unless the request
// carries "Authorization: Bearer letmein".
#include "../../weir.h"

static const char want[] = "Bearer letmein";

WEIR_EXPORT("handle_request") int64_t handle_request(void) {
	char buf[64];
	int32_t n = weir_header_get(WEIR_HEADER_REQUEST, "Authorization", buf, sizeof buf);
	if (n == (int32_t)(sizeof want - 1) && __builtin_memcmp(buf, want, sizeof want - 1) == 0) {
		return weir_next(0);
	}
	weir_header_set(WEIR_HEADER_RESPONSE, "WWW-Authenticate", "Bearer");
	weir_reply(401, "application/json", "{\"error\":\"unauthorized\"}");
	return weir_stop();
}

WEIR_EXPORT("handle_response") void handle_response(uint32_t req_ctx, uint32_t is_error) {
	(void)req_ctx;
	(void)is_error;
}
