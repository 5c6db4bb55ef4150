#!/usr/bin/env bash
# compare.sh runs wrk against Weir, nginx and a bare fasthttp proxy (the ceiling), all in front
# of the same backend, in interleaved rounds, and prints req/s, p50/p99 latency, the proxies'
# CPU time per request and the ratios Weir/nginx and Weir/ceiling. It writes bench/RESULTS.md
# and keeps wrk's raw output under bench/out/. See bench/README.md for how to read the figures.
#
# Settings (environment):
#   DURATION=10s CONNECTIONS=64 THREADS=2 ROUNDS=3 WARMUP=2s   wrk run shape
#   WORKERS=<GOMAXPROCS>  Weir's and the ceiling's GOMAXPROCS and nginx's worker_processes
#   PROXIES="nginx ceiling weir"   which proxies to measure, in first-round order
#   URL_PATH=/            path requested through nginx and the ceiling
#   WEIR_URL_PATH=$URL_PATH  path requested through Weir (a route with filters, say)
#   WEIR_CONFIG=bench/weir-bench.yaml  Weir's config; its two 127.0.0.1 addresses are rewritten
#   WEIR_BIN=bin/weir     NO_BUILD=1 skips `make build`
#   PIN=1                 pin the proxies to PROXY_CPUS (0) and wrk + backend to LOAD_CPUS (1)
#   BASE_PORT=18080       backend, nginx, ceiling and Weir listen on BASE_PORT+1..+4
#   RESULTS=bench/RESULTS.md  where the summary goes; OUT_DIR=bench/out raw wrk output
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2s}
PROXIES=${PROXIES:-nginx ceiling weir}
URL_PATH=${URL_PATH:-/}
WEIR_URL_PATH=${WEIR_URL_PATH:-$URL_PATH}
WEIR_CONFIG=${WEIR_CONFIG:-bench/weir-bench.yaml}
WEIR_BIN=${WEIR_BIN:-bin/weir}
NO_BUILD=${NO_BUILD:-0}
PIN=${PIN:-0}
PROXY_CPUS=${PROXY_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
BASE_PORT=${BASE_PORT:-18080}
RESULTS=${RESULTS:-bench/RESULTS.md}
OUT_DIR=${OUT_DIR:-bench/out}
GO=${GO:-go}
# The ceiling target from the issue: Weir keeps at least this share of the bare proxy's req/s.
TARGET=0.95

die() { echo "compare.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

# --- tools -------------------------------------------------------------------------------

need_pkgs=()
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
case " $PROXIES " in *" nginx "*)
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx-light) ;;
esac
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		log "installing ${need_pkgs[*]} from the Debian archive"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
	else
		die "missing ${need_pkgs[*]}; install them (e.g. sudo apt-get install ${need_pkgs[*]}) and rerun"
	fi
fi
# Debian keeps nginx in /usr/sbin, which is not on a non-root PATH.
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
CLK_TCK=$(getconf CLK_TCK)

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

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$wrk_pid" ]; then
		kill -TERM "$wrk_pid" 2>/dev/null || true
		wait "$wrk_pid" 2>/dev/null || true
	fi
	# Stop in reverse start order, so the backend outlives the proxies in front of it.
	local i
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
	done
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		local n=0
		while kill -0 "${pids[i]}" 2>/dev/null && [ $n -lt 30 ]; do
			sleep 0.1
			n=$((n + 1))
		done
		kill -KILL "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
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
		make build >&2 || die "make build failed; PROXIES=\"nginx ceiling\" measures the others alone"
	fi
	[ -x "$WEIR_BIN" ] || die "no Weir binary at $WEIR_BIN"
	;;
esac
log "building the backend and the ceiling proxy"
"$GO" build -o "$tmp/backend" ./bench/backend
"$GO" build -o "$tmp/miniproxy" ./bench/miniproxy

# --- start -------------------------------------------------------------------------------

backend_addr=127.0.0.1:$((BASE_PORT + 1))
declare -A addr=(
	[nginx]=127.0.0.1:$((BASE_PORT + 2))
	[ceiling]=127.0.0.1:$((BASE_PORT + 3))
	[weir]=127.0.0.1:$((BASE_PORT + 4))
)
declare -A path=([nginx]=$URL_PATH [ceiling]=$URL_PATH [weir]=$WEIR_URL_PATH)
declare -A pid=()

for p in $PROXIES; do
	[ -n "${addr[$p]:-}" ] || die "unknown proxy \"$p\" in PROXIES (want nginx, ceiling, weir)"
done

# wait_ready polls url until it answers 2xx, so a proxy that failed to start is reported
# by name instead of as a round full of socket errors.
wait_ready() {
	local name=$1 url=$2 p=$3 i
	for i in $(seq 1 100); do
		if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then
			return 0
		fi
		kill -0 "$p" 2>/dev/null || die "$name exited at start; its log: $(tail -n 20 "$tmp/$name.log")"
		sleep 0.1
	done
	die "$name did not answer $url within 10s; its log: $(tail -n 20 "$tmp/$name.log")"
}

start() {
	local name=$1
	shift
	"$@" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
	pid[$name]=$!
}

start backend "${pin_load[@]}" "$tmp/backend" -addr "$backend_addr"
wait_ready backend "http://$backend_addr/" "${pid[backend]}"
[ "$(curl -fsS "http://$backend_addr/")" = "Hello, World!" ] || die "backend answered something other than Hello, World!"

for p in $PROXIES; do
	case $p in
	nginx)
		mkdir -p "$tmp/nginx"
		user_line=""
		# Workers of a root master would otherwise switch to "nobody", which cannot write
		# the temp dir; a non-root master keeps its own user anyway.
		[ "$(id -u)" -eq 0 ] && user_line="user $(id -un) $(id -gn);"
		# nginx creates every temp path its modules declare, at start; the defaults are under
		# /var/lib/nginx, which only root may write.
		extra=""
		for m in fastcgi uwsgi scgi; do
			"$NGINX" -V 2>&1 | grep -q -- "--without-http_${m}_module" ||
				extra+="    ${m}_temp_path $tmp/nginx/$m;"$'\n'
		done
		awk -v user="$user_line" -v workers="$WORKERS" -v dir="$tmp/nginx" \
			-v backend="$backend_addr" -v listen="${addr[nginx]}" -v extra="${extra%$'\n'}" '
			{ gsub(/@USER@/, user); gsub(/@WORKERS@/, workers); gsub(/@DIR@/, dir)
			  gsub(/@BACKEND@/, backend); gsub(/@LISTEN@/, listen); gsub(/@EXTRA_TEMP@/, extra)
			  print }' bench/nginx.conf.tmpl >"$tmp/nginx/nginx.conf"
		"$NGINX" -t -q -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" >&2 ||
			die "nginx rejected $tmp/nginx/nginx.conf"
		start nginx "${pin_proxy[@]}" "$NGINX" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log"
		;;
	ceiling)
		start ceiling env GOMAXPROCS="$WORKERS" "${pin_proxy[@]}" "$tmp/miniproxy" \
			-addr "${addr[ceiling]}" -upstream "$backend_addr"
		;;
	weir)
		# The config's literal addresses become this run's ports; everything else is used as
		# written, so a scenario is just another config file.
		sed -e "s/127\.0\.0\.1:18084/${addr[weir]}/g" -e "s/127\.0\.0\.1:18081/$backend_addr/g" \
			"$WEIR_CONFIG" >"$tmp/weir.yaml"
		start weir env GOMAXPROCS="$WORKERS" "${pin_proxy[@]}" "$WEIR_BIN" run -c "$tmp/weir.yaml"
		;;
	esac
	wait_ready "$p" "http://${addr[$p]}${path[$p]}" "${pid[$p]}"
	log "$p ready on ${addr[$p]} (pid ${pid[$p]})"
done

# --- measure -----------------------------------------------------------------------------

# proc_pids lists the processes whose CPU time is the proxy's: nginx's master and its workers,
# or the single Go process.
proc_pids() {
	local p=$1
	echo "${pid[$p]}"
	if [ "$p" = nginx ]; then
		pgrep -P "${pid[$p]}" || true
	fi
}

# cpu_ticks sums utime+stime (fields 14 and 15 of /proc/PID/stat, in clock ticks) over the
# given processes. The command name in field 2 may hold spaces, so fields count from the ")".
cpu_ticks() {
	local total=0 p t
	for p in "$@"; do
		t=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)
		total=$((total + t))
	done
	echo "$total"
}

# to_ms converts one of wrk's latency figures ("412.00us", "1.20ms", "2.00s", "1.00m").
to_ms() {
	awk -v v="$1" 'BEGIN {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
		printf "%.3f", n }'
}

# run_wrk runs wrk in the background and waits for it: a trapped signal interrupts `wait` at
# once, whereas bash defers it until a foreground wrk has finished, and drops an interrupt
# entirely when wrk (which catches SIGINT to print its results) exits normally.
run_wrk() {
	local f=$1
	shift
	"${pin_load[@]}" wrk "${wrk_args[@]}" "$@" >"$f" &
	wrk_pid=$!
	wait "$wrk_pid"
	wrk_pid=""
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "nan"; exit }
		if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$OUT_DIR/$stamp"
mkdir -p "$out"

wrk_args=(-t "$THREADS" -c "$CONNECTIONS" --latency)
declare -A rps=() p50=() p99=() ticks=() reqs=() errs=() secs=()
read -r -a order <<<"$PROXIES"
n=${#order[@]}

if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
	# Fills the connection pools and grows the Go heaps before anything is counted.
	for p in "${order[@]}"; do
		log "warm-up $p ($WARMUP)"
		run_wrk "$out/warmup-$p.txt" -d "$WARMUP" "http://${addr[$p]}${path[$p]}"
	done
fi

for ((r = 1; r <= ROUNDS; r++)); do
	# Each round starts one proxy later, so no proxy always runs first or last: a slow drift
	# in the machine's load then spreads over all of them.
	for ((i = 0; i < n; i++)); do
		p=${order[$(((i + r - 1) % n))]}
		f="$out/round$r-$p.txt"
		log "round $r/$ROUNDS: $p"
		mapfile -t procs < <(proc_pids "$p")
		before=$(cpu_ticks "${procs[@]}")
		run_wrk "$f" -d "$DURATION" "http://${addr[$p]}${path[$p]}"
		after=$(cpu_ticks "${procs[@]}")
		kill -0 "${pid[$p]}" 2>/dev/null || die "$p exited during round $r; its log: $(tail -n 20 "$tmp/$p.log")"

		rps[$p]+="$(awk '/^Requests\/sec:/ { print $2 }' "$f") "
		p50[$p]+="$(to_ms "$(awk '$1 == "50%" { print $2 }' "$f")") "
		p99[$p]+="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$f")") "
		reqs[$p]=$((${reqs[$p]:-0} + $(awk '/ requests in / { print $1 }' "$f")))
		ticks[$p]=$((${ticks[$p]:-0} + after - before))
		secs[$p]=$(awk -v a="${secs[$p]:-0}" '/ requests in / { t = $4; sub(/s,$/, "", t); print a + t }' "$f")
		# Non-2xx answers and socket errors mean the figures are not for the scenario asked.
		e=$(awk '/^  Non-2xx/ { n += $NF } /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$f")
		errs[$p]=$((${errs[$p]:-0} + e))
	done
done

# --- report ------------------------------------------------------------------------------

declare -A med_rps=() med_p50=() med_p99=() cpu_us=() cores=()
for p in "${order[@]}"; do
	read -r -a v <<<"${rps[$p]}"
	med_rps[$p]=$(median "${v[@]}")
	read -r -a v <<<"${p50[$p]}"
	med_p50[$p]=$(median "${v[@]}")
	read -r -a v <<<"${p99[$p]}"
	med_p99[$p]=$(median "${v[@]}")
	# Over all rounds together: clock ticks are 1/CLK_TCK s, too coarse to trust per round.
	cpu_us[$p]=$(awk -v t="${ticks[$p]}" -v hz="$CLK_TCK" -v n="${reqs[$p]}" 'BEGIN { printf "%.2f", n ? t / hz * 1e6 / n : 0 }')
	cores[$p]=$(awk -v t="${ticks[$p]}" -v hz="$CLK_TCK" -v s="${secs[$p]}" 'BEGIN { printf "%.2f", s ? t / hz / s : 0 }')
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.3f", a / b }'; }

table() {
	printf '| %-8s | %10s | %-26s | %8s | %8s | %10s | %9s | %6s |\n' \
		proxy "req/s" "req/s per round" "p50 ms" "p99 ms" "CPU µs/req" "CPU cores" errors
	printf '| %-8s | %10s | %-26s | %8s | %8s | %10s | %9s | %6s |\n' \
		-------- ---------: -------------------------- -------: -------: ---------: --------: -----:
	for p in "${order[@]}"; do
		local per
		per=$(printf '%s' "${rps[$p]}" | awk '{ for (i = 1; i <= NF; i++) printf "%s%.0f", (i > 1 ? " " : ""), $i }')
		printf '| %-8s | %10.0f | %-26s | %8.3f | %8.3f | %10s | %9s | %6s |\n' \
			"$p" "${med_rps[$p]}" "$per" "${med_p50[$p]}" "${med_p99[$p]}" "${cpu_us[$p]}" "${cores[$p]}" "${errs[$p]}"
	done
	if [ -n "${med_rps[weir]:-}" ]; then
		local b
		echo
		printf '| %-12s | %7s | %7s | %7s | %10s |\n' ratio "req/s" "p50" "p99" "CPU µs/req"
		printf '| %-12s | %7s | %7s | %7s | %10s |\n' ------------ ------: ------: ------: ---------:
		for b in nginx ceiling; do
			[ -n "${med_rps[$b]:-}" ] || continue
			printf '| %-12s | %7s | %7s | %7s | %10s |\n' "weir/$b" \
				"$(ratio "${med_rps[weir]}" "${med_rps[$b]}")" "$(ratio "${med_p50[weir]}" "${med_p50[$b]}")" \
				"$(ratio "${med_p99[weir]}" "${med_p99[$b]}")" "$(ratio "${cpu_us[weir]}" "${cpu_us[$b]}")"
		done
		if [ -n "${med_rps[ceiling]:-}" ]; then
			local got verdict
			got=$(ratio "${med_rps[weir]}" "${med_rps[ceiling]}")
			verdict=$(awk -v g="$got" -v t="$TARGET" 'BEGIN { print (g + 0 >= t ? "met" : "missed") }')
			echo
			echo "Target weir/ceiling req/s >= $TARGET: $verdict ($got)."
		fi
	fi
}

settings="wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, $ROUNDS interleaved rounds after a $WARMUP warm-up; \
GOMAXPROCS / nginx workers: $WORKERS; pinned: $([ "$PIN" = 1 ] && echo "proxies on CPU $PROXY_CPUS, wrk and backend on CPU $LOAD_CPUS" || echo no); \
path: $URL_PATH (weir: $WEIR_URL_PATH); weir config: $WEIR_CONFIG"

report=$(table)
echo
echo "$settings"
echo
echo "$report"
echo
echo "raw wrk output: $out"

weir_version=-
[ -n "${pid[weir]:-}" ] && weir_version=$("$WEIR_BIN" version 2>&1 | head -n 1)
{
	echo "# Load comparison: Weir vs nginx vs a bare fasthttp proxy"
	echo
	echo "Written by \`bench/compare.sh\`; see \`bench/README.md\` for how to read it. req/s, p50 and p99"
	echo "are medians over the rounds; CPU µs/req and CPU cores are over all rounds together."
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "- machine: $(nproc) CPUs, $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
	echo "- go: $("$GO" env GOVERSION)"
	echo "- nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
	echo "- wrk: $(wrk -v 2>&1 | head -n 1 | awk '{ print $2 }')"
	echo "- weir: $weir_version ($(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
	echo "- run: $settings"
	echo
	echo "$report"
} >"$RESULTS"
echo "summary: $RESULTS"
