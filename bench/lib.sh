# shellcheck shell=bash
# Shared by the bench scripts; sourced, not run. The caller sets `self`
# (its name, for messages) first.

usage() { sed -n '2,/^set -euo/{/^set/d; s/^# \{0,1\}//; p}' "$0"; }
# shellcheck disable=SC2154 # self is set by the sourcing script
die() {
	echo "$self: $*" >&2
	exit 1
}
log() { echo "[$(date +%T)] $*" >&2; }

# need_root SMOKE: the benchmarks build network namespaces. Without root a
# smoke run (SMOKE non-empty) is skipped, as the test suite skips, unless CI
# says it must run.
need_root() {
	((EUID == 0)) && return
	if [[ -n $1 && ${CI:-} != true ]]; then
		echo "$self: not root: smoke run skipped (ip netns needs root)" >&2
		exit 0
	fi
	die "needs root, for ip netns"
}

# need_cmds CMD...: every CMD is on PATH.
need_cmds() {
	local cmd
	for cmd in "$@"; do
		command -v "$cmd" >/dev/null || die "$cmd not found on PATH"
	done
}

# stop_runner ends the unshare process PID whose child is the benchmark
# program (PID 1 of its namespaces): TERM to the program, so it cleans up,
# then KILL to unshare after 10 s. Everything else in the namespaces dies
# with the program.
stop_runner() {
	local runner=$1 child deadline=$((SECONDS + 10))
	kill -0 "$runner" 2>/dev/null || return 0
	read -r child _ <"/proc/$runner/task/$runner/children"
	[[ -n $child ]] && kill -TERM "$child" 2>/dev/null
	while ((SECONDS < deadline)) && kill -0 "$runner" 2>/dev/null; do
		sleep 0.1
	done
	kill -KILL "$runner" 2>/dev/null
	wait "$runner" 2>/dev/null
}

# wait_runner waits for the benchmark started in the background as
# $runner, at most SECONDS (the program bounds itself; this is the
# backstop), clears runner so cleanup leaves it alone, and exits with the
# program's status.
wait_runner() {
	local deadline=$((SECONDS + $1)) rc=0
	while kill -0 "$runner" 2>/dev/null; do
		((SECONDS < deadline)) || die "still running after $(($1 / 60)) minutes"
		sleep 0.5
	done
	wait "$runner" || rc=$?
	runner=""
	exit "$rc"
}
