#!/usr/bin/env bash
# Builds every SDK example from source into sdk/out/<lang>-<example>.wasm.
#
#   sdk/build.sh [c|rust|assemblyscript|go|wat ...]     (default: all)
#
# A language whose toolchain is missing is reported and skipped, unless WEIR_REQUIRE_ALL=1
# (CI sets it), which turns a missing toolchain into a failure. A failing build always fails.
# Like make, an output newer than every source of its SDK (and this script) is kept;
# WEIR_FORCE=1 rebuilds everything. WEIR_SDK_OUT overrides the output directory.
set -uo pipefail
cd "$(dirname "$0")"
OUT=${WEIR_SDK_OUT:-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
GO=${GO:-go}
status=0

skip() { # lang, reason
	if [ "${WEIR_REQUIRE_ALL:-0}" = 1 ]; then
		echo "plugins: $1: FAILED: $2" >&2
		status=1
	else
		echo "plugins: $1: skipped: $2" >&2
	fi
}

built() { echo "plugins: built $1 ($(wc -c <"$1") bytes)"; }

# fresh OUT SRCDIR: whether OUT exists and is newer than everything under SRCDIR and this script.
fresh() {
	[ "${WEIR_FORCE:-0}" != 1 ] && [ -f "$1" ] && [ ! build.sh -nt "$1" ] &&
		[ -z "$(find "$2" -path '*/node_modules' -prune -o -newer "$1" -print -quit)" ]
}

# uptodate LANG: every example of LANG is fresh; says so.
uptodate() {
	local d
	for d in "$1"/examples/*/; do
		fresh "$OUT/$1-$(basename "$d").wasm" "$1" || return 1
	done
	echo "plugins: $1: up to date"
}

build_c() {
	if ! command -v "${CLANG:-clang}" >/dev/null; then
		skip c "clang not found (apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32)"
		return
	fi
	local probe
	probe=$(mktemp -d)
	echo 'int x;' >"$probe/p.c"
	if ! "${CLANG:-clang}" --target=wasm32-wasi -mexec-model=reactor -o "$probe/p.wasm" "$probe/p.c" 2>"$probe/err"; then
		skip c "clang cannot link for wasm32-wasi (apt-get install lld wasi-libc libclang-rt-14-dev-wasm32): $(head -1 "$probe/err")"
		rm -rf "$probe"
		return
	fi
	rm -rf "$probe"
	uptodate c && return
	for d in c/examples/*/; do
		local name out
		name=$(basename "$d")
		out="$OUT/c-$name.wasm"
		if "${CLANG:-clang}" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror \
			-Wl,--strip-all -o "$out" "$d"main.c; then
			built "$out"
		else
			echo "plugins: c: $name failed to build" >&2
			status=1
		fi
	done
}

# Debian's rustc 1.63 names the target wasm32-wasi; newer toolchains name it wasm32-wasip1. Use
# the first rustc that has either standard library installed.
find_rustc() {
	local r sysroot t
	for r in ${RUSTC:-} rustc /usr/bin/rustc; do
		command -v "$r" >/dev/null || continue
		sysroot=$("$r" --print sysroot 2>/dev/null) || continue
		for t in wasm32-wasip1 wasm32-wasi; do
			if [ -d "$sysroot/lib/rustlib/$t/lib" ]; then
				RUST=$r
				RUST_TARGET=$t
				return 0
			fi
		done
	done
	return 1
}

build_rust() {
	if ! find_rustc; then
		skip rust "no rustc with the wasm32-wasi standard library (apt-get install rustc libstd-rust-dev-wasm32)"
		return
	fi
	uptodate rust && return
	local tmp
	tmp=$(mktemp -d)
	local flags=(--edition 2021 --target "$RUST_TARGET" -O -C panic=abort)
	if ! "$RUST" "${flags[@]}" --crate-type rlib --crate-name weir rust/src/lib.rs -o "$tmp/libweir.rlib"; then
		echo "plugins: rust: the weir crate failed to build" >&2
		status=1
		rm -rf "$tmp"
		return
	fi
	for d in rust/examples/*/; do
		local name out
		name=$(basename "$d")
		out="$OUT/rust-$name.wasm"
		if "$RUST" "${flags[@]}" -C lto -C strip=symbols --crate-type cdylib --crate-name "${name//-/_}" \
			--extern weir="$tmp/libweir.rlib" -L "$tmp" "$d"main.rs -o "$out"; then
			built "$out"
		else
			echo "plugins: rust: $name failed to build" >&2
			status=1
		fi
	done
	rm -rf "$tmp"
}

build_assemblyscript() {
	local asc=assemblyscript/node_modules/.bin/asc
	if ! command -v node >/dev/null; then
		skip assemblyscript "node not found (apt-get install nodejs npm)"
		return
	fi
	if [ ! -x "$asc" ]; then
		# Tests set WEIR_NO_INSTALL=1: they never reach for the network.
		if command -v npm >/dev/null && [ "${WEIR_NO_INSTALL:-0}" != 1 ]; then
			(cd assemblyscript && npm ci --no-audit --no-fund --silent) >&2
		fi
		if [ ! -x "$asc" ]; then
			skip assemblyscript "the AssemblyScript compiler is not installed (cd sdk/assemblyscript && npm ci)"
			return
		fi
	fi
	uptodate assemblyscript && return
	# asc spends seconds starting up, so the examples build in parallel.
	local pids=() names=()
	for d in assemblyscript/examples/*/; do
		local name
		name=$(basename "$d")
		# --exportStart: top-level code runs from _initialize, which the host calls once per
		# instance; --use abort: traps through the SDK instead of importing env.abort.
		(cd assemblyscript && node_modules/.bin/asc "examples/$name/index.ts" -O3 --noAssert \
			--exportStart _initialize --use abort=assembly/index/weirAbort \
			-o "$OUT/assemblyscript-$name.wasm") &
		pids+=($!)
		names+=("$name")
	done
	local i
	for i in "${!pids[@]}"; do
		if wait "${pids[$i]}"; then
			built "$OUT/assemblyscript-${names[$i]}.wasm"
		else
			echo "plugins: assemblyscript: ${names[$i]} failed to build" >&2
			status=1
		fi
	done
}

build_go() {
	if ! command -v "$GO" >/dev/null; then
		skip go "go not found"
		return
	fi
	uptodate go && return
	for d in go/examples/*/; do
		local name out
		name=$(basename "$d")
		out="$OUT/go-$name.wasm"
		if (cd go && GOOS=wasip1 GOARCH=wasm "$GO" build -buildmode=c-shared -trimpath -ldflags=-s \
			-o "$out" "./examples/$name"); then
			built "$out"
		else
			echo "plugins: go: $name failed to build" >&2
			status=1
		fi
	done
}

# The WAT guests (sdk/wat/*.wat) are single files, not examples/ folders.
build_wat() {
	if ! command -v "${WAT2WASM:-wat2wasm}" >/dev/null; then
		skip wat "wat2wasm not found (apt-get install wabt)"
		return
	fi
	local f name out n=0
	for f in wat/*.wat; do
		name=$(basename "$f" .wat)
		out="$OUT/wat-$name.wasm"
		if fresh "$out" "$f"; then
			n=$((n + 1))
			continue
		fi
		if "${WAT2WASM:-wat2wasm}" "$f" -o "$out"; then
			built "$out"
		else
			echo "plugins: wat: $name failed to build" >&2
			status=1
		fi
	done
	[ $n -gt 0 ] && echo "plugins: wat: $n up to date"
}

langs=("$@")
[ ${#langs[@]} -eq 0 ] && langs=(c rust assemblyscript go wat)
for l in "${langs[@]}"; do
	case $l in
	c | rust | assemblyscript | go | wat) "build_$l" ;;
	*)
		echo "plugins: unknown language $l" >&2
		status=1
		;;
	esac
done
exit $status
