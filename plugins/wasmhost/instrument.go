package wasmhost

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/weir-gateway/weir/plugins/wasmhost/internal/leb128"
)

// InterruptExport is the name under which an instrumented module exports its interrupt flag.
const InterruptExport = "weir.interrupt"

// Why instrument: wazero stops a runaway guest only with WithCloseOnContextDone, which starts
// a watcher goroutine on every call — about 1–2.5 µs per call on a small machine, more than the
// rest of a plugin request together. Instead, the module is rewritten before compilation. It
// gains two mutable i32 globals: $interrupt, exported as InterruptExport and set by the call's
// timer, and $fuel. Every function entry and loop header spends one unit of fuel:
//
//	(if (i32.eqz (global.get $fuel))
//	  (then (global.set $fuel (i32.const fuelPerYield))
//	        (drop (memory.grow (i32.const 0)))             ;; a trip through Go
//	        (if (global.get $interrupt) (then unreachable))))
//	(global.set $fuel (i32.sub (global.get $fuel) (i32.const 1)))
//
// Every unbounded computation passes one of those points, so a guest past its deadline traps
// within fuelPerYield of them. The trip through Go matters as much as the flag: native code
// cannot be preempted, so a guest that never left it would hold up the garbage collector's
// stop-the-world, and with it the timer goroutine that sets the flag. memory.grow by zero pages
// is the cheapest instruction wazero runs in Go. Modules the decoder does not understand are not
// rewritten and run under wazero's per-call watcher instead, which is slower but just as safe.

// fuelPerYield is how many function entries and loop iterations run between trips through Go.
const fuelPerYield = 1000

// useInterruptChecks selects the rewrite over wazero's watcher; tests turn it off to cover the
// fallback.
var useInterruptChecks = true

// wasm section ids.
const (
	secCustom = 0
	secImport = 2
	secMemory = 5
	secGlobal = 6
	secExport = 7
	secCode   = 10
	secTag    = 13
)

var errNotWasm = errors.New("not a WebAssembly 1.0 binary module")

// instrument returns wasm rewritten with interrupt checks, or an error when it cannot be (the
// caller then falls back to wazero's watcher). It does not validate the module beyond what it
// must parse; the compiler does that.
func instrument(wasm []byte) ([]byte, error) {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" || binary.LittleEndian.Uint32(wasm[4:8]) != 1 {
		return nil, errNotWasm
	}
	type section struct {
		id   byte
		body []byte
	}
	var secs []section
	r := &reader{b: wasm, off: 8}
	for !r.done() {
		id := r.byte()
		n := r.u32()
		body := r.bytes(n)
		if r.err != nil {
			return nil, fmt.Errorf("section %d: %w", id, r.err)
		}
		secs = append(secs, section{id, body})
	}
	// The new globals' indices follow every imported and defined global.
	importedGlobals, definedGlobals, memories := 0, 0, 0
	for _, s := range secs {
		switch s.id {
		case secImport:
			g, m, err := countImports(s.body)
			if err != nil {
				return nil, fmt.Errorf("import section: %w", err)
			}
			importedGlobals, memories = g, memories+m
		case secMemory:
			sr := &reader{b: s.body}
			n := sr.u32()
			if n > 0 {
				// memory64 (flag 4) would need an i64 operand for memory.grow.
				if flags := sr.byte(); flags&0x04 != 0 {
					return nil, errors.New("64-bit memory")
				}
			}
			if sr.err != nil {
				return nil, sr.err
			}
			memories += int(n)
		case secGlobal:
			sr := &reader{b: s.body}
			definedGlobals = int(sr.u32())
			if sr.err != nil {
				return nil, sr.err
			}
		case secExport:
			if strings.Contains(string(s.body), InterruptExport) {
				return nil, fmt.Errorf("module already exports %q", InterruptExport)
			}
		}
	}
	if memories == 0 {
		return nil, errors.New("no memory to yield through")
	}
	gidx := uint32(importedGlobals + definedGlobals) // $interrupt; $fuel is gidx+1
	check := fuelCheck(gidx, gidx+1)
	// $interrupt: (mut i32) (i32.const 0); $fuel: (mut i32) (i32.const fuelPerYield).
	newGlobals := []byte{0x7f, 0x01, 0x41, 0x00, 0x0b, 0x7f, 0x01, 0x41}
	newGlobals = append(leb128.AppendSigned(newGlobals, fuelPerYield), 0x0b)

	out := append([]byte(nil), wasm[:8]...)
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = binary.AppendUvarint(out, uint64(len(body)))
		out = append(out, body...)
	}
	haveGlobal, haveExport := false, false
	addGlobalSection := func() {
		if !haveGlobal {
			emit(secGlobal, append([]byte{2}, newGlobals...))
			haveGlobal = true
		}
	}
	for _, s := range secs {
		switch s.id {
		case secCustom:
			// DWARF describes code offsets that the rewrite moves; drop it rather than mislead.
			name, _ := customName(s.body)
			if strings.HasPrefix(name, ".debug_") {
				continue
			}
			emit(s.id, s.body)
		case secGlobal:
			emit(secGlobal, appendToVec(s.body, 2, newGlobals))
			haveGlobal = true
		case secExport:
			addGlobalSection()
			e := binary.AppendUvarint(nil, uint64(len(InterruptExport)))
			e = append(e, InterruptExport...)
			e = append(e, 0x03) // global
			e = binary.AppendUvarint(e, uint64(gidx))
			emit(secExport, appendToVec(s.body, 1, e))
			haveExport = true
		case secCode:
			body, err := instrumentCode(s.body, check)
			if err != nil {
				return nil, fmt.Errorf("code section: %w", err)
			}
			if !haveExport {
				// An http-wasm guest always has exports; one without is rejected later anyway.
				return nil, errors.New("no export section")
			}
			emit(secCode, body)
		default:
			// Sections after memory/tag and before export are where a missing global section
			// goes; sections with ids 1..5 and 13 come before it.
			if !haveGlobal && s.id != secTag && s.id > secMemory && s.id != secCustom {
				addGlobalSection()
			}
			emit(s.id, s.body)
		}
	}
	if !haveExport {
		return nil, errors.New("no export section")
	}
	return out, nil
}

// appendToVec adds n encoded items to a section body that is a vector.
func appendToVec(body []byte, n int, items []byte) []byte {
	r := &reader{b: body}
	count := r.u32()
	out := binary.AppendUvarint(nil, uint64(count)+uint64(n))
	out = append(out, body[r.off:]...)
	return append(out, items...)
}

// fuelCheck encodes the check inserted at function entries and loop headers (see above).
func fuelCheck(interrupt, fuel uint32) []byte {
	get := func(b []byte, g uint32) []byte { return binary.AppendUvarint(append(b, 0x23), uint64(g)) }
	set := func(b []byte, g uint32) []byte { return binary.AppendUvarint(append(b, 0x24), uint64(g)) }
	b := get(nil, fuel)
	b = append(b, 0x45, 0x04, 0x40) // i32.eqz if
	b = leb128.AppendSigned(append(b, 0x41), fuelPerYield)
	b = set(b, fuel)
	b = append(b, 0x41, 0x00, 0x40, 0x00, 0x1a) // i32.const 0 memory.grow 0 drop
	b = get(b, interrupt)
	b = append(b, 0x04, 0x40, 0x00, 0x0b) // if unreachable end
	b = append(b, 0x0b)                   // end
	b = get(b, fuel)
	b = append(b, 0x41, 0x01, 0x6b) // i32.const 1 i32.sub
	return set(b, fuel)
}

func customName(body []byte) (string, error) {
	r := &reader{b: body}
	n := r.u32()
	name := r.bytes(n)
	return string(name), r.err
}

// countImports returns how many globals and memories a module imports.
func countImports(body []byte) (globals, memories int, err error) {
	r := &reader{b: body}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.bytes(r.u32()) // module
		r.bytes(r.u32()) // name
		switch kind := r.byte(); kind {
		case 0x00: // func: type index
			r.u32()
		case 0x01: // table: reftype, limits
			r.byte()
			r.limits()
		case 0x02: // memory: limits
			if r.off < len(r.b) && r.b[r.off]&0x04 != 0 {
				return 0, 0, errors.New("64-bit memory")
			}
			r.limits()
			memories++
		case 0x03: // global: valtype, mut
			r.byte()
			r.byte()
			globals++
		case 0x04: // tag: attribute, type index
			r.byte()
			r.u32()
		default:
			return 0, 0, fmt.Errorf("unknown import kind %#x", kind)
		}
	}
	return globals, memories, r.err
}

// instrumentCode rewrites every function body of the code section.
func instrumentCode(body, check []byte) ([]byte, error) {
	r := &reader{b: body}
	n := r.u32()
	out := binary.AppendUvarint(nil, uint64(n))
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		fn := r.bytes(size)
		if r.err != nil {
			return nil, r.err
		}
		nf, err := instrumentFunc(fn, check)
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		out = binary.AppendUvarint(out, uint64(len(nf)))
		out = append(out, nf...)
	}
	if !r.done() {
		return nil, errors.New("trailing bytes")
	}
	return out, nil
}

// instrumentFunc copies one function body, adding check at its entry and after every loop's
// block type.
func instrumentFunc(fn, check []byte) ([]byte, error) {
	r := &reader{b: fn}
	groups := r.u32()
	for i := uint32(0); i < groups; i++ {
		r.u32()
		if t := r.byte(); !isValType(t) {
			return nil, fmt.Errorf("local of type %#x", t)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	out := make([]byte, 0, len(fn)+len(check)*4)
	out = append(out, fn[:r.off]...)
	out = append(out, check...)
	start := r.off
	for !r.done() {
		op := r.byte()
		isLoop := op == 0x03
		if err := r.skipImmediates(op); err != nil {
			return nil, err
		}
		if r.err != nil {
			return nil, r.err
		}
		if isLoop {
			out = append(out, fn[start:r.off]...)
			out = append(out, check...)
			start = r.off
		}
	}
	return append(out, fn[start:]...), nil
}

func isValType(t byte) bool {
	switch t {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
		return true
	}
	return false
}

// reader decodes the binary format; the first error sticks and later reads return zeros.
type reader struct {
	b   []byte
	off int
	err error
}

var errTruncated = errors.New("unexpected end of module")

func (r *reader) done() bool { return r.err != nil || r.off >= len(r.b) }

func (r *reader) byte() byte {
	if r.err != nil || r.off >= len(r.b) {
		r.fail(errTruncated)
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) bytes(n uint32) []byte {
	if r.err != nil || uint64(r.off)+uint64(n) > uint64(len(r.b)) {
		r.fail(errTruncated)
		return nil
	}
	b := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return b
}

// uleb reads an unsigned LEB128 of at most maxBytes bytes.
func (r *reader) uleb(maxBytes int) uint64 {
	var v uint64
	for i := 0; i < maxBytes; i++ {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v
		}
	}
	r.fail(errors.New("malformed LEB128"))
	return 0
}

func (r *reader) u32() uint32 { return uint32(r.uleb(5)) }

// sleb skips a signed LEB128 of at most maxBytes bytes.
func (r *reader) sleb(maxBytes int) { r.uleb(maxBytes) }

func (r *reader) limits() {
	flags := r.byte()
	r.uleb(10)
	if flags&1 != 0 {
		r.uleb(10)
	}
}

func (r *reader) blockType() {
	if r.off < len(r.b) {
		c := r.b[r.off]
		if c == 0x40 || isValType(c) {
			r.off++
			return
		}
	}
	r.sleb(5) // s33 type index
}

func (r *reader) memarg() {
	align := r.u32()
	if align&0x40 != 0 { // multi-memory: a memory index follows
		r.u32()
	}
	r.uleb(10) // offset (u64 for memory64)
}

// skipImmediates moves past the immediates of op. Unknown opcodes are an error, which makes
// the caller fall back to the unmodified module.
func (r *reader) skipImmediates(op byte) error {
	switch {
	case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0b || op == 0x0f || op == 0x0a || op == 0x19 ||
		op == 0x1a || op == 0x1b || (op >= 0x45 && op <= 0xc4) || op == 0xd1 || op == 0xd3 || op == 0xd4:
		return nil
	case op == 0x02 || op == 0x03 || op == 0x04 || op == 0x06: // block loop if try
		r.blockType()
	case op == 0x07 || op == 0x08 || op == 0x09 || op == 0x18 || op == 0x0c || op == 0x0d ||
		op == 0x10 || op == 0x12 || op == 0x14 || op == 0x15 || op == 0xd2 || op == 0xd5 || op == 0xd6:
		r.u32() // catch tag, throw tag, rethrow/delegate/br/br_if label, call/return_call func, call_ref type, ref.func, br_on_(non_)null
	case op == 0x0e: // br_table
		n := r.u32()
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
		r.u32()
		r.u32()
	case op == 0x1c: // select t*
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			if t := r.byte(); !isValType(t) {
				return fmt.Errorf("select of type %#x", t)
			}
		}
	case op == 0x1f: // try_table
		r.blockType()
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			switch kind := r.byte(); kind {
			case 0x00, 0x01:
				r.u32()
				r.u32()
			case 0x02, 0x03:
				r.u32()
			default:
				return fmt.Errorf("unknown catch kind %#x", kind)
			}
		}
	case op >= 0x20 && op <= 0x26: // locals, globals, table.get/set
		r.u32()
	case op >= 0x28 && op <= 0x3e:
		r.memarg()
	case op == 0x3f || op == 0x40:
		r.u32()
	case op == 0x41:
		r.sleb(5)
	case op == 0x42:
		r.sleb(10)
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op == 0xd0: // ref.null heaptype
		r.blockType()
	case op == 0xfc:
		return r.skipFC(r.u32())
	case op == 0xfd:
		return r.skipSIMD(r.u32())
	case op == 0xfe:
		sub := r.u32()
		if sub == 0x03 { // atomic.fence
			r.byte()
		} else if sub <= 0x4e {
			r.memarg()
		} else {
			return fmt.Errorf("unknown atomic opcode %#x", sub)
		}
	default:
		return fmt.Errorf("unknown opcode %#x", op)
	}
	return nil
}

func (r *reader) skipFC(sub uint32) error {
	switch {
	case sub <= 7: // saturating truncations
	case sub == 8: // memory.init data mem
		r.u32()
		r.u32()
	case sub == 9 || sub == 11 || sub == 13 || (sub >= 15 && sub <= 17): // data.drop, memory.fill, elem.drop, table.grow/size/fill
		r.u32()
	case sub == 10 || sub == 12 || sub == 14: // memory.copy, table.init, table.copy
		r.u32()
		r.u32()
	default:
		return fmt.Errorf("unknown 0xfc opcode %d", sub)
	}
	return nil
}

func (r *reader) skipSIMD(sub uint32) error {
	switch {
	case sub <= 11 || sub == 92 || sub == 93: // loads, stores, load*_zero
		r.memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		r.bytes(16)
	case sub >= 21 && sub <= 34: // extract/replace lane
		r.byte()
	case sub >= 84 && sub <= 91: // load/store lane
		r.memarg()
		r.byte()
	case sub <= 275: // every other SIMD instruction has no immediates
	default:
		return fmt.Errorf("unknown SIMD opcode %d", sub)
	}
	return nil
}
