#!/usr/bin/env bash
# Memory per idle keep-alive connection: bench/probe, a process of its own, opens N connections
# to the proxy, sends one request on each and holds them idle; the proxy's RSS is read before,
# just after, and once the idle connections have settled: Weir parks a connection after
# server.idle_park_after (1 s) and returns the memory the server gave back within 30 s
# (core/edge/park.go, trim). The bare fasthttp proxy (bench/miniproxy) is measured the same way,
# as the reference. Run by make bench; figures on stdout.
#
#   IDLE_CONNS=19000   connections (each side stays under a 20,000 descriptor limit)
#   SETTLE=45          seconds to hold them before the settled reading
#   PROXIES="weir ceiling"
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
die() { echo "idle.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

IDLE_CONNS=${IDLE_CONNS:-19000}
SETTLE=${SETTLE:-45}
PROXIES=${PROXIES:-weir ceiling}
GO=${GO:-go}
BASE_PORT=${BASE_PORT:-18380}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -gt $((IDLE_CONNS + 200)) ] || die "ulimit -n is $(ulimit -n); IDLE_CONNS=$IDLE_CONNS needs more"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weir-idle.XXXXXX")
pids=()
cleanup() {
	local i
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}"; done
	rm -rf "$tmp"
}
trap cleanup EXIT

"$GO" build -o "$tmp/weir" ./cmd/weir
"$GO" build -o "$tmp/backend" ./bench/backend
"$GO" build -o "$tmp/miniproxy" ./bench/miniproxy
"$GO" build -o "$tmp/probe" ./bench/probe

backend=127.0.0.1:$BASE_PORT
cat >"$tmp/weir.yaml" <<EOF
server:
  listen: "127.0.0.1:$((BASE_PORT + 1))"
  admin: ""
  drain_timeout: 2s
  idle_timeout: 10m
  max_conns: $((IDLE_CONNS + 1000))
access_log: { enabled: false }
upstreams: { backend: { targets: ["$backend"] } }
routes:
  - { name: all, match: { path_prefix: / }, upstream: backend }
EOF
"$tmp/backend" -addr "$backend" >/dev/null 2>&1 &
pids+=($!)

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

for p in $PROXIES; do
	case $p in
	weir) addr=127.0.0.1:$((BASE_PORT + 1)); "$tmp/weir" run -c "$tmp/weir.yaml" >"$tmp/weir.log" 2>&1 & ;;
	ceiling) addr=127.0.0.1:$((BASE_PORT + 2)); "$tmp/miniproxy" -addr "$addr" -upstream "$backend" >/dev/null 2>&1 & ;;
	*) die "unknown proxy $p" ;;
	esac
	pid=$!
	pids+=("$pid")
	"$tmp/probe" ready -url "http://$addr/" >/dev/null || die "$p did not start"
	sleep 1
	before=$(rss_kib "$pid")
	coproc IDLE { "$tmp/probe" idle -addr "$addr" -n "$IDLE_CONNS" 2>"$tmp/probe.log"; }
	probe=$IDLE_PID
	read -r word n <&"${IDLE[0]}" || { word=""; n=0; }
	[ "$word" = ready ] || die "$p: the probe failed: $(cat "$tmp/probe.log")"
	sleep 1
	just=$(rss_kib "$pid")
	sleep "$SETTLE"
	settled=$(rss_kib "$pid")
	awk -v p="$p" -v n="$n" -v a="$before" -v b="$just" -v c="$settled" -v s="$SETTLE" 'BEGIN {
		printf "idle: %-8s %d connections: RSS %.1f MiB before, %.1f MiB after 1 s (%.1f KiB each), %.1f MiB after %d s (%.1f KiB each)\n",
			p, n, a / 1024, b / 1024, (b - a) / n, c / 1024, s, (c - a) / n }'
	eval "exec ${IDLE[1]}>&-"
	wait "$probe" 2>/dev/null || true
	stop_pid "$pid"
done
