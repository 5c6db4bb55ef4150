// callout: a proxy-wasm filter against the raw ABI that decides each request from an HTTP
// callout. It pauses the request and asks upstream "auth" (GET /check, with the request's
// Authorization header); when the answer comes, a 200 lets the request through with
// "X-Auth-User" set from the answer's "X-User", any other status answers 403 with the answer's
// body, and a failed call answers 503. "auth" must be an upstream of the gateway's config.
#include <string.h>

#include "../../proxywasm.h"

PROXY_IMPORT("proxy_http_call")
uint32_t proxy_http_call(const char *upstream, size_t upstream_size, const char *headers, size_t headers_size,
			 const char *body, size_t body_size, const char *trailers, size_t trailers_size,
			 uint32_t timeout_ms, uint32_t *token);
PROXY_IMPORT("proxy_set_effective_context")
uint32_t proxy_set_effective_context(uint32_t context);
PROXY_IMPORT("proxy_continue_stream")
uint32_t proxy_continue_stream(uint32_t stream);
PROXY_IMPORT("proxy_get_buffer_bytes")
uint32_t proxy_get_buffer_bytes(uint32_t buffer, size_t start, size_t max_size, char **data, size_t *size);

PROXY_WASM_ABI_0_2_1
PROXY_WASM_ALLOCATOR

PROXY_EXPORT("proxy_on_context_create") void proxy_on_context_create(uint32_t id, uint32_t parent) {
	(void)id;
	(void)parent;
}

// Which HTTP context each callout in flight belongs to: the answer arrives on the root
// context, with the callout's token.
#define PENDING 256
static struct {
	uint32_t token, context;
} pending[PENDING];

static void remember(uint32_t token, uint32_t context) {
	for (int i = 0; i < PENDING; i++) {
		if (pending[i].token == 0) {
			pending[i].token = token;
			pending[i].context = context;
			return;
		}
	}
}

static uint32_t take(uint32_t token) {
	for (int i = 0; i < PENDING; i++) {
		if (pending[i].token == token) {
			pending[i].token = 0;
			return pending[i].context;
		}
	}
	return 0;
}

// put appends a header pair to a serialised map under construction: sizes go after the count,
// names and values (each NUL-terminated) after every size.
struct map {
	char buf[1024];
	uint32_t n;
	const char *k[8], *v[8];
	size_t kn[8], vn[8];
};

static void put(struct map *m, const char *k, size_t kn, const char *v, size_t vn) {
	m->k[m->n] = k;
	m->kn[m->n] = kn;
	m->v[m->n] = v;
	m->vn[m->n] = vn;
	m->n++;
}

static size_t serialize(struct map *m) {
	size_t need = 4 + 8 * m->n;
	for (uint32_t i = 0; i < m->n; i++) {
		need += m->kn[i] + m->vn[i] + 2;
	}
	if (need > sizeof m->buf) {
		return 0;
	}
	char *p = m->buf;
	memcpy(p, &m->n, 4);
	p += 4;
	for (uint32_t i = 0; i < m->n; i++) {
		uint32_t kn = m->kn[i], vn = m->vn[i];
		memcpy(p, &kn, 4);
		memcpy(p + 4, &vn, 4);
		p += 8;
	}
	for (uint32_t i = 0; i < m->n; i++) {
		memcpy(p, m->k[i], m->kn[i]);
		p += m->kn[i];
		*p++ = 0;
		memcpy(p, m->v[i], m->vn[i]);
		p += m->vn[i];
		*p++ = 0;
	}
	return need;
}

static void reply(uint32_t status, const char *body, size_t body_size) {
	proxy_send_local_response(status, NULL, 0, body, body_size, NULL, 0, -1);
}

PROXY_EXPORT("proxy_on_request_headers")
uint32_t proxy_on_request_headers(uint32_t ctx, uint32_t headers, uint32_t end_of_stream) {
	(void)headers;
	(void)end_of_stream;
	static struct map m;
	m.n = 0;
	put(&m, PROXY_STR(":method"), PROXY_STR("GET"));
	put(&m, PROXY_STR(":path"), PROXY_STR("/check"));
	put(&m, PROXY_STR(":authority"), PROXY_STR("auth"));
	char *auth = NULL;
	size_t auth_size = 0;
	if (proxy_get_header_map_value(PROXY_MAP_REQUEST_HEADERS, PROXY_STR("authorization"), &auth, &auth_size) ==
	    PROXY_OK) {
		put(&m, PROXY_STR("authorization"), auth, auth_size);
	}
	size_t size = serialize(&m);
	uint32_t token = 0;
	uint32_t st = size ? proxy_http_call(PROXY_STR("auth"), m.buf, size, NULL, 0, NULL, 0, 2000, &token) : PROXY_BAD_ARGUMENT;
	free(auth);
	if (st != PROXY_OK) {
		reply(500, PROXY_STR("callout refused"));
		return PROXY_PAUSE;
	}
	remember(token, ctx);
	return PROXY_PAUSE; // until the answer
}

PROXY_EXPORT("proxy_on_http_call_response")
void proxy_on_http_call_response(uint32_t root, uint32_t token, uint32_t headers, uint32_t body_size, uint32_t trailers) {
	(void)root;
	(void)trailers;
	uint32_t ctx = take(token);
	if (ctx == 0 || proxy_set_effective_context(ctx) != PROXY_OK) {
		return; // the request is gone
	}
	if (headers == 0) {
		reply(503, PROXY_STR("auth unavailable"));
		return;
	}
	char *status = NULL, *user = NULL, *body = NULL;
	size_t status_size = 0, user_size = 0, body_len = 0;
	proxy_get_header_map_value(PROXY_MAP_HTTP_CALL_RESPONSE_HEADERS, PROXY_STR(":status"), &status, &status_size);
	if (status_size == 3 && memcmp(status, "200", 3) == 0) {
		if (proxy_get_header_map_value(PROXY_MAP_HTTP_CALL_RESPONSE_HEADERS, PROXY_STR("x-user"), &user, &user_size) ==
		    PROXY_OK) {
			proxy_replace_header_map_value(PROXY_MAP_REQUEST_HEADERS, PROXY_STR("x-auth-user"), user, user_size);
		}
		proxy_continue_stream(0);
	} else {
		proxy_get_buffer_bytes(PROXY_BUFFER_HTTP_CALL_RESPONSE_BODY, 0, body_size, &body, &body_len);
		reply(403, body, body_len);
	}
	free(status);
	free(user);
	free(body);
}

PROXY_EXPORT("proxy_on_done") uint32_t proxy_on_done(uint32_t ctx) {
	(void)ctx;
	return 1;
}
