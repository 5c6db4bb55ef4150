// inspect: answers every request itself with a plain-text report of what the host told it:
// method, URI, protocol, client address, config, the values of X-Multi, whether x-multi is
// among the header names, and the request body. It exercises every getter of the SDK.
#include "../../weir.h"

// One scratch buffer for every field: an instance serves one request at a time.
static char buf[16384];

static void out(const char *s) { weir_body_write(WEIR_BODY_RESPONSE, s); }

// field writes "label=<value>\n" for a getter, or "label=(too long)" when the value does not fit.
static void field(const char *label, uint32_t (*get)(void *, uint32_t)) {
	uint32_t n = get(buf, sizeof buf);
	out(label);
	if (n > sizeof buf) out("(too long)");
	else weir_write_body(WEIR_BODY_RESPONSE, buf, n);
	out("\n");
}

WEIR_EXPORT("handle_request") int64_t handle_request(void) {
	weir_set_status_code(200);
	weir_header_set(WEIR_HEADER_RESPONSE, "Content-Type", "text/plain");
	field("method=", weir_get_method);
	field("uri=", weir_get_uri);
	field("protocol=", weir_get_protocol_version);
	field("source=", weir_get_source_addr);
	field("config=", weir_get_config);

	// Values come as "a\0b\0": join them with commas.
	out("multi=");
	uint64_t cl = weir_get_header_values(WEIR_HEADER_REQUEST, WEIR_LIT("X-Multi"), buf, sizeof buf);
	uint32_t len = weir_lo(cl);
	if (len <= sizeof buf && len > 0) {
		for (uint32_t i = 0; i + 1 < len; i++)
			if (buf[i] == 0) buf[i] = ',';
		weir_write_body(WEIR_BODY_RESPONSE, buf, len - 1);
	}
	out("\n");

	out("listed=");
	const char *listed = "no";
	cl = weir_get_header_names(WEIR_HEADER_REQUEST, buf, sizeof buf);
	len = weir_lo(cl);
	if (len <= sizeof buf) {
		for (uint32_t i = 0; i < len;) {
			uint32_t n = weir__strlen(buf + i);
			if (n == 7 && __builtin_memcmp(buf + i, "x-multi", 7) == 0) listed = "yes";
			i += n + 1;
		}
	}
	out(listed);
	out("\n");

	// The body streams: copy it chunk by chunk until EOF.
	out("body=");
	for (;;) {
		uint64_t el = weir_read_body(WEIR_BODY_REQUEST, buf, sizeof buf);
		weir_write_body(WEIR_BODY_RESPONSE, buf, weir_lo(el));
		if (weir_hi(el)) break;
	}
	out("\n");
	weir_log_str(WEIR_LOG_INFO, "inspect: answered");
	return weir_stop();
}

WEIR_EXPORT("handle_response") void handle_response(uint32_t req_ctx, uint32_t is_error) {
	(void)req_ctx;
	(void)is_error;
}
