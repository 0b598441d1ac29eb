#!/usr/bin/env bash
# Benchmarks listenq_exporter on a host with many network namespaces (a
# Kubernetes node with many pods): 200 namespaces, each held by one process
# with 5 TCP and 2 unix listeners (and a few clients never accepted), plus
# the host's own, read in one exporter with --netns.discovery on. It
# reports, and checks against the goals:
#   - /metrics scrape wall time, median and p99, once a scrape shows all
#     200 namespaces and 1,400 listeners (goal: median <= 25 ms and
#     <= 0.05 x one `nsenter --net=NS ss -ltnx` loop over the namespaces);
#   - the background sampler's CPU without scrapes at the default
#     --sampler.interval, as the exporter's CPU with it minus without it
#     (goal: <= 1% of a core), and listenq_sampler_round_duration_seconds;
#   - the cost of discovery: listenq_netns_discovery_duration_seconds and
#     the CPU at --netns.refresh-interval=1s against the default;
#   - VmRSS and VmHWM after the scrapes (goal: VmRSS <= 40 MiB);
#   - the wall time of that nsenter + ss loop, the reference.
# The single-namespace figures are bench/run.sh's.
#
# Everything runs inside private PID, mount and network namespaces
# (unshare): the exporter sees only the benchmark's processes and
# namespaces, and the benchmark's own network namespace stands for the
# host's. All traffic is on their loopbacks; nothing is left behind.
#
# Usage: bench/netns.sh [--quick] [--namespaces N] [--out FILE] [--nice N]
#                       [-- PROGRAM-FLAG...]
#   default (full size): 200 namespaces, 50 scrapes, 20 s CPU windows;
#            about 2 minutes
#   --quick: 20 namespaces, 10 scrapes, 3 s windows; about 20 seconds, for
#            CI smoke runs (the goals are only reported)
#   --namespaces N: any other number of namespaces (goals only reported)
#   --out FILE: also write the markdown report to FILE
#   --nice N: niceness of the benchmark and the exporter, by default -20 as
#            in bench/run.sh; 0 measures the exporter as usually deployed
#   -- PROGRAM-FLAG...: passed on to the Go program (bench/netns), e.g.
#            -- -idle 30s -scrapes 100    (see: go run ./bench/netns -h)
# Needs root, Go, util-linux (unshare, nsenter), iproute2 (ss), bash.
# Exit status: 1 the run failed; 3 a goal was missed at the full size.
set -euo pipefail

quick=""
namespaces=""
out=""
nice=-20
extra=()

self=netns.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

while (($#)); do
	case $1 in
	--quick) quick=1 && shift && continue ;;
	--namespaces) namespaces=${2:-} ;;
	--out) out=${2:-} ;;
	--nice) nice=${2:-} ;;
	--) shift && extra=("$@") && break ;;
	-h | --help) usage && exit 0 ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
	shift $(($# > 1 ? 2 : 1))
done
[[ -z $namespaces || $namespaces =~ ^[1-9][0-9]*$ ]] || die "--namespaces wants a positive number"
[[ $nice =~ ^-?[0-9]+$ ]] || die "--nice wants a number"
need_root "$quick"
need_cmds go unshare nsenter ss bash getconf

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d -t listenq-netns.XXXXXX)
bin=$tmp/bin
runner=""

# The Go program is the first process of the PID namespace: when it ends,
# the kernel kills every other process in it, and the mount and network
# namespaces go with them. unshare itself ignores TERM while it waits, and
# sends KILL to the program when it dies (--kill-child).
cleanup() {
	local rc=$?
	set +e
	[[ -n $runner ]] && stop_runner "$runner"
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

version="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -z $(git -C "$repo" status --porcelain -- . ':!bench' 2>/dev/null) ]] || version+=" + uncommitted changes"
log "building $version into $tmp"
(cd "$repo" && timeout 600 go build -o "$bin/listenq_exporter" ./cmd/listenq_exporter &&
	timeout 600 go build -o "$bin/netnsbench" ./bench/netns)
mkdir "$tmp/sock"

args=(-exporter "$bin/listenq_exporter" -dir "$tmp/sock" -version "$version" -clk-tck "$(getconf CLK_TCK)")
[[ -n $quick ]] && args+=(-quick)
[[ -n $namespaces ]] && args+=(-namespaces "$namespaces")
[[ -n $out ]] && args+=(-out "$(realpath -m "$out")")
args+=("${extra[@]}")

# The program bounds itself (-timeout, 10 minutes); the loop below is the
# backstop. In the background, so that a signal to this script runs
# cleanup at once.
log "running in private PID, mount and network namespaces"
unshare --net --pid --mount --fork --mount-proc --kill-child \
	nice -n "$nice" "$bin/netnsbench" "${args[@]}" &
runner=$!
wait_runner 720
