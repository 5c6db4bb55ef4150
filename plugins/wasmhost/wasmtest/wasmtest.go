// Package wasmtest assembles tiny WebAssembly modules from Go code, so that the plugin host's
// tests, fuzz targets, benchmarks and the bundled demo plugin need no toolchain beyond Go (wazero
// has no text-format compiler, and wat2wasm is not on every machine). It encodes exactly the
// binary format of the WebAssembly core specification 1.0 for the few constructs test guests
// use: function types, function imports, one memory, exported functions and memory, passive
// data at fixed offsets, and raw instruction bytes written with the helpers of Code.
package wasmtest

import (
	"encoding/binary"
	"fmt"

	"github.com/weir-gateway/weir/plugins/wasmhost/internal/leb128"
)

// Value types.
const (
	I32 byte = 0x7f
	I64 byte = 0x7e
)

// Func is one function: its signature and, for a defined function, its body.
type Func struct {
	Params, Results []byte
	Locals          []byte // extra locals after the parameters, one type each
	Body            *Code
	Export          string // "" keeps it unexported
}

// Import is one imported function.
type Import struct {
	Module, Name    string
	Params, Results []byte
}

// Module is a module under construction. Imported functions take the first function indices,
// in order, then defined functions follow in order.
type Module struct {
	Imports []Import
	Funcs   []Func
	// MemMin and MemMax are the memory limits in 64 KiB pages; MemMax < 0 means no maximum.
	// NoMemory leaves the module without a memory.
	MemMin, MemMax int
	NoMemory       bool
	// MemExport names the exported memory ("memory" when empty).
	MemExport string
	Data      []Data
	// Start, when >= 0 with HasStart, is the index of the start function.
	HasStart bool
	Start    int
}

// Data places bytes at a fixed memory offset when the module is instantiated.
type Data struct {
	Offset int32
	Bytes  []byte
}

// FuncIndex returns the index of the defined function i (imports come first).
func (m *Module) FuncIndex(i int) uint32 { return uint32(len(m.Imports) + i) }

// ImportIndex returns the function index of the import named module.name; it panics when
// absent, which is a bug in the test that builds the module.
func (m *Module) ImportIndex(module, name string) uint32 {
	for i, im := range m.Imports {
		if im.Module == module && im.Name == name {
			return uint32(i)
		}
	}
	panic(fmt.Sprintf("wasmtest: no import %s.%s", module, name))
}

// Encode returns the module's binary encoding.
func (m *Module) Encode() []byte {
	out := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

	// Types: one per import and function, in index order (duplicates are allowed).
	var types []byte
	ntypes := 0
	addType := func(params, results []byte) uint32 {
		types = append(types, 0x60)
		types = appendVec(types, params)
		types = appendVec(types, results)
		ntypes++
		return uint32(ntypes - 1)
	}
	importTypes := make([]uint32, len(m.Imports))
	for i, im := range m.Imports {
		importTypes[i] = addType(im.Params, im.Results)
	}
	funcTypes := make([]uint32, len(m.Funcs))
	for i, f := range m.Funcs {
		funcTypes[i] = addType(f.Params, f.Results)
	}
	out = section(out, 1, uleb(nil, uint64(ntypes)), types)

	if len(m.Imports) > 0 {
		var b []byte
		for i, im := range m.Imports {
			b = appendName(b, im.Module)
			b = appendName(b, im.Name)
			b = append(b, 0x00) // func
			b = uleb(b, uint64(importTypes[i]))
		}
		out = section(out, 2, uleb(nil, uint64(len(m.Imports))), b)
	}

	if len(m.Funcs) > 0 {
		var b []byte
		for _, t := range funcTypes {
			b = uleb(b, uint64(t))
		}
		out = section(out, 3, uleb(nil, uint64(len(m.Funcs))), b)
	}

	if !m.NoMemory {
		var b []byte
		if m.MemMax < 0 {
			b = append(b, 0x00)
			b = uleb(b, uint64(m.MemMin))
		} else {
			b = append(b, 0x01)
			b = uleb(b, uint64(m.MemMin))
			b = uleb(b, uint64(m.MemMax))
		}
		out = section(out, 5, []byte{1}, b)
	}

	var exports []byte
	nexports := 0
	if !m.NoMemory {
		name := m.MemExport
		if name == "" {
			name = "memory"
		}
		exports = appendName(exports, name)
		exports = append(exports, 0x02, 0x00)
		nexports++
	}
	for i, f := range m.Funcs {
		if f.Export != "" {
			exports = appendName(exports, f.Export)
			exports = append(exports, 0x00)
			exports = uleb(exports, uint64(m.FuncIndex(i)))
			nexports++
		}
	}
	out = section(out, 7, uleb(nil, uint64(nexports)), exports)

	if m.HasStart {
		out = section(out, 8, nil, uleb(nil, uint64(m.Start)))
	}

	if len(m.Funcs) > 0 {
		var b []byte
		for _, f := range m.Funcs {
			var body []byte
			// Locals are declared one group per local; simple and valid.
			body = uleb(body, uint64(len(f.Locals)))
			for _, l := range f.Locals {
				body = append(body, 0x01, l)
			}
			if f.Body != nil {
				body = append(body, f.Body.b...)
			}
			body = append(body, 0x0b) // end
			b = uleb(b, uint64(len(body)))
			b = append(b, body...)
		}
		out = section(out, 10, uleb(nil, uint64(len(m.Funcs))), b)
	}

	if len(m.Data) > 0 {
		var b []byte
		for _, d := range m.Data {
			b = append(b, 0x00, 0x41)
			b = leb128.AppendSigned(b, int64(d.Offset))
			b = append(b, 0x0b)
			b = uleb(b, uint64(len(d.Bytes)))
			b = append(b, d.Bytes...)
		}
		out = section(out, 11, uleb(nil, uint64(len(m.Data))), b)
	}
	return out
}

// Code is a function body under construction. Each method appends one instruction.
type Code struct{ b []byte }

// NewCode returns an empty body.
func NewCode() *Code { return &Code{} }

// Raw appends instruction bytes as they are.
func (c *Code) Raw(b ...byte) *Code { c.b = append(c.b, b...); return c }

// I32 pushes an i32 constant.
func (c *Code) I32(v int32) *Code { c.b = leb128.AppendSigned(append(c.b, 0x41), int64(v)); return c }

// I64 pushes an i64 constant.
func (c *Code) I64(v int64) *Code { c.b = leb128.AppendSigned(append(c.b, 0x42), v); return c }

// Call calls function index fn.
func (c *Code) Call(fn uint32) *Code { c.b = uleb(append(c.b, 0x10), uint64(fn)); return c }

// LocalGet pushes local i.
func (c *Code) LocalGet(i uint32) *Code { c.b = uleb(append(c.b, 0x20), uint64(i)); return c }

// LocalSet pops into local i.
func (c *Code) LocalSet(i uint32) *Code { c.b = uleb(append(c.b, 0x21), uint64(i)); return c }

// Drop discards the top of the stack.
func (c *Code) Drop() *Code { return c.Raw(0x1a) }

// Unreachable traps.
func (c *Code) Unreachable() *Code { return c.Raw(0x00) }

// Return returns from the function.
func (c *Code) Return() *Code { return c.Raw(0x0f) }

// Loop opens a loop block with no result; Br(0) inside it jumps back to its start.
func (c *Code) Loop() *Code { return c.Raw(0x03, 0x40) }

// Block opens a block with no result; Br(0) inside it jumps past its end.
func (c *Code) Block() *Code { return c.Raw(0x02, 0x40) }

// End closes the innermost block or loop.
func (c *Code) End() *Code { return c.Raw(0x0b) }

// Br branches to the label depth.
func (c *Code) Br(depth uint32) *Code { c.b = uleb(append(c.b, 0x0c), uint64(depth)); return c }

// BrIf branches to the label depth when the popped i32 is not zero.
func (c *Code) BrIf(depth uint32) *Code { c.b = uleb(append(c.b, 0x0d), uint64(depth)); return c }

// MemoryGrow grows memory by the popped page count and pushes the old size or -1.
func (c *Code) MemoryGrow() *Code { return c.Raw(0x40, 0x00) }

// I32Store8 stores the low byte of the popped value at the popped address (align 0, offset 0).
func (c *Code) I32Store8() *Code { return c.Raw(0x3a, 0x00, 0x00) }

// I64Store stores the popped i64 at the popped address (align 3, offset 0).
func (c *Code) I64Store() *Code { return c.Raw(0x37, 0x03, 0x00) }

// I32Store stores the popped i32 at the popped address (align 2, offset 0).
func (c *Code) I32Store() *Code { return c.Raw(0x36, 0x02, 0x00) }

// I32Eqz pushes 1 when the popped i32 is zero.
func (c *Code) I32Eqz() *Code { return c.Raw(0x45) }

// I32Eq compares two i32 values.
func (c *Code) I32Eq() *Code { return c.Raw(0x46) }

// I32Ne compares two i32 values.
func (c *Code) I32Ne() *Code { return c.Raw(0x47) }

// I32Add adds two i32 values.
func (c *Code) I32Add() *Code { return c.Raw(0x6a) }

// I32WrapI64 truncates an i64 to i32.
func (c *Code) I32WrapI64() *Code { return c.Raw(0xa7) }

// I64ExtendI32U zero-extends an i32 to i64.
func (c *Code) I64ExtendI32U() *Code { return c.Raw(0xad) }

// I64Shl shifts left.
func (c *Code) I64Shl() *Code { return c.Raw(0x86) }

// I64Or ors two i64 values.
func (c *Code) I64Or() *Code { return c.Raw(0x84) }

func section(out []byte, id byte, prefix, body []byte) []byte {
	out = append(out, id)
	out = uleb(out, uint64(len(prefix)+len(body)))
	out = append(out, prefix...)
	return append(out, body...)
}

func appendVec(b, items []byte) []byte {
	b = uleb(b, uint64(len(items)))
	return append(b, items...)
}

func appendName(b []byte, s string) []byte {
	b = uleb(b, uint64(len(s)))
	return append(b, s...)
}

func uleb(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// Signature is a host function's parameter and result types.
type Signature struct{ Params, Results []byte }

// HTTPHandler lists the host functions of the http-wasm handler ABI (import module
// "http_handler") with their signatures, so test guests can import any of them by name.
var HTTPHandler = map[string]Signature{
	"enable_features":      {[]byte{I32}, []byte{I32}},
	"get_config":           {[]byte{I32, I32}, []byte{I32}},
	"log_enabled":          {[]byte{I32}, []byte{I32}},
	"log":                  {[]byte{I32, I32, I32}, nil},
	"get_method":           {[]byte{I32, I32}, []byte{I32}},
	"set_method":           {[]byte{I32, I32}, nil},
	"get_uri":              {[]byte{I32, I32}, []byte{I32}},
	"set_uri":              {[]byte{I32, I32}, nil},
	"get_protocol_version": {[]byte{I32, I32}, []byte{I32}},
	"get_header_names":     {[]byte{I32, I32, I32}, []byte{I64}},
	"get_header_values":    {[]byte{I32, I32, I32, I32, I32}, []byte{I64}},
	"set_header_value":     {[]byte{I32, I32, I32, I32, I32}, nil},
	"add_header_value":     {[]byte{I32, I32, I32, I32, I32}, nil},
	"remove_header":        {[]byte{I32, I32, I32}, nil},
	"read_body":            {[]byte{I32, I32, I32}, []byte{I64}},
	"write_body":           {[]byte{I32, I32, I32}, nil},
	"get_status_code":      {nil, []byte{I32}},
	"set_status_code":      {[]byte{I32}, nil},
	"get_source_addr":      {[]byte{I32, I32}, []byte{I32}},
}

// HostImport returns the import of the http_handler function name; it panics on an unknown
// name, which is a bug in the test.
func HostImport(name string) Import {
	s, ok := HTTPHandler[name]
	if !ok {
		panic("wasmtest: unknown http_handler function " + name)
	}
	return Import{Module: "http_handler", Name: name, Params: s.Params, Results: s.Results}
}

// Guest is the common shape of an http-wasm test guest: the named host imports, one page of
// memory (more with Module.MemMin), data at fixed offsets, and the two lifecycle exports.
// HandleRequest must leave an i64 (ctx_next) on the stack; a nil HandleResponse does nothing.
type Guest struct {
	Imports        []string
	Data           []Data
	HandleRequest  *Code
	HandleResponse *Code
	// Extra functions are appended after the lifecycle functions (indices follow).
	Extra []Func
}

// Module builds the guest's module.
func (g Guest) Module() *Module {
	m := &Module{MemMin: 1, MemMax: -1, Data: g.Data}
	for _, name := range g.Imports {
		m.Imports = append(m.Imports, HostImport(name))
	}
	resp := g.HandleResponse
	if resp == nil {
		resp = NewCode()
	}
	m.Funcs = append(m.Funcs,
		Func{Results: []byte{I64}, Body: g.HandleRequest, Export: "handle_request"},
		Func{Params: []byte{I32, I32}, Body: resp, Export: "handle_response"},
	)
	m.Funcs = append(m.Funcs, g.Extra...)
	return m
}

// Call returns a Code helper bound to m that calls the named http_handler import.
func (m *Module) Call(c *Code, name string) *Code { return c.Call(m.ImportIndex("http_handler", name)) }

// Fn returns the function index of the named import of g.
func (g Guest) Fn(name string) uint32 {
	for i, n := range g.Imports {
		if n == name {
			return uint32(i)
		}
	}
	panic("wasmtest: guest does not import " + name)
}
