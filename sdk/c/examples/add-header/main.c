// add-header: tags every request with X-Wasm: c on its way upstream, and every response with
// X-Wasm-Plugin: c-add-header on its way back.
#include "../../weir.h"

WEIR_INIT static void init(void) {
	// handle_response changes the response, which the ABI allows only with buffer_response.
	weir_enable_features(WEIR_FEATURE_BUFFER_RESPONSE);
}

WEIR_EXPORT("handle_request") int64_t handle_request(void) {
	weir_set_header_value(WEIR_HEADER_REQUEST, WEIR_LIT("X-Wasm"), WEIR_LIT("c"));
	return weir_next(0);
}

WEIR_EXPORT("handle_response") void handle_response(uint32_t req_ctx, uint32_t is_error) {
	(void)req_ctx;
	if (is_error) return;
	weir_set_header_value(WEIR_HEADER_RESPONSE, WEIR_LIT("X-Wasm-Plugin"), WEIR_LIT("c-add-header"));
}
