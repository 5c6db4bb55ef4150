/*
 * weir.h: header-only SDK for Weir plugins in C (the http-wasm handler ABI).
 *
 * Build:  clang --target=wasm32-wasi -O2 -mexec-model=reactor -o plugin.wasm plugin.c
 *
 * A plugin defines the two entry points with WEIR_EXPORT:
 *
 *   WEIR_EXPORT("handle_request")  int64_t handle_request(void) { ...; return weir_next(0); }
 *   WEIR_EXPORT("handle_response") void handle_response(uint32_t req_ctx, uint32_t is_error) { }
 *
 * and may do one-time setup (enable_features, parse get_config) in a function marked
 * WEIR_INIT, which runs once per instance before the first request.
 *
 * Memory rules (sdk/ABI.md has the whole contract): every buffer belongs to the plugin; the host
 * only reads from or writes into the ranges passed to it and never keeps a pointer after the
 * call returns. A getter that is given a buffer too small writes nothing and returns the size it
 * needs, so compare the result with the buffer's size before using it.
 */
#ifndef WEIR_H
#define WEIR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WEIR_IMPORT(name) __attribute__((import_module("http_handler"), import_name(name)))
#define WEIR_EXPORT(name) __attribute__((export_name(name)))
/* Runs from _initialize, which the host calls once per instance before any handler. */
#define WEIR_INIT __attribute__((constructor))

/* Features (bit flags for weir_enable_features). */
#define WEIR_FEATURE_BUFFER_REQUEST 1u
#define WEIR_FEATURE_BUFFER_RESPONSE 2u
#define WEIR_FEATURE_TRAILERS 4u

/* Header kinds. Trailer kinds need WEIR_FEATURE_TRAILERS. */
#define WEIR_HEADER_REQUEST 0u
#define WEIR_HEADER_RESPONSE 1u
#define WEIR_HEADER_REQUEST_TRAILERS 2u
#define WEIR_HEADER_RESPONSE_TRAILERS 3u

/* Body kinds. */
#define WEIR_BODY_REQUEST 0u
#define WEIR_BODY_RESPONSE 1u

/* Log levels. */
#define WEIR_LOG_DEBUG (-1)
#define WEIR_LOG_INFO 0
#define WEIR_LOG_WARN 1
#define WEIR_LOG_ERROR 2
#define WEIR_LOG_NONE 3

/* The raw host functions, exactly as the ABI defines them. */
WEIR_IMPORT("enable_features") uint32_t weir_enable_features(uint32_t features);
WEIR_IMPORT("get_config") uint32_t weir_get_config(void *buf, uint32_t buf_limit);
WEIR_IMPORT("log_enabled") uint32_t weir_log_enabled(int32_t level);
WEIR_IMPORT("log") void weir_log(int32_t level, const void *msg, uint32_t msg_len);
WEIR_IMPORT("get_method") uint32_t weir_get_method(void *buf, uint32_t buf_limit);
WEIR_IMPORT("set_method") void weir_set_method(const void *method, uint32_t method_len);
WEIR_IMPORT("get_uri") uint32_t weir_get_uri(void *buf, uint32_t buf_limit);
WEIR_IMPORT("set_uri") void weir_set_uri(const void *uri, uint32_t uri_len);
WEIR_IMPORT("get_protocol_version") uint32_t weir_get_protocol_version(void *buf, uint32_t buf_limit);
WEIR_IMPORT("get_source_addr") uint32_t weir_get_source_addr(void *buf, uint32_t buf_limit);
WEIR_IMPORT("get_header_names") uint64_t weir_get_header_names(uint32_t kind, void *buf, uint32_t buf_limit);
WEIR_IMPORT("get_header_values")
uint64_t weir_get_header_values(uint32_t kind, const void *name, uint32_t name_len, void *buf, uint32_t buf_limit);
WEIR_IMPORT("set_header_value")
void weir_set_header_value(uint32_t kind, const void *name, uint32_t name_len, const void *value, uint32_t value_len);
WEIR_IMPORT("add_header_value")
void weir_add_header_value(uint32_t kind, const void *name, uint32_t name_len, const void *value, uint32_t value_len);
WEIR_IMPORT("remove_header") void weir_remove_header(uint32_t kind, const void *name, uint32_t name_len);
WEIR_IMPORT("read_body") uint64_t weir_read_body(uint32_t kind, void *buf, uint32_t buf_limit);
WEIR_IMPORT("write_body") void weir_write_body(uint32_t kind, const void *body, uint32_t body_len);
WEIR_IMPORT("get_status_code") uint32_t weir_get_status_code(void);
WEIR_IMPORT("set_status_code") void weir_set_status_code(uint32_t status_code);

/* ---- Helpers: all static inline, no allocation, no libc beyond the compiler's builtins. ---- */

/* The handle_request result: continue to the next handler, and hand req_ctx to handle_response. */
static inline int64_t weir_next(uint32_t req_ctx) { return (int64_t)(((uint64_t)req_ctx << 32) | 1u); }

/* The handle_request result when the plugin wrote the response itself. */
static inline int64_t weir_stop(void) { return 0; }

/* Split a count_len (header getters) or eof_len (read_body) result. */
static inline uint32_t weir_hi(uint64_t v) { return (uint32_t)(v >> 32); }
static inline uint32_t weir_lo(uint64_t v) { return (uint32_t)v; }

/* A string literal as (pointer, length) without strlen: WEIR_LIT("X-Wasm"). */
#define WEIR_LIT(s) (s), (uint32_t)(sizeof(s) - 1)

static inline uint32_t weir__strlen(const char *s) { return (uint32_t)__builtin_strlen(s); }

static inline void weir_header_set(uint32_t kind, const char *name, const char *value) {
	weir_set_header_value(kind, name, weir__strlen(name), value, weir__strlen(value));
}

static inline void weir_header_add(uint32_t kind, const char *name, const char *value) {
	weir_add_header_value(kind, name, weir__strlen(name), value, weir__strlen(value));
}

static inline void weir_header_del(uint32_t kind, const char *name) {
	weir_remove_header(kind, name, weir__strlen(name));
}

/*
 * weir_header_get copies the first value of header name into buf as a NUL-terminated string.
 * It returns the value's length, or -1 when the header is absent. When the value (plus its NUL)
 * does not fit in cap bytes, buf is left untouched and the result is the length needed minus one,
 * which is >= cap: callers compare the result with cap.
 */
static inline int32_t weir_header_get(uint32_t kind, const char *name, char *buf, uint32_t cap) {
	uint64_t cl = weir_get_header_values(kind, name, weir__strlen(name), buf, cap);
	uint32_t count = weir_hi(cl), len = weir_lo(cl);
	if (count == 0) return -1;
	if (len > cap) return (int32_t)len - 1;
	/* The host wrote "v1\0v2\0...": the first value ends at the first NUL. */
	uint32_t n = 0;
	while (buf[n] != 0) n++;
	return (int32_t)n;
}

/* weir_body_write appends a NUL-terminated string to a body. */
static inline void weir_body_write(uint32_t kind, const char *s) { weir_write_body(kind, s, weir__strlen(s)); }

/* weir_reply sets a local response: status, optional content type and body. Return weir_stop(). */
static inline void weir_reply(uint32_t status, const char *content_type, const char *body) {
	weir_set_status_code(status);
	if (content_type) weir_header_set(WEIR_HEADER_RESPONSE, "Content-Type", content_type);
	if (body) weir_body_write(WEIR_BODY_RESPONSE, body);
}

/* weir_log_str logs a NUL-terminated message: weir_log_str(WEIR_LOG_INFO, "hello"). */
static inline void weir_log_str(int32_t level, const char *msg) { weir_log(level, msg, weir__strlen(msg)); }

#ifdef __cplusplus
}
#endif

#endif /* WEIR_H */
