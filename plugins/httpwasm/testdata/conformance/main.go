//go:build wasip1

// Command conformance is the guest of Weir's http-wasm conformance tests
// (plugins/httpwasm/conformance_test.go). Each request names a rule in the X-Rule header and
// an argument in X-Arg; the guest exercises the host functions the rule is about and reports
// what it observed in the X-Got response header, so the test, not the guest, judges it.
//
// It uses the ABI directly (no SDK), so that what is tested is the host alone.
package main

import (
	"strconv"
	"strings"
	"unsafe"
)

//go:wasmimport http_handler enable_features
func enableFeatures(features uint32) uint32

//go:wasmimport http_handler get_method
func getMethod(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler set_method
func setMethod(method string)

//go:wasmimport http_handler get_uri
func getURI(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler set_uri
func setURI(uri string)

//go:wasmimport http_handler get_protocol_version
func getProtocolVersion(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler get_source_addr
func getSourceAddr(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler get_header_names
func getHeaderNames(kind uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport http_handler get_header_values
func getHeaderValues(kind uint32, name string, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport http_handler set_header_value
func setHeaderValue(kind uint32, name, value string)

//go:wasmimport http_handler add_header_value
func addHeaderValue(kind uint32, name, value string)

//go:wasmimport http_handler remove_header
func removeHeader(kind uint32, name string)

//go:wasmimport http_handler read_body
func readBody(kind uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport http_handler write_body
func writeBody(kind uint32, body unsafe.Pointer, n uint32)

//go:wasmimport http_handler get_status_code
func getStatusCode() uint32

//go:wasmimport http_handler set_status_code
func setStatusCode(code uint32)

const (
	kindRequest  = 0
	kindResponse = 1
	kindReqTrail = 2

	featureBufferRequest  = 1
	featureBufferResponse = 2
)

var buf = make([]byte, 64<<10)

func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

// get calls a getter with a zero limit first, as the ABI allows, then with room for the value.
func get(fn func(unsafe.Pointer, uint32) uint32) string {
	n := fn(ptr(buf), 0)
	if n > uint32(len(buf)) {
		panic("value too large")
	}
	if m := fn(ptr(buf), uint32(len(buf))); m != n {
		panic("length changed between calls")
	}
	return string(buf[:n])
}

// list decodes a count_len sequence written to buf.
func list(countLen uint64) []string {
	if countLen == 0 {
		return nil
	}
	count, n := int(countLen>>32), uint32(countLen)
	s := strings.Split(string(buf[:n]), "\x00")
	if len(s) != count+1 || s[count] != "" {
		panic("bad count_len sequence")
	}
	return s[:count]
}

func header(kind uint32, name string) []string {
	return list(getHeaderValues(kind, name, ptr(buf), uint32(len(buf))))
}

func names(kind uint32) []string {
	return list(getHeaderNames(kind, ptr(buf), uint32(len(buf))))
}

func write(kind uint32, s string) {
	b := []byte(s)
	writeBody(kind, ptr(b), uint32(len(b)))
}

// readAll reads a body in chunks of size bytes and reports the body and the number of reads.
func readAll(kind uint32, size int) (string, int) {
	var out []byte
	for reads := 1; ; reads++ {
		r := readBody(kind, ptr(buf), uint32(size))
		out = append(out, buf[:uint32(r)]...)
		if r>>32 == 1 {
			return string(out), reads
		}
		if reads > 1<<20 {
			panic("read_body never reached EOF")
		}
	}
}

func got(v string) { setHeaderValue(kindResponse, "X-Got", v) }

// rule is the rule of the request in flight, for handle_response.
var rule, arg string

func main() {}

//go:wasmexport handle_request
func handleRequest() uint64 {
	rule, arg = "", ""
	if v := header(kindRequest, "X-Rule"); len(v) == 1 {
		rule = v[0]
	}
	if v := header(kindRequest, "X-Arg"); len(v) == 1 {
		arg = v[0]
	}
	switch rule {
	case "get_protocol_version":
		got(get(getProtocolVersion))
	case "get_source_addr":
		got(get(getSourceAddr))
	case "get_method":
		got(get(getMethod))
	case "set_method":
		setMethod(arg)
		return 1
	case "get_uri":
		got(get(getURI))
	case "set_uri":
		setURI(arg)
		return 1
	case "get_header_values":
		v := header(kindRequest, arg)
		got(strconv.Itoa(len(v)) + ":" + strings.Join(v, "|"))
	case "get_header_names":
		got(strings.Join(names(kindRequest), ","))
	case "get_header_names/response":
		setHeaderValue(kindResponse, "X-One", "1")
		addHeaderValue(kindResponse, "x-one", "2")
		got(strings.Join(names(kindResponse), ","))
	case "get_header_names/request_trailers":
		got(strconv.Itoa(len(names(kindReqTrail))))
	case "set_header_value":
		setHeaderValue(kindRequest, "X-Existing", arg)
		setHeaderValue(kindRequest, "X-New", arg)
		return 1
	case "add_header_value":
		addHeaderValue(kindRequest, "X-Existing", arg)
		addHeaderValue(kindRequest, "X-New", arg)
		return 1
	case "remove_header":
		removeHeader(kindRequest, "x-existing")
		removeHeader(kindRequest, "X-Absent")
		return 1
	case "read_body":
		size, _ := strconv.Atoi(arg)
		enableFeatures(featureBufferRequest)
		body, reads := readAll(kindRequest, size)
		// Reading is stateful: once at EOF, a read returns EOF and nothing.
		if r := readBody(kindRequest, ptr(buf), 16); r != 1<<32 {
			panic("read after EOF returned data")
		}
		setHeaderValue(kindRequest, "X-Guest-Read", strconv.Itoa(len(body))+"/"+strconv.Itoa(reads))
		return 1
	case "write_body/request":
		write(kindRequest, "replaced")
		write(kindRequest, "+appended")
		return 1
	case "write_body/response":
		write(kindResponse, "guest")
		write(kindResponse, "+appended")
		return 0
	case "set_status_code":
		code, _ := strconv.Atoi(arg)
		setStatusCode(uint32(code))
		return 0
	case "next=0":
		return 0
	case "next=1/response_header":
		setHeaderValue(kindResponse, "X-Guest", "before-next")
		addHeaderValue(kindResponse, "X-Shared", "guest")
		return 1
	case "next=1/response_body":
		write(kindResponse, "guest|")
		return 1
	case "next=1/status":
		if arg == "buffer_response" {
			enableFeatures(featureBufferResponse)
		}
		setStatusCode(418)
		return 1
	case "handle_response/req_ctx":
		enableFeatures(featureBufferResponse)
		return 42<<32 | 1
	case "handle_response/buffer_response":
		enableFeatures(featureBufferResponse)
		return 1
	case "handle_response/no_buffer_response":
		return 1
	case "handle_response/header_case":
		enableFeatures(featureBufferResponse)
		return 1
	case "enable_features":
		got(strconv.Itoa(int(enableFeatures(featureBufferRequest))))
	default:
		setStatusCode(500)
		got("unknown rule " + rule)
	}
	return 0
}

//go:wasmexport handle_response
func handleResponse(reqCtx, isError uint32) {
	switch rule {
	case "handle_response/req_ctx":
		got(strconv.Itoa(int(reqCtx)) + "/" + strconv.Itoa(int(isError)))
	case "next=1/status":
		if arg == "buffer_response" {
			// The upstream's status replaced the guest's; buffer_response lets the guest read it
			// and set its own again.
			setHeaderValue(kindResponse, "X-Upstream-Status", strconv.Itoa(int(getStatusCode())))
		}
	case "handle_response/buffer_response":
		body, _ := readAll(kindResponse, 3)
		got(strconv.Itoa(int(getStatusCode())) + ":" + body)
		setStatusCode(201)
		write(kindResponse, "replaced:")
		write(kindResponse, strings.ToUpper(body))
	case "handle_response/header_case":
		// The upstream sent X-Custom, X-Shared and Content-Type; lowercase names find, replace
		// and remove them.
		custom, ctype := header(kindResponse, "x-custom"), header(kindResponse, "content-type")
		setHeaderValue(kindResponse, "x-shared", "guest")
		removeHeader(kindResponse, "x-custom")
		left := header(kindResponse, "X-Custom")
		got(strings.Join(custom, "|") + ";" + strings.Join(ctype, "|") + ";" + strconv.Itoa(len(left)) + ";" +
			strings.Join(header(kindResponse, "X-SHARED"), "|"))
	case "handle_response/no_buffer_response":
		// Without buffer_response the body may already be on its way: it reads as consumed.
		if r := readBody(kindResponse, ptr(buf), 16); r != 1<<32 {
			panic("response body readable without buffer_response")
		}
		setHeaderValue(kindResponse, "X-Too-Late", "1") // traps
	}
}
