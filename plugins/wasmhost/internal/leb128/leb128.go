// Package leb128 encodes signed LEB128, the encoding of WebAssembly's const instructions and
// constant expressions. It is shared by the instrumenting rewriter in plugins/wasmhost and the
// test encoder in plugins/wasmhost/wasmtest. (Unsigned LEB128 is binary.AppendUvarint.)
package leb128

// AppendSigned appends v in signed LEB128.
func AppendSigned(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
