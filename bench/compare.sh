#!/usr/bin/env bash
# compare.sh runs wrk against Weir, nginx, HAProxy and a bare fasthttp proxy (the ceiling), all
# in front of the same backend, in interleaved rounds per scenario (13-byte GET, 64 KiB GET,
# 1 KiB POST, a route with a WebAssembly plugin; and h2load for a GET over HTTP/2, h2c with
# prior knowledge, Weir against nginx's `listen ... http2`; and bench/grpcload for gRPC unary
# calls through Weir against calling the gRPC server directly), and prints req/s, p50/p99/p99.9 latency, the
# proxies' CPU time per request and the ratios to nginx. It also measures each proxy's startup
# time, its RSS when idle and while holding 10,000 idle keep-alive connections. It writes
# bench/RESULTS.md and bench/results.png and keeps wrk's raw output under bench/out/. See
# bench/README.md for how to read the figures.
#
# Settings (environment):
#   DURATION=10s CONNECTIONS=64 THREADS=2 ROUNDS=3 WARMUP=2s   wrk run shape
#   SCENARIOS="small big post plugin httpwasm proxywasm filters cache h2 grpc"   which scenarios, in
#                         order (see add_scenario below)
#   H2_CLIENTS=$CONNECTIONS H2_STREAMS=10   the h2 scenario's h2load -c and -m
#   GRPC_CALLS=$CONNECTIONS GRPC_CONNS=4   the grpc scenario's concurrent calls and connections
#   WORKERS=<nproc>       Weir's and the ceiling's GOMAXPROCS, nginx's workers, HAProxy's threads
#   PROXIES="nginx haproxy ceiling weir"   which proxies to measure, in first-round order
#   URL_PATH=/            a custom scenario: this path through every proxy...
#   WEIR_URL_PATH=$URL_PATH  ...and this one through Weir (a route with filters, say)
#   WEIR_CONFIG=bench/weir-bench.yaml  Weir's config; its 127.0.0.1 addresses are rewritten
#   WEIR_BIN=bin/weir     NO_BUILD=1 skips `make build`
#   PIN=1                 pin the proxies to PROXY_CPUS (0) and wrk + backend to LOAD_CPUS (1)
#   IDLE_CONNS=10000      idle keep-alive connections for the RSS figure; 0 skips it
#   STARTS=5              starts per proxy for the startup time (the median is reported)
#   BASE_PORT=18080       backend, nginx, ceiling, Weir, HAProxy listen on BASE_PORT+1..+5,
#                         nginx's h2c on +6, the gRPC server on +7
#   RESULTS=bench/RESULTS.md CHART=bench/results.png OUT_DIR=bench/out
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2s}
PROXIES=${PROXIES:-nginx haproxy ceiling weir}
WEIR_CONFIG=${WEIR_CONFIG:-bench/weir-bench.yaml}
WEIR_BIN=${WEIR_BIN:-bin/weir}
NO_BUILD=${NO_BUILD:-0}
PIN=${PIN:-0}
PROXY_CPUS=${PROXY_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
IDLE_CONNS=${IDLE_CONNS:-10000}
STARTS=${STARTS:-5}
BASE_PORT=${BASE_PORT:-18080}
RESULTS=${RESULTS:-bench/RESULTS.md}
CHART=${CHART:-bench/results.png}
OUT_DIR=${OUT_DIR:-bench/out}
GO=${GO:-go}
# The ceiling target: Weir keeps at least this share of the bare proxy's req/s (small GET).
TARGET=0.95

die() { echo "compare.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

# --- scenarios ---------------------------------------------------------------------------
#
# add_scenario NAME DESCRIPTION PATH WEIR_PATH LUA [PARTICIPANTS]
#   PATH is requested through nginx, HAProxy and the ceiling, WEIR_PATH through Weir; LUA is a
#   wrk script under bench/ ("" for a plain GET); PARTICIPANTS, when given, replaces "every
#   proxy": "weir-plain" is Weir on PATH, so a Weir-only route (the plugin route exists only in
#   Weir) is measured against Weir's plain route in the same interleaved rounds. Adding a
#   scenario is one line here, plus a route in weir-bench.yaml when it needs one (the cached
#   route of the cache scenario, say).
declare -A sc_desc=() sc_path=() sc_weir=() sc_lua=() sc_only=()
add_scenario() {
	sc_desc[$1]=$2 sc_path[$1]=$3 sc_weir[$1]=$4 sc_lua[$1]=$5 sc_only[$1]=${6:-}
}
add_scenario small "13-byte GET" / / ""
add_scenario big "64 KiB GET" /big /big ""
add_scenario post "1 KiB POST" /post /post post1k.lua
add_scenario plugin "13-byte GET, route with a WASM plugin vs the plain route" / /wasm/ "" "weir weir-plain"
add_scenario httpwasm "13-byte GET, route with a C add-header filter (http-wasm) vs the plain route" / /hw/ "" "weir weir-plain"
add_scenario proxywasm "13-byte GET, route with a C add-header filter (proxy-wasm) vs the plain route" / /pw/ "" "weir weir-plain"
add_scenario filters "13-byte GET, route with request-id, rewrite, headers vs the plain route" / /f/ "" "weir weir-plain"
add_scenario cache "1 KiB GET (max-age=60) from the cache filter vs the plain route uncached and nginx proxy_cache" /1k /cached/1k "" "weir weir-plain nginx"
# h2load, not wrk: HTTP/2 with prior knowledge (h2c), H2_STREAMS concurrent streams on each of
# H2_CLIENTS connections, to Weir's own listener (server.http2.h2c) and to an nginx server
# block with `listen ... http2` (plain, so h2c only) in front of the same backend.
add_scenario h2 "13-byte GET over HTTP/2 (h2c, h2load)" / / "" "weir nginx"
H2_CLIENTS=${H2_CLIENTS:-$CONNECTIONS}
H2_STREAMS=${H2_STREAMS:-10}
# bench/grpcload, not wrk: unary calls (13-byte payload each way) from GRPC_CALLS goroutines over
# GRPC_CONNS HTTP/2 connections, through Weir's listener (a kind: grpc route) and straight to the
# gRPC server ("grpc-direct", whose CPU is the server's own). Only Weir runs it.
add_scenario grpc "gRPC unary call, 13-byte payload (bench/grpcload): through Weir vs the server directly" "" "" "" "weir grpc-direct"
GRPC_CALLS=${GRPC_CALLS:-$CONNECTIONS}
GRPC_CONNS=${GRPC_CONNS:-4}

if [ -n "${URL_PATH:-}${WEIR_URL_PATH:-}" ]; then
	# The interface before scenarios existed: one path (and maybe another one for Weir).
	URL_PATH=${URL_PATH:-/}
	add_scenario custom "GET $URL_PATH (weir: ${WEIR_URL_PATH:-$URL_PATH})" "$URL_PATH" "${WEIR_URL_PATH:-$URL_PATH}" ""
	SCENARIOS=${SCENARIOS:-custom}
fi
SCENARIOS=${SCENARIOS:-small big post plugin httpwasm proxywasm filters cache h2 grpc}
for s in $SCENARIOS; do
	[ -n "${sc_desc[$s]:-}" ] || die "unknown scenario \"$s\" (have: ${!sc_desc[*]})"
done

# proxy_of names the proxy a participant runs on ("weir-plain" is Weir).
proxy_of() { echo "${1%-plain}"; }
# participants_of lists who runs scenario $1, in round-1 order: the proxies in PROXIES, or the
# scenario's own list restricted to them.
participants_of() {
	local p
	if [ -z "${sc_only[$1]}" ]; then
		echo "$PROXIES"
		return
	fi
	for p in ${sc_only[$1]}; do
		case " $PROXIES grpc-direct " in *" $(proxy_of "$p") "*) printf '%s ' "$p" ;; esac
	done
	echo
}
# url_of prints the URL participant $2 is sent in scenario $1.
url_of() {
	local path=${sc_path[$1]} a=${addr[$(proxy_of "$2")]}
	[ "$2" = weir ] && path=${sc_weir[$1]}
	# nginx speaks h2c on a listener of its own; Weir on its one listener, beside HTTP/1.1.
	[ "$1" = h2 ] && [ "$2" = nginx ] && a=$nginx_h2_addr
	# grpcload takes host:port.
	[ "$1" = grpc ] && { echo "$a"; return; }
	echo "http://$a$path"
}

# --- tools -------------------------------------------------------------------------------

need_pkgs=()
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
case " $PROXIES " in *" nginx "*)
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx-light) ;;
esac
case " $PROXIES " in *" haproxy "*)
	command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_pkgs+=(haproxy) ;;
esac
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
case " $SCENARIOS " in *" h2 "*) command -v h2load >/dev/null 2>&1 || need_pkgs+=(nghttp2-client) ;; esac
install_pkgs "${need_pkgs[@]}"
# Debian keeps nginx and haproxy in /usr/sbin, which is not on a non-root PATH.
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy 2>/dev/null || echo /usr/sbin/haproxy)
CLK_TCK=$(getconf CLK_TCK)

# 10,000 client connections and as many proxy-side descriptors need more than the usual 1024.
if [ "$IDLE_CONNS" -gt 0 ]; then
	ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
	# HAProxy reserves two descriptors per connection (client and server side) and refuses to
	# start when the limit cannot cover that, so where the hard limit is low (containers), hold
	# fewer connections; the per-connection figure stays comparable.
	if [ "$(ulimit -n)" -lt $((2 * IDLE_CONNS + 1000)) ]; then
		IDLE_CONNS=$((($(ulimit -n) - 1000) / 2))
		log "ulimit -n is $(ulimit -n) and cannot be raised: holding $IDLE_CONNS idle connections"
	fi
fi

# A pinned run gives the proxies PROXY_CPUS and everything that generates or answers load
# LOAD_CPUS, so the proxy's CPU time is not stolen by wrk; unpinned, all share every core.
pin_proxy=()
pin_load=()
if [ "$PIN" = 1 ]; then
	command -v taskset >/dev/null 2>&1 || die "PIN=1 needs taskset (util-linux)"
	pin_proxy=(taskset -c "$PROXY_CPUS")
	pin_load=(taskset -c "$LOAD_CPUS")
	# nproc honours the affinity mask, so this counts the CPUs the proxies are given.
	WORKERS=${WORKERS:-$(taskset -c "$PROXY_CPUS" nproc)}
fi
WORKERS=${WORKERS:-$(nproc)}

# --- build -------------------------------------------------------------------------------

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weir-bench.XXXXXX")
pids=()
wrk_pid=""
idle_pid=""


cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[ -n "$wrk_pid" ] && stop_pid "$wrk_pid"
	[ -n "$idle_pid" ] && stop_pid "$idle_pid"
	# Stop in reverse start order, so the backend outlives the proxies in front of it.
	local i
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		stop_pid "${pids[i]}"
	done
	rm -rf "$tmp"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

case " $PROXIES " in *" weir "*)
	if [ "$NO_BUILD" != 1 ]; then
		log "make build"
		make build >&2 || die "make build failed; PROXIES=\"nginx haproxy ceiling\" measures the others alone"
	fi
	[ -x "$WEIR_BIN" ] || die "no Weir binary at $WEIR_BIN"
	# The per-ABI routes run C filters built from source into sdk/out, as make plugins does.
	if grep -q 'file: \.\./sdk/out/' "$WEIR_CONFIG"; then
		log "sdk/build.sh c proxywasm"
		GO=$GO WEIR="$(cd "$(dirname "$WEIR_BIN")" && pwd)/$(basename "$WEIR_BIN")" ./sdk/build.sh c proxywasm >&2 ||
			die "building the C plugins failed (they need clang lld wasi-libc libclang-rt-14-dev-wasm32)"
	fi
	;;
esac
log "building the backend, the ceiling proxy and the probe"
"$GO" build -o "$tmp/backend" ./bench/backend
"$GO" build -o "$tmp/miniproxy" ./bench/miniproxy
"$GO" build -o "$tmp/probe" ./bench/probe
case " $SCENARIOS " in *" grpc "*) "$GO" build -o "$tmp/grpcload" ./bench/grpcload ;; esac

# --- configs -----------------------------------------------------------------------------

backend_addr=127.0.0.1:$((BASE_PORT + 1))
declare -A addr=(
	[nginx]=127.0.0.1:$((BASE_PORT + 2))
	[ceiling]=127.0.0.1:$((BASE_PORT + 3))
	[weir]=127.0.0.1:$((BASE_PORT + 4))
	[haproxy]=127.0.0.1:$((BASE_PORT + 5))
)
nginx_h2_addr=127.0.0.1:$((BASE_PORT + 6))
addr[grpc-direct]=127.0.0.1:$((BASE_PORT + 7))
declare -A pid=()
for p in $PROXIES; do
	[ -n "${addr[$p]:-}" ] || die "unknown proxy \"$p\" in PROXIES (want nginx, haproxy, ceiling, weir)"
done

mkdir -p "$tmp/nginx" "$tmp/haproxy" "$tmp/wasm-cache"
user_line=""
# Workers of a root master would otherwise switch to "nobody", which cannot write the temp dir.
[ "$(id -u)" -eq 0 ] && user_line="user $(id -un) $(id -gn);"
# nginx creates every temp path its modules declare, at start; the defaults are under
# /var/lib/nginx, which only root may write.
extra=""
if [ -x "$NGINX" ]; then
	for m in fastcgi uwsgi scgi; do
		"$NGINX" -V 2>&1 | grep -q -- "--without-http_${m}_module" ||
			extra+="    ${m}_temp_path $tmp/nginx/$m;"$'\n'
	done
fi
fill() { # fill TEMPLATE LISTEN > file
	awk -v user="$user_line" -v workers="$WORKERS" -v dir="$tmp/nginx" \
		-v nofile="$(ulimit -n)" -v maxconn="$((($(ulimit -n) - 200) / 2))" \
		-v backend="$backend_addr" -v listen="$2" -v listen_h2="$nginx_h2_addr" -v extra="${extra%$'\n'}" '
		{ gsub(/@USER@/, user); gsub(/@WORKERS@/, workers); gsub(/@DIR@/, dir)
		  gsub(/@BACKEND@/, backend); gsub(/@LISTEN_H2@/, listen_h2); gsub(/@LISTEN@/, listen); gsub(/@EXTRA_TEMP@/, extra)
		  gsub(/@NOFILE@/, nofile); gsub(/@MAXCONN@/, maxconn)
		  print }' "$1"
}
fill bench/nginx.conf.tmpl "${addr[nginx]}" >"$tmp/nginx/nginx.conf"
fill bench/haproxy.cfg.tmpl "${addr[haproxy]}" >"$tmp/haproxy/haproxy.cfg"
# Weir's config: the literal addresses become this run's ports, the plugin path absolute, and
# the compile cache a fresh directory; everything else is used as written.
sed -e "s/127\.0\.0\.1:18084/${addr[weir]}/g" -e "s/127\.0\.0\.1:18081/$backend_addr/g" -e "s/127\.0\.0\.1:18087/${addr[grpc-direct]}/g" \
	-e "s#file: \.\./config/plugins/#file: $root/config/plugins/#" \
	-e "s#file: \.\./sdk/out/#file: $root/sdk/out/#" \
	-e "s#plugin_cache_dir: \"off\"#plugin_cache_dir: \"$tmp/wasm-cache\"#" \
	"$WEIR_CONFIG" >"$tmp/weir.yaml"

# command_of NAME prints the command line that runs proxy NAME in the foreground.
command_of() {
	case $1 in
	nginx) echo "$NGINX" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" ;;
	haproxy) echo "$HAPROXY" -db -f "$tmp/haproxy/haproxy.cfg" ;;
	ceiling) echo env GOMAXPROCS="$WORKERS" "$tmp/miniproxy" -addr "${addr[ceiling]}" -upstream "$backend_addr" ;;
	weir) echo env GOMAXPROCS="$WORKERS" "$WEIR_BIN" run -c "$tmp/weir.yaml" ;;
	esac
}
case " $PROXIES " in *" nginx "*)
	"$NGINX" -t -q -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" >&2 ||
		die "nginx rejected $tmp/nginx/nginx.conf" ;;
esac
case " $PROXIES " in *" haproxy "*)
	"$HAPROXY" -c -q -f "$tmp/haproxy/haproxy.cfg" >&2 || die "haproxy rejected $tmp/haproxy/haproxy.cfg" ;;
esac

# --- start -------------------------------------------------------------------------------

# start NAME: runs the proxy in the background and records its pid, and in started_ms its
# startup time: from just before exec to its first 2xx answer (a fresh connection per try).
start() {
	local name=$1 t0
	local -a cmd
	read -r -a cmd <<<"$(command_of "$name")"
	t0=$(date +%s%N)
	"${pin_proxy[@]}" "${cmd[@]}" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
	pid[$name]=$!
	started_ms=$("$tmp/probe" ready -since "$t0" -url "http://${addr[$name]}/" 2>/dev/null) ||
		die "$name did not answer within 10s; its log: $(tail -n 20 "$tmp/$name.log")"
}

# stop NAME stops a proxy started by start.
stop() {
	stop_pid "${pid[$1]}"
	local keep=() p
	for p in "${pids[@]}"; do [ "$p" != "${pid[$1]}" ] && keep+=("$p"); done
	pids=("${keep[@]}")
	unset "pid[$1]"
}

# proc_pids lists the processes whose CPU time and memory are the proxy's: nginx's master and
# its workers, or the single process of the others.
proc_pids() {
	echo "${pid[$1]}"
	if [ "$1" = nginx ]; then
		pgrep -P "${pid[$1]}" || true
	fi
}

# rss_mib sums VmRSS over the proxy's processes.
rss_mib() {
	local total=0 p v
	for p in $(proc_pids "$1"); do
		v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
		total=$((total + ${v:-0}))
	done
	awk -v k="$total" 'BEGIN { printf "%.1f", k / 1024 }'
}

"${pin_load[@]}" "$tmp/backend" -addr "$backend_addr" >"$tmp/backend.log" 2>&1 &
pids+=($!)
pid[backend]=$!
"$tmp/probe" ready -url "http://$backend_addr/" >/dev/null || die "backend did not start: $(tail -n 5 "$tmp/backend.log")"
[ "$(curl -fsS "http://$backend_addr/")" = "Hello, World!" ] || die "backend answered something other than Hello, World!"
case " $SCENARIOS " in *" grpc "*)
	"${pin_load[@]}" "$tmp/grpcload" -serve "${addr[grpc-direct]}" >"$tmp/grpc-direct.log" 2>&1 &
	pids+=($!)
	pid[grpc-direct]=$!
	;;
esac

declare -A startup=() rss_idle=() rss_conns=() rss_load=() held=()
# Startup, the median of STARTS starts; for Weir each start is made twice, first with an empty
# plugin compile cache, then with the one that start filled.
weir_cold="-" weir_warm="-"
for p in $PROXIES; do
	times=() cold=()
	for ((i = 1; i <= STARTS; i++)); do
		if [ "$p" = weir ]; then
			rm -rf "$tmp/wasm-cache" && mkdir -p "$tmp/wasm-cache"
			start weir
			cold+=("$started_ms")
			stop weir
		fi
		start "$p"
		times+=("$started_ms")
		[ "$i" -lt "$STARTS" ] && stop "$p"
	done
	startup[$p]=$(median "${times[@]}")
	if [ "$p" = weir ]; then
		weir_cold=$(median "${cold[@]}")
		weir_warm=${startup[weir]}
	fi
	log "$p ready on ${addr[$p]} (pid ${pid[$p]}), startup ${startup[$p]} ms (median of $STARTS)"
done
# Every scenario's path must answer 2xx through its participants before anything is measured.
for s in $SCENARIOS; do
	for p in $(participants_of "$s"); do
		method=GET
		[ -n "${sc_lua[$s]}" ] && method=POST
		if [ "$s" = grpc ]; then
			# The server may still be starting: a few short runs until one call succeeds.
			for ((try = 1; ; try++)); do
				"$tmp/grpcload" -addr "$(url_of "$s" "$p")" -c 1 -conns 1 -d 100ms >/dev/null 2>&1 && break
				[ "$try" -lt 50 ] || die "$p: no gRPC call through $(url_of "$s" "$p") succeeds (scenario grpc)"
				sleep 0.1
			done
			continue
		fi
		h2=()
		[ "$s" = h2 ] && h2=(--http2-prior-knowledge)
		curl -fsS -o /dev/null "${h2[@]}" -X "$method" "$(url_of "$s" "$p")" ||
			die "$p: $method $(url_of "$s" "$p") does not answer 2xx (scenario $s)"
	done
done

sleep 1
for p in $PROXIES; do rss_idle[$p]=$(rss_mib "$p"); done

if [ "$IDLE_CONNS" -gt 0 ]; then
	for p in $PROXIES; do
		log "$p: holding $IDLE_CONNS idle keep-alive connections"
		coproc IDLE { "${pin_load[@]}" "$tmp/probe" idle -addr "${addr[$p]}" -n "$IDLE_CONNS" 2>"$tmp/idle-$p.log"; }
		idle_pid=$IDLE_PID
		read -r word n <&"${IDLE[0]}" || { word=""; n=0; }
		[ "$word" = ready ] || log "$p: the idle-connection probe failed: $(cat "$tmp/idle-$p.log")"
		held[$p]=${n:-0}
		sleep 1
		rss_conns[$p]=$(rss_mib "$p")
		eval "exec ${IDLE[1]}>&-"
		wait "$idle_pid" 2>/dev/null || true
		idle_pid=""
	done
	# Let the proxies notice the closes before the load starts.
	sleep 2
fi

# --- measure -----------------------------------------------------------------------------

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$OUT_DIR/$stamp"
mkdir -p "$out"

# One wrk script per scenario: its own request (if any) plus the percentile printer.
for s in $SCENARIOS; do
	: >"$tmp/$s.lua"
	[ -n "${sc_lua[$s]}" ] && cat "bench/${sc_lua[$s]}" >>"$tmp/$s.lua"
	cat bench/percentiles.lua >>"$tmp/$s.lua"
done

wrk_args=(-t "$THREADS" -c "$CONNECTIONS" --latency)

# run_h2load OUT ARG... is run_wrk for h2load (h2c with prior knowledge on an http:// URL).
run_h2load() {
	local f=$1
	shift
	"${pin_load[@]}" h2load -t "$THREADS" -c "$H2_CLIENTS" -m "$H2_STREAMS" "$@" >"$f" &
	wrk_pid=$!
	wait "$wrk_pid"
	wrk_pid=""
}

# measure_h2 KEY OUT "PID..." ARG... is measure for h2load: req/s, requests, failures and the
# proxy's CPU time. h2load reports a mean and no percentiles, so p50, p99 and p99.9 stay empty.
measure_h2() {
	local k=$1 f=$2 procs=$3 before after run_rps run_reqs run_errs
	shift 3
	# shellcheck disable=SC2086 # procs is a list of pids
	before=$(cpu_ticks $procs)
	run_h2load "$f" "$@"
	# shellcheck disable=SC2086
	after=$(cpu_ticks $procs)
	# "finished in 10.00s, 123456.70 req/s, 4.50MB/s"; "requests: N total, N started, N done,
	# N succeeded, N failed, N errored, N timeout"; "status codes: N 2xx, N 3xx, N 4xx, N 5xx"
	run_rps=$(awk '/^finished in/ { print $4 }' "$f")
	run_reqs=$(awk '/^requests:/ { print $8 }' "$f")
	run_errs=$(awk '/^requests:/ { n += $10 + $12 } /^status codes:/ { n += $7 + $9 } END { print n + 0 }' "$f")
	rps[$k]+="$run_rps "
	p50[$k]+="" p99[$k]+="" p999[$k]+=""
	reqs[$k]=$((${reqs[$k]:-0} + ${run_reqs:-0}))
	ticks[$k]=$((${ticks[$k]:-0} + after - before))
	secs[$k]=$(awk -v a="${secs[$k]:-0}" '/^finished in/ { t = $3; sub(/s,$/, "", t); print a + t }' "$f")
	errs[$k]=$((${errs[$k]:-0} + run_errs))
}
# run_grpcload OUT ARG... is run_wrk for bench/grpcload.
run_grpcload() {
	local f=$1
	shift
	"${pin_load[@]}" "$tmp/grpcload" -c "$GRPC_CALLS" -conns "$GRPC_CONNS" "$@" >"$f" &
	wrk_pid=$!
	wait "$wrk_pid" || true
	wrk_pid=""
}

# measure_grpc KEY OUT "PID..." ARG... is measure for bench/grpcload's one line of figures
# (calls=N errors=N secs=S rps=R p50_ms=A p99_ms=B p999_ms=C).
measure_grpc() {
	local k=$1 f=$2 procs=$3 before after
	shift 3
	# shellcheck disable=SC2086 # procs is a list of pids
	before=$(cpu_ticks $procs)
	run_grpcload "$f" "$@"
	# shellcheck disable=SC2086
	after=$(cpu_ticks $procs)
	field() { awk -v want="$1" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == want) print kv[2] } }' "$f"; }
	rps[$k]+="$(field rps) "
	p50[$k]+="$(field p50_ms) " p99[$k]+="$(field p99_ms) " p999[$k]+="$(field p999_ms) "
	reqs[$k]=$((${reqs[$k]:-0} + $(field calls)))
	ticks[$k]=$((${ticks[$k]:-0} + after - before))
	secs[$k]=$(awk -v a="${secs[$k]:-0}" -v t="$(field secs)" 'BEGIN { print a + t }')
	errs[$k]=$((${errs[$k]:-0} + $(field errors)))
}
# Results are keyed "scenario/proxy".
declare -A rps=() p50=() p99=() p999=() ticks=() reqs=() errs=() secs=()

for s in $SCENARIOS; do
	read -r -a order <<<"$(participants_of "$s")"
	n=${#order[@]}
	if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
		# Fills the connection pools and grows the Go heaps before anything is counted.
		for p in "${order[@]}"; do
			log "$s: warm-up $p ($WARMUP)"
			if [ "$s" = h2 ]; then
				run_h2load "$out/$s-warmup-$p.txt" -D "${WARMUP%s}" "$(url_of "$s" "$p")"
			elif [ "$s" = grpc ]; then
				run_grpcload "$out/$s-warmup-$p.txt" -d "$WARMUP" -addr "$(url_of "$s" "$p")"
			else
				run_wrk "$out/$s-warmup-$p.txt" -s "$tmp/$s.lua" -d "$WARMUP" "$(url_of "$s" "$p")"
			fi
		done
	fi
	for ((r = 1; r <= ROUNDS; r++)); do
		# Each round starts one proxy later, so no proxy always runs first or last: a slow
		# drift in the machine's load then spreads over all of them.
		for ((i = 0; i < n; i++)); do
			p=${order[$(((i + r - 1) % n))]}
			k="$s/$p"
			f="$out/$s-round$r-$p.txt"
			log "$s: round $r/$ROUNDS: $p"
			px=$(proxy_of "$p")
			mapfile -t procs < <(proc_pids "$px")
			# cpu_ticks, run_wrk and measure are in lib.sh, shared with filters.sh.
			if [ "$s" = h2 ]; then
				measure_h2 "$k" "$f" "${procs[*]}" -D "${DURATION%s}" "$(url_of "$s" "$p")"
			elif [ "$s" = grpc ]; then
				measure_grpc "$k" "$f" "${procs[*]}" -d "$DURATION" -addr "$(url_of "$s" "$p")"
			else
				measure "$k" "$f" "${procs[*]}" -s "$tmp/$s.lua" -d "$DURATION" "$(url_of "$s" "$p")"
			fi
			kill -0 "${pid[$px]}" 2>/dev/null || die "$px exited during $s round $r; its log: $(tail -n 20 "$tmp/$px.log")"
		done
	done
done
for p in $PROXIES; do rss_load[$p]=$(rss_mib "$p"); done

# --- report ------------------------------------------------------------------------------

declare -A m_rps=() m_p50=() m_p99=() m_p999=() cpu_us=() cores=()
for k in "${!rps[@]}"; do
	read -r -a v <<<"${rps[$k]}"
	m_rps[$k]=$(median "${v[@]}")
	read -r -a v <<<"${p50[$k]}"
	m_p50[$k]=$(median "${v[@]}")
	read -r -a v <<<"${p99[$k]}"
	m_p99[$k]=$(median "${v[@]}")
	read -r -a v <<<"${p999[$k]}"
	m_p999[$k]=$(median "${v[@]}")
	# Over all rounds together: clock ticks are 1/CLK_TCK s, too coarse to trust per round.
	cpu_us[$k]=$(awk -v t="${ticks[$k]}" -v hz="$CLK_TCK" -v n="${reqs[$k]}" 'BEGIN { printf "%.2f", n ? t / hz * 1e6 / n : 0 }')
	cores[$k]=$(awk -v t="${ticks[$k]}" -v hz="$CLK_TCK" -v s="${secs[$k]}" 'BEGIN { printf "%.2f", s ? t / hz / s : 0 }')
done

# ms prints a latency in ms with three decimals, or "-" where the tool gave none (h2load).
ms() { if [ -z "$1" ]; then echo -; else printf '%.3f' "$1"; fi; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.3f", a / b }'; }

scenario_table() {
	local s=$1 p k per
	printf '| %-10s | %9s | %-24s | %7s | %7s | %8s | %10s | %9s | %6s | %8s |\n' \
		proxy "req/s" "req/s per round" "p50 ms" "p99 ms" "p99.9 ms" "CPU µs/req" "CPU cores" errors "vs nginx"
	printf '| %-10s | %9s | %-24s | %7s | %7s | %8s | %10s | %9s | %6s | %8s |\n' \
		---------- --------: ------------------------ ------: ------: -------: ---------: --------: -----: -------:
	for p in $(participants_of "$s"); do
		k="$s/$p"
		[ -n "${m_rps[$k]:-}" ] || continue
		per=$(printf '%s' "${rps[$k]}" | awk '{ for (i = 1; i <= NF; i++) printf "%s%.0f", (i > 1 ? " " : ""), $i }')
		printf '| %-10s | %9.0f | %-24s | %7s | %7s | %8s | %10s | %9s | %6s | %8s |\n' \
			"$p" "${m_rps[$k]}" "$per" "$(ms "${m_p50[$k]}")" "$(ms "${m_p99[$k]}")" "$(ms "${m_p999[$k]}")" "${cpu_us[$k]}" "${cores[$k]}" \
			"${errs[$k]}" "$(ratio "${m_rps[$k]}" "${m_rps[$s/nginx]:-}")"
	done
}

# headline prints the ratios the issue asks for: Weir over each other proxy, per scenario.
headline() {
	local s b
	printf '| %-10s | %-13s | %7s | %7s | %7s | %10s |\n' scenario ratio "req/s" "p99" "p99.9" "CPU µs/req"
	printf '| %-10s | %-13s | %7s | %7s | %7s | %10s |\n' ---------- ------------- ------: ------: ------: ---------:
	for s in $SCENARIOS; do
		[ -n "${m_rps[$s/weir]:-}" ] || continue
		for b in nginx haproxy ceiling; do
			[ -n "${m_rps[$s/$b]:-}" ] || continue
			printf '| %-10s | %-13s | %7s | %7s | %7s | %10s |\n' "$s" "weir/$b" \
				"$(ratio "${m_rps[$s/weir]}" "${m_rps[$s/$b]}")" "$(ratio "${m_p99[$s/weir]}" "${m_p99[$s/$b]}")" \
				"$(ratio "${m_p999[$s/weir]}" "${m_p999[$s/$b]}")" "$(ratio "${cpu_us[$s/weir]}" "${cpu_us[$s/$b]}")"
		done
	done
	# gRPC through Weir against calling the server directly.
	for s in $SCENARIOS; do
		[ -n "${m_rps[$s/grpc-direct]:-}" ] && [ -n "${m_rps[$s/weir]:-}" ] || continue
		printf '| %-10s | %-13s | %7s | %7s | %7s | %10s |\n' "$s" "weir/direct" \
			"$(ratio "${m_rps[$s/weir]}" "${m_rps[$s/grpc-direct]}")" "$(ratio "${m_p99[$s/weir]}" "${m_p99[$s/grpc-direct]}")" \
			"$(ratio "${m_p999[$s/weir]}" "${m_p999[$s/grpc-direct]}")" "-"
	done
	# A Weir-only route against Weir's plain route, measured in the same rounds.
	for s in $SCENARIOS; do
		[ -n "${m_rps[$s/weir-plain]:-}" ] || continue
		printf '| %-10s | %-13s | %7s | %7s | %7s | %10s |\n' "$s" "$s/plain" \
			"$(ratio "${m_rps[$s/weir]}" "${m_rps[$s/weir-plain]}")" "$(ratio "${m_p99[$s/weir]}" "${m_p99[$s/weir-plain]}")" \
			"$(ratio "${m_p999[$s/weir]}" "${m_p999[$s/weir-plain]}")" "$(ratio "${cpu_us[$s/weir]}" "${cpu_us[$s/weir-plain]}")"
	done
	if [ -n "${m_rps[small/weir]:-}" ] && [ -n "${m_rps[small/ceiling]:-}" ]; then
		local got verdict
		got=$(ratio "${m_rps[small/weir]}" "${m_rps[small/ceiling]}")
		verdict=$(awk -v g="$got" -v t="$TARGET" 'BEGIN { print (g + 0 >= t ? "met" : "missed") }')
		echo
		echo "Target weir/ceiling req/s >= $TARGET on the small GET: $verdict ($got)."
	fi
}

resources() {
	local p per
	printf '| %-8s | %10s | %13s | %-28s | %13s | %13s |\n' proxy "startup ms" "RSS idle MiB" \
		"RSS with $IDLE_CONNS idle conns MiB" "KiB per conn" "RSS after load MiB"
	printf '| %-8s | %10s | %13s | %-28s | %13s | %13s |\n' -------- ---------: ------------: ---------------------------- ------------: ------------:
	for p in $PROXIES; do
		per=$(awk -v a="${rss_idle[$p]}" -v b="${rss_conns[$p]:-}" -v n="${held[$p]:-0}" 'BEGIN { if (b == "" || n == 0) print "-"; else printf "%.1f", (b - a) * 1024 / n }')
		printf '| %-8s | %10s | %13s | %-28s | %13s | %13s |\n' "$p" "${startup[$p]}" "${rss_idle[$p]}" \
			"${rss_conns[$p]:--}$([ -n "${held[$p]:-}" ] && [ "${held[$p]}" != "$IDLE_CONNS" ] && echo " (${held[$p]} held)")" \
			"$per" "${rss_load[$p]}"
	done
	echo
	echo "Weir startup (median of $STARTS) with the plugin's compile cache empty: $weir_cold ms; filled: $weir_warm ms."
}

settings="wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS interleaved rounds per scenario after a $WARMUP warm-up; \
workers (GOMAXPROCS, nginx worker_processes, HAProxy nbthread): $WORKERS; pinned: $([ "$PIN" = 1 ] && echo "proxies on CPU $PROXY_CPUS, wrk and backend on CPU $LOAD_CPUS" || echo no); \
weir config: $WEIR_CONFIG"

{
	for s in $SCENARIOS; do
		echo "### $s: ${sc_desc[$s]}"
		echo
		scenario_table "$s"
		echo
	done
	echo "### Headline ratios"
	echo
	headline
	echo
	echo "### Startup and memory"
	echo
	resources
} >"$tmp/report.md"
echo
echo "$settings"
echo
cat "$tmp/report.md"
echo
echo "raw wrk output: $out"

# The chart's input, one line per scenario and proxy; kept with the raw output.
{
	echo -e "scenario\tproxy\trps\tp99_ms\tcpu_us"
	for s in $SCENARIOS; do
		for p in $(participants_of "$s"); do
			[ -n "${m_rps[$s/$p]:-}" ] || continue
			echo -e "$s\t$p\t${m_rps[$s/$p]}\t${m_p99[$s/$p]:-0}\t${cpu_us[$s/$p]}"
		done
	done
} >"$out/summary.tsv"
# bench/chart is a module of its own (its font package stays out of the gateway's module).
case $CHART in /*) chart_out=$CHART ;; *) chart_out=$root/$CHART ;; esac
case $out in /*) chart_in=$out/summary.tsv ;; *) chart_in=$root/$out/summary.tsv ;; esac
if (cd bench/chart && "$GO" run . -in "$chart_in" -out "$chart_out" \
	-title "Weir vs nginx, HAProxy and a bare fasthttp proxy, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs") >&2; then
	echo "chart: $CHART"
else
	log "could not draw the chart; the figures are in $RESULTS"
fi

weir_version=-
case " $PROXIES " in *" weir "*) weir_version=$("$WEIR_BIN" version 2>&1 | head -n 1) ;; esac
{
	echo "# Load comparison: Weir vs nginx vs HAProxy vs a bare fasthttp proxy"
	echo
	echo "Written by \`bench/compare.sh\` (\`make bench\`); see \`bench/README.md\` for how to read it. req/s"
	echo "and latencies are medians over the rounds; CPU µs/req and CPU cores are over all rounds"
	echo "together. On a small shared machine req/s moves 10–30% between runs; CPU µs/req is the"
	echo "steadier figure."
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "- machine: $(nproc) CPUs, $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
	echo "- go: $("$GO" env GOVERSION)"
	[ -x "$NGINX" ] && echo "- nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
	[ -x "$HAPROXY" ] && echo "- haproxy: $("$HAPROXY" -v 2>&1 | head -n 1 | awk '{ print $3 }')"
	echo "- wrk: $(wrk -v 2>&1 | head -n 1 | awk '{ print $2 }')"
	echo "- weir: $weir_version ($(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
	echo "- run: $settings"
	echo
	echo "![req/s relative to nginx and CPU µs per request]($(basename "$CHART"))"
	echo
	cat "$tmp/report.md"
} >"$RESULTS"
echo "summary: $RESULTS"
