#!/usr/bin/env bash
# Benchmarks how listenq_exporter scales with the listeners of one network
# namespace, in two shapes measured one after the other in the same run,
# each with freshly started exporters (--no-netns.discovery):
#   - "1k": 1,000 TCP listeners;
#   - "25k": 20,000 unix stream listeners (half in a directory, half
#     abstract) and 5,000 TCP listeners, held by 5 processes;
# every listener with backlog 8, a few with clients never accepted. For
# each shape it reports:
#   - /metrics scrape wall time with gzip (as Prometheus asks), median and
#     p99, over one kept-alive connection; plain, for the bytes encoded per
#     second; the exporter's CPU per scrape;
#   - the raw LISTEN-only kernel dumps of the same sockets (inet_diag, and
#     unix_diag for the unix ones, through internal/sockdiag as bench/probe
#     does) and ss, and the ratio scrape median / raw dump median; the
#     dumps are timed before any exporter starts, and again around the
#     timed scrapes (half before, half after, each block after a second's
#     pause), which the goal uses: the machine's speed drifts between;
#   - peak RSS (VmHWM, reset through /proc/PID/clear_refs) with one scrape
#     at a time and with 20 concurrent ones;
#   - the sampler's CPU without scrapes (default --sampler.interval minus
#     --sampler.interval=0) and listenq_sampler_round_duration_seconds;
#   - node_exporter (tcpstat and netstat collectors only) side by side on
#     the same namespace.
# Goals (checked at the full size): 1k: scrape median <= 6 x the raw LISTEN
# dump median (the dumps around the scrapes); 25k: scrape median <= 60 ms, peak RSS <= 50 MiB with one
# scrape at a time and <= 100 MiB with 20 concurrent ones.
# The 200-namespace shape is bench/netns.sh's; 90,000 connections,
# bench/run.sh's.
#
# Everything runs inside private PID, mount and network namespaces
# (unshare): the exporters see only the benchmark's processes and sockets.
# All traffic is on their loopback; nothing is left behind.
#
# Usage: bench/scale.sh [--quick] [--out FILE] [--nice N] [--rev REV]
#                       [--no-node-exporter] [-- PROGRAM-FLAG...]
#   default (full size): the 1k and 25k shapes; about 3 minutes
#   --quick: 200 and 2,500 listeners, few scrapes, 2 s windows; about 20
#            seconds, for CI smoke runs (the goals are only reported)
#   --out FILE: also write the markdown report to FILE
#   --nice N: niceness of the benchmark and the exporters, by default -20
#            as in bench/run.sh; 0 measures them as usually deployed
#   --rev REV: benchmark the exporter as committed at REV (with this
#            bench/) instead of the working tree, e.g. while it is mid-edit
#   --no-node-exporter: leave node_exporter out. Otherwise a full run
#            installs Debian's prometheus-node-exporter when it is missing
#            (its service is not started); --quick uses it only if present
#   -- PROGRAM-FLAG...: passed on to the Go program (bench/scale), e.g.
#            -- -shapes large -idle 30s    (see: go run ./bench/scale -h)
# Needs root, Go, util-linux (unshare), iproute2 (ss), bash.
# Exit status: 1 the run failed; 3 a goal was missed at the full size.
set -euo pipefail

quick=""
out=""
nice=-20
rev=""
node=1
extra=()

self=scale.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

while (($#)); do
	case $1 in
	--quick) quick=1 && shift && continue ;;
	--no-node-exporter) node="" && shift && continue ;;
	--out) out=${2:-} ;;
	--nice) nice=${2:-} ;;
	--rev) rev=${2:-} ;;
	--) shift && extra=("$@") && break ;;
	-h | --help) usage && exit 0 ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
	shift $(($# > 1 ? 2 : 1))
done
[[ $nice =~ ^-?[0-9]+$ ]] || die "--nice wants a number"
need_root "$quick"
need_cmds go unshare ss bash timeout

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d -t listenq-scale.XXXXXX)
bin=$tmp/bin
runner=""
policy=""

# The Go program is the first process of the PID namespace: when it ends,
# the kernel kills every other process in it, and the mount and network
# namespaces go with them. unshare itself ignores TERM while it waits, and
# sends KILL to the program when it dies (--kill-child).
cleanup() {
	local rc=$?
	set +e
	[[ -n $runner ]] && stop_runner "$runner"
	[[ -n $policy ]] && rm -f "$policy"
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# install_node_exporter installs Debian's prometheus-node-exporter without
# starting its service: a policy-rc.d that forbids starting services is put
# in place for the install, unless one is there already.
install_node_exporter() {
	command -v apt-get >/dev/null || return 1
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		policy=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
	fi
	local install=(timeout 300 env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus-node-exporter)
	"${install[@]}" >"$tmp/apt.log" 2>&1 ||
		{ timeout 300 apt-get update -q >>"$tmp/apt.log" 2>&1 && "${install[@]}" >>"$tmp/apt.log" 2>&1; }
	local rc=$?
	if [[ -n $policy ]]; then
		rm -f "$policy"
		policy=""
	fi
	((rc == 0)) || { tail -n 5 "$tmp/apt.log" >&2; return 1; }
}

node_exporter=""
if [[ -n $node ]]; then
	node_exporter=$(command -v prometheus-node-exporter || true)
	if [[ -z $node_exporter && -z $quick ]]; then
		log "installing Debian's prometheus-node-exporter, for the side-by-side figures"
		install_node_exporter || log "could not install prometheus-node-exporter: its columns stay empty"
		node_exporter=$(command -v prometheus-node-exporter || true)
	elif [[ -z $node_exporter ]]; then
		log "no prometheus-node-exporter on PATH: --quick leaves it out (a full run installs it)"
	fi
fi

src=$repo
if [[ -n $rev ]]; then
	src=$tmp/src
	mkdir "$src"
	git -C "$repo" archive "$rev" | tar -x -C "$src"
	rm -rf "$src/bench"
	cp -r "$repo/bench" "$src/bench"
	version="$(git -C "$repo" rev-parse --short "$rev") (bench/ from the working tree)"
else
	version="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
	[[ -z $(git -C "$repo" status --porcelain -- . ':!bench' 2>/dev/null) ]] || version+=" + uncommitted changes"
fi
log "building $version into $tmp"
(cd "$src" && timeout 600 go build -o "$bin/listenq_exporter" ./cmd/listenq_exporter &&
	timeout 600 go build -o "$bin/scalebench" ./bench/scale)
mkdir "$tmp/sock"

args=(-exporter "$bin/listenq_exporter" -dir "$tmp/sock" -version "$version")
[[ -n $node_exporter ]] && args+=(-node-exporter "$node_exporter")
[[ -n $quick ]] && args+=(-quick)
[[ -n $out ]] && args+=(-out "$(realpath -m "$out")")
args+=("${extra[@]}")

# The program bounds itself (-timeout, 10 minutes); the loop below is the
# backstop. In the background, so that a signal to this script runs
# cleanup at once.
log "running in private PID, mount and network namespaces"
unshare --net --pid --mount --fork --mount-proc --kill-child \
	nice -n "$nice" "$bin/scalebench" "${args[@]}" &
runner=$!
wait_runner 720
