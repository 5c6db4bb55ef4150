#!/usr/bin/env bash
# filters.sh measures what each front-door filter (apikey, basicauth, jwt, acl, ipfilter, cors,
# extauth, ratelimit local and Redis) adds to a request through the gateway: one Weir process on
# bench/weir-filters.yaml, a plain route and one route per filter, all alike but for their
# filters, in front of the bench backend. wrk runs against each route in interleaved rounds
# (plain, then every filter route, in each round); Weir's CPU time per request comes from
# /proc/PID/stat (lib.sh's measure, the same code as compare.sh). It prints, and writes to
# bench/out/filters-<time>.md, per route: req/s, CPU µs per request, the CPU µs it adds to the
# plain route measured in the same round (averaged over the rounds) and its req/s relative to
# plain. See bench/README.md.
#
# Settings (environment):
#   DURATION=5s CONNECTIONS=64 THREADS=2 ROUNDS=3 WARMUP=1s   wrk run shape
#   ROUTES="apikey basicauth ..."   filter routes to measure (plain is always measured first)
#   WORKERS=<nproc>       Weir's GOMAXPROCS
#   WEIR_CONFIG=bench/weir-filters.yaml  its 127.0.0.1 addresses are rewritten
#   WEIR_BIN=bin/weir     NO_BUILD=1 skips `make build`
#   BASE_PORT=18180       backend on BASE_PORT+1, Weir on BASE_PORT+4
#   REDIS_PORT=<random>   redis-server's port (127.0.0.1), a free one between 20000 and 59999
#   OUT_DIR=bench/out
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1s}
WORKERS=${WORKERS:-$(nproc)}
WEIR_CONFIG=${WEIR_CONFIG:-bench/weir-filters.yaml}
WEIR_BIN=${WEIR_BIN:-bin/weir}
NO_BUILD=${NO_BUILD:-0}
BASE_PORT=${BASE_PORT:-18180}
OUT_DIR=${OUT_DIR:-bench/out}
GO=${GO:-go}

die() { echo "filters.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

# --- routes ------------------------------------------------------------------------------
#
# add_route NAME DESCRIPTION CHECK [HEADER...]
#   NAME is a route of weir-filters.yaml, requested as `GET /` with `Host: NAME.bench`; HEADERs
#   are sent with every request (wrk -H). CHECK proves, before anything is measured, that the
#   filter really runs on the route: a status the route answers when the HEADERs are left out
#   (401), `header:<Name>` for a response field the filter adds, or `-`. A new row is one line
#   here and a route in weir-filters.yaml.
declare -a route_order=()
declare -A rt_desc=() rt_check=() rt_hdrs=()
add_route() {
	local name=$1 h
	route_order+=("$name")
	rt_desc[$name]=$2 rt_check[$name]=$3 rt_hdrs[$name]=""
	shift 3
	for h in "$@"; do rt_hdrs[$name]+="$h"$'\n'; done
}
jwt_token=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJhcGkiLCJlbWFpbCI6ImFsaWNlQGV4YW1wbGUuY29tIiwiZXhwIjo0MTAyNDQ0ODAwLCJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwic3ViIjoiYWxpY2UifQ.Br5HPR_teavNiI9AIhaWwCC8rO2nsU7PXXcW9NCTr-I
add_route plain "no filter (the baseline)" -
add_route apikey "apikey: a consumer's key in X-API-Key" 401 "X-API-Key: weir-bench-key"
add_route basicauth "basicauth: the same user and password every request (verification cache)" 401 \
	"Authorization: Basic $(printf %s bench:weir-bench-pass | base64)"
add_route jwt "jwt: HS256, inline key, one token expiring in 2100 (verified-token cache)" 401 \
	"Authorization: Bearer $jwt_token"
add_route acl "apikey, then acl allowing the consumer's group" 401 "X-API-Key: weir-bench-key"
add_route ipfilter "ipfilter: allow 127.0.0.0/8" -
add_route cors "cors: a simple GET from an allowed origin" header:Access-Control-Allow-Origin \
	"Origin: https://app.bench.example"
add_route extauth "extauth: allow decisions cached per Authorization (the backend is the auth service)" - \
	"Authorization: Bearer weir-bench-session"
add_route ratelimit-local "ratelimit, local: 10^6/s per client address (never denies)" header:RateLimit-Policy
add_route ratelimit-redis "ratelimit, Redis: the same limit, one EVALSHA per request" header:RateLimit-Policy

ROUTES=${ROUTES:-${route_order[*]:1}}
order=(plain)
for r in $ROUTES; do
	[ -n "${rt_desc[$r]:-}" ] || die "unknown route \"$r\" (have: ${route_order[*]})"
	[ "$r" = plain ] || order+=("$r")
done
want_redis=0
case " ${order[*]} " in *" ratelimit-redis "*) want_redis=1 ;; esac

# --- tools and build ---------------------------------------------------------------------

need_pkgs=()
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
[ "$want_redis" = 1 ] && { command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server); }
install_pkgs "${need_pkgs[@]}"
CLK_TCK=$(getconf CLK_TCK)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weir-filters.XXXXXX")
pids=()
wrk_pid=""
pin_load=()
cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	[ -n "$wrk_pid" ] && stop_pid "$wrk_pid"
	# Reverse start order: Weir before Redis and the backend it talks to.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}"; done
	rm -rf "$tmp"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$NO_BUILD" != 1 ]; then
	log "make build"
	make build >&2 || die "make build failed"
fi
[ -x "$WEIR_BIN" ] || die "no Weir binary at $WEIR_BIN"
log "building the backend"
"$GO" build -o "$tmp/backend" ./bench/backend

# --- start -------------------------------------------------------------------------------

backend_addr=127.0.0.1:$((BASE_PORT + 1))
weir_addr=127.0.0.1:$((BASE_PORT + 4))

# port_free PORT: nothing accepts connections on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $((BASE_PORT + 1)) $((BASE_PORT + 4)); do
	port_free "$p" || die "127.0.0.1:$p is in use (another run?); set BASE_PORT"
done

"$tmp/backend" -addr "$backend_addr" >"$tmp/backend.log" 2>&1 &
pids+=($!)

redis_addr=127.0.0.1:16379
redis_pid=""
if [ "$want_redis" = 1 ]; then
	if [ -z "${REDIS_PORT:-}" ]; then
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			REDIS_PORT=$((20000 + RANDOM % 40000))
			port_free "$REDIS_PORT" && break
		done
	fi
	redis_addr=127.0.0.1:$REDIS_PORT
	# No persistence: the run's keys are thrown away with the process.
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
		--daemonize no --protected-mode yes >"$tmp/redis.log" 2>&1 &
	redis_pid=$!
	pids+=("$redis_pid")
	for i in $(seq 100); do
		pong=$( (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" && printf 'PING\r\n' >&3 && head -c 5 <&3) 2>/dev/null || true)
		[ "$pong" = "+PONG" ] && break
		[ "$i" = 100 ] && die "redis-server did not answer on $redis_addr: $(tail -n 5 "$tmp/redis.log")"
		sleep 0.1
	done
	log "redis-server on $redis_addr (pid $redis_pid)"
fi

sed -e "s/127\.0\.0\.1:18184/$weir_addr/g" -e "s/127\.0\.0\.1:18181/$backend_addr/g" \
	-e "s/127\.0\.0\.1:16379/$redis_addr/g" "$WEIR_CONFIG" >"$tmp/weir.yaml"
GOMAXPROCS=$WORKERS "$WEIR_BIN" run -c "$tmp/weir.yaml" >"$tmp/weir.log" 2>&1 &
weir_pid=$!
pids+=("$weir_pid")

# curl_route NAME [ARG...]: one request to the route with its headers.
curl_route() {
	local name=$1 h
	local -a hs=(-H "Host: $name.bench")
	shift
	while IFS= read -r h; do [ -n "$h" ] && hs+=(-H "$h"); done <<<"${rt_hdrs[$name]}"
	curl -sS -o /dev/null "${hs[@]}" "$@" "http://$weir_addr/"
}
for i in $(seq 100); do
	[ "$(curl_route plain -w '%{http_code}' 2>/dev/null || true)" = 200 ] && break
	kill -0 "$weir_pid" 2>/dev/null || die "Weir exited; its log: $(tail -n 20 "$tmp/weir.log")"
	[ "$i" = 100 ] && die "Weir did not answer within 10s; its log: $(tail -n 20 "$tmp/weir.log")"
	sleep 0.1
done
log "Weir on $weir_addr (pid $weir_pid, GOMAXPROCS $WORKERS)"

# Every route answers 200 with its headers, and its filter demonstrably runs.
for r in "${order[@]}"; do
	got=$(curl_route "$r" -w '%{http_code}')
	[ "$got" = 200 ] || die "$r: GET / with its headers answered $got, not 200; Weir's log: $(tail -n 5 "$tmp/weir.log")"
	case ${rt_check[$r]} in
	-) ;;
	header:*)
		h=${rt_check[$r]#header:}
		curl_route "$r" -D - | grep -qi "^$h:" || die "$r: the answer lacks $h, so the filter did not run"
		;;
	*)
		got=$(curl -sS -o /dev/null -w '%{http_code}' -H "Host: $r.bench" "http://$weir_addr/")
		[ "$got" = "${rt_check[$r]}" ] || die "$r: without its headers it answered $got, not ${rt_check[$r]}"
		;;
	esac
done

# --- measure -----------------------------------------------------------------------------

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$OUT_DIR/filters-$stamp"
mkdir -p "$out"
wrk_args=(-t "$THREADS" -c "$CONNECTIONS")
# wrk_hdrs NAME: the route's wrk -H arguments, one per line.
wrk_hdrs() {
	local h
	printf '%s\n' -H "Host: $1.bench"
	while IFS= read -r h; do [ -n "$h" ] && printf '%s\n' -H "$h"; done <<<"${rt_hdrs[$1]}"
}

# measure's arrays (lib.sh), keyed by route; round_us and round_rps keep each round's figures.
declare -A rps=() p50=() p99=() p999=() ticks=() reqs=() errs=() secs=() round_us=() round_rps=()
redis_ticks=0
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
	# First sights (a bcrypt verification, a token's signature, the auth service's first call),
	# connection pools and heap growth happen here, not in the measured runs.
	for r in "${order[@]}"; do
		log "warm-up $r ($WARMUP)"
		mapfile -t hs < <(wrk_hdrs "$r")
		run_wrk "$out/warmup-$r.txt" "${hs[@]}" -d "$WARMUP" "http://$weir_addr/"
	done
fi
for ((round = 1; round <= ROUNDS; round++)); do
	for r in "${order[@]}"; do
		log "round $round/$ROUNDS: $r"
		mapfile -t hs < <(wrk_hdrs "$r")
		[ "$r" = ratelimit-redis ] && rb=$(cpu_ticks "$redis_pid")
		measure "$r" "$out/round$round-$r.txt" "$weir_pid" "${hs[@]}" -d "$DURATION" "http://$weir_addr/"
		[ "$r" = ratelimit-redis ] && redis_ticks=$((redis_ticks + $(cpu_ticks "$redis_pid") - rb))
		kill -0 "$weir_pid" 2>/dev/null || die "Weir exited during round $round ($r); its log: $(tail -n 20 "$tmp/weir.log")"
		round_us[$r]+="$(awk -v t="$run_ticks" -v hz="$CLK_TCK" -v n="${run_reqs:-0}" 'BEGIN { printf "%.3f", n ? t / hz * 1e6 / n : 0 }') "
		round_rps[$r]+="${run_rps:-0} "
	done
done

# --- report ------------------------------------------------------------------------------

# us_per_req TICKS REQS: CPU µs per request.
us_per_req() { awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { printf "%.2f", n ? t / hz * 1e6 / n : 0 }'; }
# vs_plain NAME: "mean added-µs" "per-round added-µs" "mean req/s ratio", each round against
# plain's run in the same round.
vs_plain() {
	awk -v fu="${round_us[$1]}" -v pu="${round_us[plain]}" -v fr="${round_rps[$1]}" -v pr="${round_rps[plain]}" 'BEGIN {
		n = split(fu, a, " "); split(pu, b, " "); split(fr, c, " "); split(pr, d, " ")
		for (i = 1; i <= n; i++) {
			add = a[i] - b[i]; s += add; list = list (i > 1 ? ", " : "") sprintf("%+.2f", add)
			if (d[i] > 0) q += c[i] / d[i]
		}
		printf "%+.2f\t%s\t%.3f\n", s / n, list, q / n
	}'
}

table() {
	local r m per added list ratio
	printf '| %-15s | %8s | %-23s | %10s | %13s | %-22s | %10s | %6s |\n' route "req/s" "req/s per round" \
		"CPU µs/req" "added µs/req" "added, per round" "req/s ×plain" errors
	printf '| %-15s | %8s | %-23s | %10s | %13s | %-22s | %10s | %6s |\n' --------------- -------: \
		----------------------- ---------: ------------: ---------------------- ---------: -----:
	for r in "${order[@]}"; do
		read -r -a v <<<"${rps[$r]}"
		m=$(median "${v[@]}")
		per=$(printf '%s' "${rps[$r]}" | awk '{ for (i = 1; i <= NF; i++) printf "%s%.0f", (i > 1 ? " " : ""), $i }')
		if [ "$r" = plain ]; then
			added="—" list="" ratio="1.000"
		else
			IFS=$'\t' read -r added list ratio <<<"$(vs_plain "$r")"
		fi
		printf '| %-15s | %8.0f | %-23s | %10s | %13s | %-22s | %10s | %6s |\n' "$r" "$m" "$per" \
			"$(us_per_req "${ticks[$r]}" "${reqs[$r]}")" "$added" "$list" "$ratio" "${errs[$r]}"
	done
}

routes_list() {
	local r
	for r in "${order[@]}"; do echo "- \`$r\`: ${rt_desc[$r]}"; done
}

redis_note() {
	[ "$want_redis" = 1 ] || return 0
	local lr rr
	lr=$(awk -v a="${round_rps[ratelimit-redis]}" -v b="${round_rps[ratelimit-local]:-}" 'BEGIN {
		n = split(a, x, " "); m = split(b, y, " "); if (m != n) { print "-"; exit }
		for (i = 1; i <= n; i++) if (y[i] > 0) q += x[i] / y[i]; printf "%.3f", q / n }')
	rr=$(awk -v a="${round_us[ratelimit-redis]}" -v b="${round_us[ratelimit-local]:-}" 'BEGIN {
		n = split(a, x, " "); m = split(b, y, " "); if (m != n) { print "-"; exit }
		for (i = 1; i <= n; i++) s += x[i] - y[i]; printf "%+.2f", s / n }')
	echo "Redis limiter against local mode, same rounds: req/s ×$lr; Weir's CPU $rr µs/req; redis-server's own CPU $(us_per_req "$redis_ticks" "${reqs[ratelimit-redis]}") µs/req on top (not in Weir's figures)."
}

settings="wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS rounds (plain, then each filter route) after a $WARMUP warm-up per route; Weir GOMAXPROCS $WORKERS; config $WEIR_CONFIG"
report=$OUT_DIR/filters-$stamp.md
{
	echo "# Front-door filters: added CPU per request through the gateway"
	echo
	echo "Written by \`bench/filters.sh\`; see \`bench/README.md\`."
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "- machine: $(nproc) CPUs, $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r), load average before the run: $load_before"
	echo "- weir: $("$WEIR_BIN" version 2>&1 | head -n 1) ($WEIR_BIN); checkout $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ", work tree not clean")"
	echo "- run: $settings"
	echo
	echo "CPU µs/req is Weir's CPU time (user + system, /proc/PID/stat) over all rounds divided by the"
	echo "requests wrk completed. \"added\" is each round's µs/req minus the plain route's in the same round,"
	echo "averaged over the rounds (the per-round differences show the noise); req/s ×plain likewise."
	echo "Errors (non-2xx, socket errors) other than 0 mean the row does not measure what it claims."
	echo
	table
	echo
	redis_note
	echo
	echo "Routes (each \`GET /\` with \`Host: <route>.bench\`, 13-byte answer):"
	echo
	routes_list
} >"$tmp/report.md"
cp "$tmp/report.md" "$report"
echo
cat "$report"
echo
echo "report: $report"
echo "raw wrk output: $out"
