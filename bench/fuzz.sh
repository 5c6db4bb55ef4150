#!/usr/bin/env bash
# fuzz.sh runs every fuzz target of the module for FUZZTIME each (make fuzz). A target that
# fails leaves its failing input where Go writes it, testdata/fuzz/<Target>/ in the package's
# folder; this script renames each new one to the next regression-NNN there, so that it reads
# as a numbered regression case and `go test` replays it from now on, lists them, and exits 1.
# Commit those files together with the fix.
#
#   FUZZTIME=30s ./bench/fuzz.sh                 every target, in the gateway's module and in
#                                                 the tool modules listed in MODULES
#   FUZZTIME=5m ./bench/fuzz.sh ./core/proxy/     the targets of some packages
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FUZZTIME=${FUZZTIME:-30s}
GO=${GO:-go}
# Nested modules (tools kept out of the gateway's dependency graph) are fuzzed too.
MODULES=${MODULES:-. bench/chart}
root=$PWD
targets=() # "module-dir package" pairs
if [ $# -gt 0 ]; then
	for pkg in $("$GO" list "$@"); do targets+=(". $pkg"); done
else
	for mod in $MODULES; do
		for pkg in $(cd "$mod" && "$GO" list ./...); do targets+=("$mod $pkg"); done
	done
fi

found=()
failed=0
for entry in "${targets[@]}"; do
	mod=${entry%% *} pkg=${entry#* }
	cd "$root/$mod"
	dir=$("$GO" list -f '{{.Dir}}' "$pkg")
	for t in $("$GO" test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		corpus="$dir/testdata/fuzz/$t"
		before=$(ls "$corpus" 2>/dev/null | sort || true)
		echo "== $pkg $t ($FUZZTIME)"
		if "$GO" test -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" "$pkg"; then
			continue
		fi
		failed=$((failed + 1))
		n=$(ls "$corpus" 2>/dev/null | grep -c '^regression-' || true)
		for f in $(comm -13 <(echo "$before") <(ls "$corpus" 2>/dev/null | sort)); do
			case $f in regression-*) continue ;; esac
			n=$((n + 1))
			new=$(printf 'regression-%03d' "$n")
			mv "$corpus/$f" "$corpus/$new"
			found+=("${corpus#"$root"/}/$new")
		done
	done
	cd "$root"
done

if [ "$failed" -gt 0 ]; then
	echo
	echo "FUZZING FAILED: $failed target(s) failed. New regression inputs (go test replays them):"
	for f in "${found[@]}"; do echo "  $f"; done
	[ ${#found[@]} -gt 0 ] || echo "  none written: the failure was not a crashing input (see the output above)"
	exit 1
fi
echo "every fuzz target ran $FUZZTIME without a failure"
