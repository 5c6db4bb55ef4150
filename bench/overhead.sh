#!/usr/bin/env bash
# What observability costs per request: the same Weir binary twice, side by side, small keep-alive
# GETs through each in interleaved wrk rounds; CPU µs per request from the process's CPU time.
#
#   off: server.metrics false, tracing off
#   on:  server.metrics true, tracing on at sample_ratio 0.01, exporting over OTLP/HTTP to the
#        bench backend (which answers 200 to anything, so spans leave the process as they would
#        to a real collector)
#
# The issue's target: on costs at most 3 % more CPU per request than off. Run by make bench.
#
#   ROUNDS=6 DURATION=10s CONNECTIONS=64 THREADS=2 WARMUP=2s BASE_PORT=18480
#   ON_METRICS=1 ON_TRACING=1   what "on" turns on (0 leaves it off, to cost each alone)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
. bench/lib.sh
die() { echo "overhead.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-2s}
BASE_PORT=${BASE_PORT:-18480}
ON_METRICS=${ON_METRICS:-1}
ON_TRACING=${ON_TRACING:-1}
GO=${GO:-go}
command -v wrk >/dev/null 2>&1 || die "needs wrk (apt-get install wrk)"
CLK_TCK=$(getconf CLK_TCK)
pin_load=()
wrk_args=(-t "$THREADS" -c "$CONNECTIONS" -s "$root/bench/percentiles.lua")

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weir-overhead.XXXXXX")
pids=()
wrk_pid=""
cleanup() {
	[ -n "$wrk_pid" ] && stop_pid "$wrk_pid"
	local i
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}"; done
	rm -rf "$tmp"
}
trap cleanup EXIT

"$GO" build -o "$tmp/weir" ./cmd/weir
"$GO" build -o "$tmp/backend" ./bench/backend
"$GO" build -o "$tmp/probe" ./bench/probe

backend=127.0.0.1:$BASE_PORT
declare -A addr=([off]=127.0.0.1:$((BASE_PORT + 1)) [on]=127.0.0.1:$((BASE_PORT + 2)))
for v in off on; do
	metrics=false tracing="tracing: { enabled: false }"
	if [ "$v" = on ] && [ "$ON_METRICS" = 1 ]; then
		metrics=true
	fi
	if [ "$v" = on ] && [ "$ON_TRACING" = 1 ]; then
		tracing="tracing: { enabled: true, endpoint: \"http://$backend/v1/traces\", sample_ratio: 0.01 }"
	fi
	cat >"$tmp/$v.yaml" <<EOF
server: { listen: "${addr[$v]}", admin: "", metrics: $metrics, plugin_cache_dir: "off" }
access_log: { enabled: false }
$tracing
upstreams: { backend: { targets: ["$backend"] } }
routes:
  - { name: all, match: { path_prefix: / }, upstream: backend }
EOF
done

"$tmp/backend" -addr "$backend" >/dev/null 2>&1 &
pids+=($!)
declare -A pid=()
for v in off on; do
	"$tmp/weir" run -c "$tmp/$v.yaml" >"$tmp/$v.log" 2>&1 &
	pid[$v]=$!
	pids+=($!)
	"$tmp/probe" ready -url "http://${addr[$v]}/" >/dev/null || die "weir ($v) did not start: $(tail -5 "$tmp/$v.log")"
	[ "$WARMUP" = 0 ] || run_wrk "$tmp/warm" -d "$WARMUP" "http://${addr[$v]}/"
done

declare -A rps=() p50=() p99=() p999=() reqs=() ticks=() secs=() errs=() cpu=()
for ((r = 1; r <= ROUNDS; r++)); do
	# Alternate which goes first, so neither always runs on a machine the other just warmed.
	order="off on"
	[ $((r % 2)) = 0 ] && order="on off"
	for v in $order; do
		measure "$v" "$tmp/wrk-$v-$r" "${pid[$v]}" -d "$DURATION" "http://${addr[$v]}/"
		log "round $r $v: $run_rps req/s, $(awk -v t="$run_ticks" -v n="$run_reqs" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }') CPU µs/req"
	done
done

for v in off on; do
	cpu[$v]=$(awk -v t="${ticks[$v]}" -v n="${reqs[$v]}" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
	# shellcheck disable=SC2086 # space-separated lists
	printf 'overhead: %-3s req/s median %s, p99 median %s ms, CPU %s µs/req, errors %s\n' "$v" \
		"$(median ${rps[$v]})" "$(median ${p99[$v]})" "${cpu[$v]}" "${errs[$v]}"
done
awk -v a="${cpu[off]}" -v b="${cpu[on]}" -v m="$ON_METRICS" -v tr="$ON_TRACING" 'BEGIN {
	what = (m == 1 && tr == 1) ? "metrics on + tracing at 1%" : (m == 1 ? "metrics on" : (tr == 1 ? "tracing at 1%" : "nothing"))
	printf "overhead: %s cost %+.1f%% CPU per request (target for both <= +3%%)\n", what, (b - a) / a * 100 }'
