//go:build !wasip1

package weir

import "unsafe"

// Outside wasm there is no host: these stand-ins let the package build and vet everywhere, and
// panic if called.

func nohost() { panic("weir: host functions exist only under GOOS=wasip1 GOARCH=wasm") }

func enableFeatures(uint32) uint32                                  { nohost(); return 0 }
func getConfig(unsafe.Pointer, uint32) uint32                       { nohost(); return 0 }
func logEnabled(int32) uint32                                       { nohost(); return 0 }
func logMessage(int32, string)                                      { nohost() }
func getMethod(unsafe.Pointer, uint32) uint32                       { nohost(); return 0 }
func setMethod(string)                                              { nohost() }
func getURI(unsafe.Pointer, uint32) uint32                          { nohost(); return 0 }
func setURI(string)                                                 { nohost() }
func getProtocolVersion(unsafe.Pointer, uint32) uint32              { nohost(); return 0 }
func getSourceAddr(unsafe.Pointer, uint32) uint32                   { nohost(); return 0 }
func getHeaderNames(uint32, unsafe.Pointer, uint32) uint64          { nohost(); return 0 }
func getHeaderValues(uint32, string, unsafe.Pointer, uint32) uint64 { nohost(); return 0 }
func setHeaderValue(uint32, string, string)                         { nohost() }
func addHeaderValue(uint32, string, string)                         { nohost() }
func removeHeader(uint32, string)                                   { nohost() }
func readBody(uint32, unsafe.Pointer, uint32) uint64                { nohost(); return 0 }
func writeBody(uint32, unsafe.Pointer, uint32)                      { nohost() }
func getStatusCode() uint32                                         { nohost(); return 0 }
func setStatusCode(uint32)                                          { nohost() }
