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
