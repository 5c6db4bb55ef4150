#!/usr/bin/env bash
# soak.sh runs Weir under load through three kinds of trouble and prints a one-line verdict for
# each (make soak):
#
#   reload    RELOADS reloads (1,000) at RELOAD_RATE a second (20) while wrk keeps the gateway
#             busy: no failed request, every reload applied, p99 during the reloads next to p99
#             without, and goroutines, memory and plugin instances back where they were.
#   kill      the backend is killed under load and started again KILL_FOR later: while it is
#             down the gateway answers 502/503 fast (under 1 s), and it serves 2xx again within
#             RECOVER_WITHIN of the backend's return.
#   slow      slowhttptest holds SLOW_CONNS (1,000) slow-header connections open while real
#             clients keep at least 99% success.
#
#   SOAKS="reload kill slow"   which runs, in order
#   RELOADS=1000 RELOAD_RATE=20 BASE_DURATION=10s   the reload run
#   KILL_AFTER=5 KILL_FOR=5 RECOVER_WITHIN=5        the kill run, in seconds
#   SLOW_CONNS=1000 SLOW_SECONDS=30                 the slow run
#   WEIR_BIN=bin/weir BASE_PORT=18090 OUT_DIR=bench/out
#
# Raw output goes to bench/out/soak-<time>/. The exit status is 1 when any verdict is FAIL.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

SOAKS=${SOAKS:-reload kill slow}
RELOADS=${RELOADS:-1000}
RELOAD_RATE=${RELOAD_RATE:-20}
BASE_DURATION=${BASE_DURATION:-10s}
KILL_AFTER=${KILL_AFTER:-5}
KILL_FOR=${KILL_FOR:-5}
RECOVER_WITHIN=${RECOVER_WITHIN:-5}
SLOW_CONNS=${SLOW_CONNS:-1000}
SLOW_SECONDS=${SLOW_SECONDS:-30}
WEIR_BIN=${WEIR_BIN:-bin/weir}
BASE_PORT=${BASE_PORT:-18090}
OUT_DIR=${OUT_DIR:-bench/out}
GO=${GO:-go}

die() { echo "soak.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

need_pkgs=()
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
case " $SOAKS " in *" slow "*) command -v slowhttptest >/dev/null 2>&1 || need_pkgs+=(slowhttptest) ;; esac
install_pkgs "${need_pkgs[@]}"
[ -x "$WEIR_BIN" ] || die "no Weir binary at $WEIR_BIN (make build)"
# slowhttptest's connections and the load clients together exceed the usual 1024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weir-soak.XXXXXX")
declare -A pid=()
bg=() # everything started, for cleanup

cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	for ((i = ${#bg[@]} - 1; i >= 0; i--)); do stop_pid "${bg[i]}" 50; done
	rm -rf "$tmp"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building the backend and the probe"
"$GO" build -o "$tmp/backend" ./bench/backend
"$GO" build -o "$tmp/probe" ./bench/probe

backend_addr=127.0.0.1:$((BASE_PORT + 1))
weir_addr=127.0.0.1:$((BASE_PORT + 4))
admin_addr=127.0.0.1:$((BASE_PORT + 5))
sed -e "s/127\.0\.0\.1:18094/$weir_addr/g" -e "s/127\.0\.0\.1:18095/$admin_addr/g" \
	-e "s/127\.0\.0\.1:18091/$backend_addr/g" -e "s#file: \.\./config/plugins/#file: $root/config/plugins/#" \
	bench/weir-soak.yaml >"$tmp/weir.yaml"

start_backend() {
	"$tmp/backend" -addr "$backend_addr" >>"$tmp/backend.log" 2>&1 &
	pid[backend]=$!
	bg+=($!)
	"$tmp/probe" ready -url "http://$backend_addr/" >/dev/null || die "backend did not start"
}
start_backend
"$WEIR_BIN" run -c "$tmp/weir.yaml" >"$tmp/weir.log" 2>&1 &
pid[weir]=$!
bg+=($!)
"$tmp/probe" ready -url "http://$weir_addr/" >/dev/null || die "weir did not start: $(tail -n 20 "$tmp/weir.log")"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$OUT_DIR/soak-$stamp"
mkdir -p "$out"
cat bench/percentiles.lua >"$tmp/pctl.lua"
verdicts=()
failed=0
verdict() { # verdict PASS|FAIL text
	verdicts+=("$1 $2")
	[ "$1" = PASS ] || failed=1
	echo "$1 $2"
}

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/${pid[weir]}/status"; }
goroutines() { curl -fsS "http://$admin_addr/debug/pprof/goroutine?debug=1" | awk 'NR == 1 { print $NF }'; }
# instances sums every "instances" figure the admin API reports (plugin instances), or "-".
instances() {
	curl -fsS "http://$admin_addr/stats" | awk -F: '/"instances"/ { gsub(/[ ,]/, "", $2); n += $2; seen = 1 } END { print seen ? n : "-" }'
}
engine_stat() { curl -fsS "http://$admin_addr/stats" | awk -F: -v k="\"$1\"" '$1 ~ k { gsub(/[ ,]/, "", $2); print $2; exit }'; }
# wrk_failed counts non-2xx answers and socket errors in a wrk output file.
wrk_failed() { awk '/^  Non-2xx/ { n += $NF } /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$1"; }
wrk_p99() { awk '$1 == "PCTL" && $2 == "99" { printf "%.2f", $3 / 1000 }' "$1"; }
wrk_reqs() { awk '/ requests in / { print $1 }' "$1"; }

soak_reload() {
	log "reload: baseline without reloads ($BASE_DURATION)"
	wrk -t2 -c32 -d "$BASE_DURATION" -s "$tmp/pctl.lua" "http://$weir_addr/" >"$out/reload-baseline.txt"
	sleep 1
	local g0 r0 i0 reloads0 fails0 secs
	g0=$(goroutines) r0=$(rss_mib) i0=$(instances)
	reloads0=$(engine_stat reloads) fails0=$(engine_stat reload_failures)
	secs=$(awk -v n="$RELOADS" -v r="$RELOAD_RATE" 'BEGIN { printf "%d", n / r + 3 }')
	log "reload: $RELOADS reloads at $RELOAD_RATE/s under load (${secs}s)"
	wrk -t2 -c32 -d "${secs}s" -s "$tmp/pctl.lua" "http://$weir_addr/" >"$out/reload-under-load.txt" &
	local wrk_pid=$!
	bg+=($wrk_pid)
	sleep 1
	"$tmp/probe" reload -admin "http://$admin_addr" -config "$tmp/weir.yaml" -n "$RELOADS" -rate "$RELOAD_RATE" >"$out/reload-driver.txt"
	wait "$wrk_pid"
	# Let retired snapshots drain and idle pool goroutines exit.
	sleep 3
	local g1 r1 i1 applied rfails reqs bad p99a p99b ok
	g1=$(goroutines) r1=$(rss_mib) i1=$(instances)
	applied=$(($(engine_stat reloads) - reloads0))
	rfails=$(($(engine_stat reload_failures) - fails0))
	reqs=$(wrk_reqs "$out/reload-under-load.txt")
	bad=$(wrk_failed "$out/reload-under-load.txt")
	p99a=$(wrk_p99 "$out/reload-baseline.txt")
	p99b=$(wrk_p99 "$out/reload-under-load.txt")
	ok=PASS
	# Goroutines may differ by a handful (timers, pool cleaners waking up); a leak per reload
	# would show as hundreds.
	if [ "$bad" -ne 0 ] || [ "$applied" -lt "$RELOADS" ] || [ "$rfails" -ne 0 ] || [ "$g1" -gt $((g0 + 20)) ]; then
		ok=FAIL
	fi
	verdict $ok "reload: $applied/$RELOADS reloads applied ($rfails rejected; $(cat "$out/reload-driver.txt")), $bad failed of $reqs requests; p99 ${p99b} ms during reloads vs ${p99a} ms without; goroutines $g0 -> $g1, RSS $r0 -> $r1 MiB, plugin instances $i0 -> $i1"
}

soak_kill() {
	local total=$((KILL_AFTER + KILL_FOR + RECOVER_WITHIN + 3)) t_kill t_back
	log "kill: load for ${total}s; backend killed at ${KILL_AFTER}s, back ${KILL_FOR}s later"
	"$tmp/probe" load -url "http://$weir_addr/" -c 8 -d "${total}s" -timeout 5s >"$out/kill-timeline.txt" &
	local load_pid=$!
	bg+=($load_pid)
	sleep "$KILL_AFTER"
	t_kill=$(date +%s%3N)
	kill -KILL "${pid[backend]}"
	wait "${pid[backend]}" 2>/dev/null || true
	sleep "$KILL_FOR"
	t_back=$(date +%s%3N)
	start_backend
	wait "$load_pid"
	# Lines: unix-ms status latency-µs. Before the kill: all 2xx expected. Between kill and
	# return: 502/503/504 answered fast. After the return: time to the first 2xx, then 2xx only.
	local summary
	summary=$(awk -v k="$t_kill" -v b="$t_back" -v rw="$RECOVER_WITHIN" '
		$1 < k { before++; if ($2 < 200 || $2 > 299) beforebad++ ; next }
		$1 < b { down++; if ($2 == 502 || $2 == 503 || $2 == 504) { gw++; if ($3 > maxms * 1000) maxms = $3 / 1000 } else if ($2 >= 200 && $2 <= 299) inflight++; else other++; next }
		{ after++; if ($2 >= 200 && $2 <= 299) { if (first == "") first = $1 - b } else if (first != "") afterbad++ }
		END {
			if (first == "") first = -1
			printf "%d %d %d %d %d %.0f %d %d %d\n", before, beforebad + 0, down, gw + 0, other + 0, maxms, first, afterbad + 0, after
		}' "$out/kill-timeline.txt")
	local before beforebad down gw other maxms first afterbad after ok=PASS
	read -r before beforebad down gw other maxms first afterbad after <<<"$summary"
	if [ "$beforebad" -ne 0 ] || [ "$gw" -eq 0 ] || [ "$other" -ne 0 ] || [ "$maxms" -ge 1000 ] ||
		[ "$first" -lt 0 ] || [ "$first" -gt $((RECOVER_WITHIN * 1000)) ] || [ "$afterbad" -ne 0 ]; then
		ok=FAIL
	fi
	verdict $ok "kill: before $before requests ($beforebad failed); backend down ${KILL_FOR}s: $gw answered 502/503/504 (slowest ${maxms} ms), $other other failures; back: first 2xx after ${first} ms, then $afterbad failures in $after requests"
}

soak_slow() {
	local load_s=$((SLOW_SECONDS - 10))
	log "slow: $SLOW_CONNS slow-header connections for ${SLOW_SECONDS}s, real clients for ${load_s}s"
	slowhttptest -H -c "$SLOW_CONNS" -r 500 -i 5 -x 24 -l "$SLOW_SECONDS" -p 3 \
		-u "http://$weir_addr/" -g -o "$out/slowhttptest" >"$out/slowhttptest.txt" 2>&1 &
	local slow_pid=$!
	bg+=($slow_pid)
	# Let the slow connections pile up before measuring.
	sleep 5
	local held
	held=$(ss -Htn state established "( dport = :${weir_addr##*:} )" 2>/dev/null | wc -l || echo "?")
	"$tmp/probe" load -url "http://$weir_addr/" -c 8 -d "${load_s}s" -timeout 2s >"$out/slow-timeline.txt"
	wait "$slow_pid" 2>/dev/null || true
	local total good ratio ok=PASS
	total=$(wc -l <"$out/slow-timeline.txt")
	good=$(awk '$2 >= 200 && $2 <= 299' "$out/slow-timeline.txt" | wc -l)
	ratio=$(awk -v g="$good" -v t="$total" 'BEGIN { printf "%.2f", t ? g * 100 / t : 0 }')
	awk -v r="$ratio" 'BEGIN { exit !(r >= 99) }' || ok=FAIL
	[ "$total" -gt 0 ] || ok=FAIL
	verdict $ok "slow: $held connections open to the gateway during the run (slowhttptest -H -c $SLOW_CONNS); real clients: $good of $total requests 2xx ($ratio%, want >= 99%)"
}

for s in $SOAKS; do
	case $s in
	reload) soak_reload ;;
	kill) soak_kill ;;
	slow) soak_slow ;;
	*) die "unknown soak \"$s\" (want reload, kill, slow)" ;;
	esac
done

echo
echo "soak results (raw output: $out):"
printf '  %s\n' "${verdicts[@]}"
exit $failed
