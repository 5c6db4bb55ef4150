package config

import (
	"errors"
	"fmt"
)

// wasmPageBytes is WebAssembly's memory page: 64 KiB.
const wasmPageBytes = 64 << 10

// wasmMinMemoryPages returns the initial size, in pages, of the linear memory a WebAssembly
// binary declares (defined in its memory section or imported), so that a memory_mb below it is
// reported on the plugin's own key at config load instead of when each route instantiates it.
// ok is false when b is not a module this reader understands; the plugin host then reports it.
func wasmMinMemoryPages(b []byte) (pages uint32, ok bool) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return 0, false
	}
	r := &wasmReader{b: b[8:]}
	for len(r.b) > 0 && r.err == nil {
		id := r.byte()
		size := r.u32()
		if r.err != nil || int(size) > len(r.b) {
			return 0, false
		}
		sec := &wasmReader{b: r.b[:size]}
		r.b = r.b[size:]
		switch id {
		case 2: // imports
			for n := sec.u32(); n > 0 && sec.err == nil; n-- {
				sec.name()
				sec.name()
				switch kind := sec.byte(); kind {
				case 0: // function: type index
					sec.u32()
				case 1: // table: reference type, limits
					sec.byte()
					sec.limits()
				case 2: // memory
					if min := sec.limits(); sec.err == nil {
						return min, true
					}
				case 3: // global: value type, mutability
					sec.byte()
					sec.byte()
				case 4: // tag: attribute, type index
					sec.byte()
					sec.u32()
				default:
					return 0, false
				}
			}
		case 5: // memories
			if sec.u32() > 0 {
				if min := sec.limits(); sec.err == nil {
					return min, true
				}
			}
		}
		if sec.err != nil {
			return 0, false
		}
	}
	// No memory at all: the host reports the missing export.
	return 0, r.err == nil
}

type wasmReader struct {
	b   []byte
	err error
}

var errWasmShort = errors.New("truncated")

func (r *wasmReader) byte() byte {
	if len(r.b) == 0 {
		r.err = errWasmShort
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// u32 reads an unsigned LEB128 number; a memory64 minimum above 2^32 pages counts as an error.
func (r *wasmReader) u32() uint32 {
	var v uint64
	for shift := 0; shift < 64; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if v > 1<<32-1 {
				r.err = errWasmShort
				return 0
			}
			return uint32(v)
		}
	}
	r.err = errWasmShort
	return 0
}

func (r *wasmReader) name() {
	n := r.u32()
	if r.err == nil && int(n) > len(r.b) {
		r.err = errWasmShort
	}
	if r.err == nil {
		r.b = r.b[n:]
	}
}

// limits reads a limits entry (flags, min, optional max) and returns min.
func (r *wasmReader) limits() uint32 {
	flags := r.byte()
	min := r.u32()
	if flags&1 != 0 {
		r.u32()
	}
	return min
}

// MemoryBelowMinimum is the problem with a memory_mb that cannot hold a module whose memory
// starts at minPages, with honest sizes (pages of 64 KiB, MiB with one decimal) and the smallest
// memory_mb that fits; nil when it fits.
func MemoryBelowMinimum(memoryMB int, minPages uint32) error {
	need := uint64(minPages) * wasmPageBytes
	if uint64(memoryMB)<<20 >= need {
		return nil
	}
	fit := (need + 1<<20 - 1) >> 20
	return fmt.Errorf("%d MiB is below the module's minimum memory of %s (%d pages of 64 KiB); set at least %d",
		memoryMB, mib(need), minPages, fit)
}

// mib formats n bytes in MiB with one decimal, rounding up so a minimum is never understated.
func mib(n uint64) string {
	tenths := (n*10 + 1<<20 - 1) >> 20
	return fmt.Sprintf("%d.%d MiB", tenths/10, tenths%10)
}
