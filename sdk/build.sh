#!/usr/bin/env bash
# Builds every SDK example from source into sdk/out/<lang>-<example>.wasm.
#
#   sdk/build.sh [c|rust|assemblyscript|go|wat|proxywasm ...]     (default: all)
#
# proxywasm builds the proxy-wasm filters written against the raw ABI in C and Rust, and in
# AssemblyScript with @solo-io/proxy-runtime (sdk/proxywasm/<lang>/examples), into
# sdk/out/proxywasm-<lang>-<example>.wasm.
#
# A language whose toolchain is missing is reported and skipped, unless WEIR_REQUIRE_ALL=1
# (CI sets it), which turns a missing toolchain into a failure. A failing build always fails.
# Like make, an output newer than every source of its SDK (and this script) is kept;
# WEIR_FORCE=1 rebuilds everything. WEIR_SDK_OUT overrides the output directory.
#
# Each example is built by `weir plugin build` (WEIR names the binary; by default this script
# builds one from ../cmd/weir), which is what a plugin author runs: this script only decides
# which languages can be built and which outputs are stale.
set -uo pipefail
cd "$(dirname "$0")"
OUT=${WEIR_SDK_OUT:-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
GO=${GO:-go}
status=0
if command -v "$GO" >/dev/null; then
	# weir plugin build runs the go on PATH; make it the one this script was given.
	PATH="$(dirname "$(command -v "$GO")"):$PATH"
fi

# weir: the weir binary, built once per run when WEIR is not set.
WEIR=${WEIR:-}
weir() {
	if [ -z "$WEIR" ]; then
		local tmp
		tmp=$(mktemp -d)
		trap 'rm -rf "$tmp"' EXIT
		if ! (cd .. && "$GO" build -o "$tmp/weir" ./cmd/weir); then
			echo "plugins: cannot build weir (go build ./cmd/weir)" >&2
			exit 1
		fi
		WEIR=$tmp/weir
	fi
	"$WEIR" "$@"
}

# plugin_build LANG NAME DIR: builds the example in DIR into $OUT/LANG-NAME.wasm.
plugin_build() {
	local out="$OUT/$1-$2.wasm"
	if weir plugin build -o "$out" "$3" >/dev/null; then
		built "$out"
	else
		echo "plugins: $1: $2 failed to build" >&2
		return 1
	fi
}

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

# uptodate LANG [DIR]: every example of LANG (in DIR/examples, DIR defaulting to LANG) is
# fresh; says so.
uptodate() {
	local d src=${2:-$1}
	for d in "$src"/examples/*/; do
		fresh "$OUT/$1-$(basename "$d").wasm" "$src" || return 1
	done
	echo "plugins: $1: up to date"
}

# have_clang LANG: clang links for wasm32-wasi; otherwise LANG is skipped with what to install.
have_clang() {
	if ! command -v "${CLANG:-clang}" >/dev/null; then
		skip "$1" "clang not found (apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32)"
		return 1
	fi
	local probe
	probe=$(mktemp -d)
	echo 'int x;' >"$probe/p.c"
	if ! "${CLANG:-clang}" --target=wasm32-wasi -mexec-model=reactor -o "$probe/p.wasm" "$probe/p.c" 2>"$probe/err"; then
		skip "$1" "clang cannot link for wasm32-wasi (apt-get install lld wasi-libc libclang-rt-14-dev-wasm32): $(head -1 "$probe/err")"
		rm -rf "$probe"
		return 1
	fi
	rm -rf "$probe"
}

build_c() {
	have_clang c || return
	uptodate c && return
	weir version >/dev/null # build it before the loop
	for d in c/examples/*/; do
		CFLAGS="-Werror ${CFLAGS:-}" plugin_build c "$(basename "$d")" "$d" || status=1
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
	weir version >/dev/null
	for d in rust/examples/*/; do
		RUSTC=$RUST plugin_build rust "$(basename "$d")" "$d" || status=1
	done
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
	weir version >/dev/null
	# asc spends seconds starting up, so the examples build in parallel.
	local pids=() d
	for d in assemblyscript/examples/*/; do
		plugin_build assemblyscript "$(basename "$d")" "$d" &
		pids+=($!)
	done
	local p
	for p in "${pids[@]}"; do
		wait "$p" || status=1
	done
}

build_go() {
	if ! command -v "$GO" >/dev/null; then
		skip go "go not found"
		return
	fi
	uptodate go && return
	weir version >/dev/null
	for d in go/examples/*/; do
		plugin_build go "$(basename "$d")" "$d" || status=1
	done
}

# proxy-wasm filters: against the raw ABI in C then Rust, with the toolchains the SDKs use, and
# in AssemblyScript with @solo-io/proxy-runtime from npm (which pins its own AssemblyScript,
# 0.14, so it has its own node_modules).
build_proxywasm() {
	local d
	if have_clang proxywasm-c && ! uptodate proxywasm-c proxywasm/c; then
		weir version >/dev/null
		for d in proxywasm/c/examples/*/; do
			CFLAGS="-Werror ${CFLAGS:-}" plugin_build proxywasm-c "$(basename "$d")" "$d" || status=1
		done
	fi
	if ! find_rustc; then
		skip proxywasm-rust "no rustc with the wasm32-wasi standard library (apt-get install rustc libstd-rust-dev-wasm32)"
	elif ! uptodate proxywasm-rust proxywasm/rust; then
		weir version >/dev/null
		for d in proxywasm/rust/examples/*/; do
			RUSTC=$RUST plugin_build proxywasm-rust "$(basename "$d")" "$d" || status=1
		done
	fi
	local asdir=proxywasm/assemblyscript name out
	if ! command -v node >/dev/null; then
		skip proxywasm-assemblyscript "node not found (apt-get install nodejs npm)"
		return
	fi
	if [ ! -x "$asdir/node_modules/.bin/asc" ] && command -v npm >/dev/null && [ "${WEIR_NO_INSTALL:-0}" != 1 ]; then
		(cd "$asdir" && npm ci --no-audit --no-fund --silent) >&2
	fi
	if [ ! -x "$asdir/node_modules/.bin/asc" ]; then
		skip proxywasm-assemblyscript "@solo-io/proxy-runtime and its AssemblyScript are not installed (cd sdk/proxywasm/assemblyscript && npm ci)"
		return
	fi
	uptodate proxywasm-assemblyscript "$asdir" && return
	for d in "$asdir"/examples/*/; do
		name=$(basename "$d")
		out="$OUT/proxywasm-assemblyscript-$name.wasm"
		# abort goes to the runtime's abort_proc_exit: the module then imports nothing but the
		# proxy-wasm ABI and WASI.
		if (cd "$asdir" && node_modules/.bin/asc "examples/$name/index.ts" -b "$out" -O3 --noAssert \
			--use abort=abort_proc_exit) >&2; then
			built "$out"
		else
			echo "plugins: proxywasm-assemblyscript: $name failed to build" >&2
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
[ ${#langs[@]} -eq 0 ] && langs=(c rust assemblyscript go wat proxywasm)
for l in "${langs[@]}"; do
	case $l in
	c | rust | assemblyscript | go | wat | proxywasm) "build_$l" ;;
	*)
		echo "plugins: unknown language $l" >&2
		status=1
		;;
	esac
done
exit $status
