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
