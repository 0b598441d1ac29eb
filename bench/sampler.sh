#!/usr/bin/env bash
# Benchmarks listenq_exporter's background sampler in a private network
# namespace holding 1,000 TCP listeners and 10,000 unix sockets, in two
# shapes: "realistic" (100 named unix listeners + 4,950 socketpairs) and
# "worst" (10,000 named unix listeners). It reports
#   - the exporter's CPU use without scrapes, as a fraction of one core,
#     for several --sampler.interval values and with the sampler off (0);
#     the sampler's share is the difference (goal: under 1% of a core at
#     the default interval, realistic shape);
#   - at the default interval, how often bursts of 25..300 ms that fill a
#     listen queue and drain it before the next scrape still show in
#     listenq_queue_peak_length, and the shortest burst caught every time.
#
# Usage: bench/sampler.sh [--quick] [--intervals LIST] [--trials N]
#                         [--out FILE] [--nice N] [-- PROGRAM-FLAG...]
#   default (full size): intervals 50ms,100ms,200ms,250ms,500ms,1s plus the
#            binary's default and 0, 15 s of CPU measurement each per shape,
#            20 trials per burst duration; about 5 1/2 minutes
#   --quick: the default interval and 0 only, 3 s each, 5 trials; under a
#            minute, for CI smoke runs
#   --intervals LIST: comma-separated intervals to measure, e.g. 100ms,1s
#   --trials N: burst trials per duration (0 skips the burst test)
#   --out FILE: also write the table to FILE
#   --nice N: niceness of the benchmark and the exporter, by default -20 as
#             in bench/run.sh, so that other work on the machine disturbs
#             the figures less; 0 measures the exporter as usually deployed.
#   -- PROGRAM-FLAG...: passed on to the Go program (bench/sampler), e.g.
#             -- -shapes realistic -trials 0    (see: go run ./bench/sampler -h)
# Needs root (ip netns), Go, iproute2 (ip) and coreutils (timeout).
# Exit status: 1 the run failed; 3 the sampler missed the CPU goal at the
# full size (with --quick the goal is only reported).
set -euo pipefail

quick=""
extra=()
intervals=""
trials=""
out=""
nice=-20

self=sampler.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

while (($#)); do
	case $1 in
	--quick) quick=1 && shift && continue ;;
	--intervals) intervals=${2:-} ;;
	--trials) trials=${2:-} ;;
	--out) out=${2:-} ;;
	--nice) nice=${2:-} ;;
	--) shift && extra=("$@") && break ;;
	-h | --help) usage && exit 0 ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
	shift $(($# > 1 ? 2 : 1))
done
[[ -z $trials || $trials =~ ^[0-9]+$ ]] || die "--trials wants a number"
[[ $nice =~ ^-?[0-9]+$ ]] || die "--nice wants a number"
need_root "$quick"
need_cmds go ip timeout getconf

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d -t listenq-sampler.XXXXXX)
bin=$tmp/bin
ns=""

cleanup() {
	local rc=$?
	set +e
	# Only this script's processes live in the namespace: TERM them, KILL
	# whatever is still there after five seconds.
	if [[ -n $ns ]]; then
		local pids deadline=$((SECONDS + 5))
		mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
		((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null
		while ((SECONDS < deadline)) && [[ -n $(ip netns pids "$ns" 2>/dev/null) ]]; do
			sleep 0.1
		done
		mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
		((${#pids[@]})) && kill -KILL "${pids[@]}" 2>/dev/null
		ip netns del "$ns"
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

version="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -z $(git -C "$repo" status --porcelain -- . ':!bench' 2>/dev/null) ]] || version+=" + uncommitted changes"
log "building $version into $tmp"
(cd "$repo" && timeout 600 go build -o "$bin/" ./cmd/listenq_exporter ./bench/sampler)

name=listenq-sampler-$$-$RANDOM
ip netns add "$name"
ns=$name
timeout 10 ip netns exec "$ns" ip link set lo up
mkdir "$tmp/sock"

args=(-exporter "$bin/listenq_exporter" -dir "$tmp/sock" -version "$version" -clk-tck "$(getconf CLK_TCK)")
[[ -n $quick ]] && args+=(-quick)
[[ -n $intervals ]] && args+=(-intervals "$intervals")
[[ -n $trials ]] && args+=(-trials "$trials")
[[ -n $out ]] && args+=(-out "$(realpath -m "$out")")
args+=("${extra[@]}")
# The program bounds itself at 15 minutes; timeout is the backstop. In the
# background, so that a signal to this script runs cleanup at once instead
# of after the program ends.
log "running in network namespace $ns"
timeout -k 10 960 ip netns exec "$ns" nice -n "$nice" "$bin/sampler" "${args[@]}" &
wait "$!"
