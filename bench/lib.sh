# Shell helpers shared by the bench scripts; sourced, never run.

# stop_pid PID [TENTHS] ends a process the script started: TERM, then KILL if it is still there
# after TENTHS tenths of a second (default 30).
stop_pid() {
	local p=$1 limit=${2:-30} n=0
	kill -TERM "$p" 2>/dev/null || true
	while kill -0 "$p" 2>/dev/null && [ $n -lt "$limit" ]; do
		sleep 0.1
		n=$((n + 1))
	done
	kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}

# install_pkgs PKG... installs missing Debian packages when running as root with apt-get, and
# otherwise stops the script saying what to install. It uses the caller's log and die.
install_pkgs() {
	[ $# -gt 0 ] || return 0
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		log "installing $* from the Debian archive"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
	else
		die "missing $*; install them (e.g. sudo apt-get install $*) and rerun"
	fi
}

# cpu_ticks sums utime+stime (fields 14 and 15 of /proc/PID/stat, in clock ticks of
# 1/`getconf CLK_TCK` s) over the given processes. The command name in field 2 may hold spaces,
# so fields count from the ")".
cpu_ticks() {
	local total=0 p t
	for p in "$@"; do
		t=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)
		total=$((total + t))
	done
	echo "$total"
}

# run_wrk OUT ARG... runs `wrk "${wrk_args[@]}" ARG...` (prefixed by the caller's pin_load
# array, which may be empty) in the background with its output in OUT, and waits for it: a
# trapped signal interrupts `wait` at once, whereas bash defers it until a foreground wrk has
# finished. wrk_pid holds its pid meanwhile, for the caller's cleanup.
run_wrk() {
	local f=$1
	shift
	"${pin_load[@]}" wrk "${wrk_args[@]}" "$@" >"$f" &
	wrk_pid=$!
	wait "$wrk_pid"
	wrk_pid=""
}

# measure KEY OUT "PID..." ARG... is one measured run: the CPU time of the given processes
# (the proxy's) around run_wrk OUT ARG..., and wrk's figures from OUT. It appends to the
# caller's associative arrays, under KEY: rps, p50, p99, p999 (one space-separated value per run;
# the percentiles, in ms, need percentiles.lua in the wrk script, else they stay empty) and adds
# up reqs, ticks, errs (non-2xx answers and socket errors) and secs (wrk's own duration). The
# run's figures alone are left in run_rps, run_reqs, run_ticks and run_errs.
measure() {
	local k=$1 f=$2 procs=$3 before after
	shift 3
	# shellcheck disable=SC2086 # procs is a list of pids
	before=$(cpu_ticks $procs)
	run_wrk "$f" "$@"
	# shellcheck disable=SC2086
	after=$(cpu_ticks $procs)
	run_rps=$(awk '/^Requests\/sec:/ { print $2 }' "$f")
	run_reqs=$(awk '/ requests in / { print $1 }' "$f")
	run_ticks=$((after - before))
	run_errs=$(awk '/^  Non-2xx/ { n += $NF } /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$f")
	rps[$k]+="$run_rps "
	p50[$k]+="$(awk '$1 == "PCTL" && $2 == "50" { printf "%.3f", $3 / 1000 }' "$f") "
	p99[$k]+="$(awk '$1 == "PCTL" && $2 == "99" { printf "%.3f", $3 / 1000 }' "$f") "
	p999[$k]+="$(awk '$1 == "PCTL" && $2 == "99.9" { printf "%.3f", $3 / 1000 }' "$f") "
	reqs[$k]=$((${reqs[$k]:-0} + ${run_reqs:-0}))
	ticks[$k]=$((${ticks[$k]:-0} + run_ticks))
	secs[$k]=$(awk -v a="${secs[$k]:-0}" '/ requests in / { t = $4; sub(/s,$/, "", t); print a + t }' "$f")
	errs[$k]=$((${errs[$k]:-0} + run_errs))
}

# median N... prints the median of the numbers given ("nan" for none).
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "nan"; exit }
		if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
