#!/usr/bin/env bash
# The whole test suite: installs what it needs, then lint, unit, fuzz,
# real-kernel and end-to-end tests. Run as root so the tests that build
# private network namespaces run; under CI=true they must run, never skip.
set -euo pipefail
cd "$(dirname "$0")/.."

GOLANGCI_LINT_VERSION=v2.15.0
HELM_VERSION=v3.22.0
# A count, not a duration: Go 1.26's fuzz coordinator can report a bare
# "context deadline exceeded" failure when a -fuzztime duration ends while
# a worker is mid-call (golang/go#75804, fixed in Go 1.27). A count has no
# deadline to race. 200000 runs take about 10 s per target here.
FUZZTIME=${FUZZTIME:-200000x}

log() { printf '\n==> %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
	if [ "${CI:-}" = true ]; then
		echo "test.sh: CI=true needs root: the kernel tests create network namespaces" >&2
		exit 1
	fi
	echo "test.sh: not root: tests that need a private network namespace will skip" >&2
fi

# Debian packages: promtool and the Prometheus server, nginx and php-fpm for
# the scenario tests, nftables and iproute2 for the namespace tests,
# containerd, runc, the CNI plugins and busybox for real CRI pods, dockerd
# for real Docker containers, setpriv for the privilege tests, strace and
# systemd-analyze for the systemd unit's sandbox test, podman to build the
# image, clang, llvm and libbpf-dev to rebuild the BPF object and check the
# committed one.
need_pkgs=()
for pair in promtool:prometheus ss:iproute2 nft:nftables nginx:nginx php-fpm:php-fpm curl:curl \
	containerd:containerd runc:runc /usr/lib/cni/bridge:containernetworking-plugins \
	dockerd:docker.io /bin/busybox:busybox-static setpriv:util-linux \
	strace:strace systemd-analyze:systemd podman:podman \
	clang:clang llvm-strip:llvm /usr/include/bpf/bpf_helpers.h:libbpf-dev; do
	cmd=${pair%%:*} pkg=${pair#*:}
	if [[ $cmd == /* ]]; then
		[ -e "$cmd" ] || need_pkgs+=("$pkg")
	elif ! command -v "$cmd" >/dev/null 2>&1 && ! compgen -c "$cmd" | grep -q .; then
		need_pkgs+=("$pkg")
	fi
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ]; then
		log "installing ${need_pkgs[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
		# Package installs may start services; the tests run their own, on
		# loopback in private namespaces, and need none of these.
		for svc in prometheus prometheus-node-exporter nginx containerd docker docker.socket $(cd /etc/init.d 2>/dev/null && ls -d php*-fpm 2>/dev/null); do
			systemctl stop "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
		done
	else
		echo "test.sh: missing ${need_pkgs[*]} and not root to install them" >&2
	fi
fi

GOBIN=$(go env GOPATH)/bin
if ! "$GOBIN/golangci-lint" --version 2>/dev/null | grep -q "version ${GOLANGCI_LINT_VERSION#v} "; then
	log "installing golangci-lint $GOLANGCI_LINT_VERSION"
	go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION"
fi
# helm for the chart's tests (about 2.5 min to build). A go-installed helm
# says only "v3.22", so its module version is read from the binary.
if ! go version -m "$GOBIN/helm" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+helm.sh/helm/v3[[:space:]]+${HELM_VERSION}([[:space:]]|$)"; then
	log "installing helm $HELM_VERSION"
	go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
export PATH="$GOBIN:$PATH"

# The syscall tracepoints the acceptwait collector attaches to are looked
# up in tracefs, which a fresh machine does not mount.
if [ "$(id -u)" = 0 ] && [ ! -e /sys/kernel/tracing/events ]; then
	log "mounting tracefs on /sys/kernel/tracing (unmounted at exit)"
	mount -t tracefs nodev /sys/kernel/tracing
	trap 'umount /sys/kernel/tracing' EXIT
fi

log "BPF object matches its source"
bash scripts/bpf-generate.sh --check

log "gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "not gofmt-ed:" "$unformatted" >&2
	exit 1
fi

log "go vet"
go vet ./...

log "golangci-lint"
"$GOBIN/golangci-lint" run ./...

# A real kube-apiserver (built from k8s.io/kubernetes through a wrapper
# module: 9-20 min the first time, kept in bin/kube after) and Debian's
# etcd, for the tests that apply the rendered manifests.
log "kube-apiserver and etcd for the manifest tests"
bash test/kube/build.sh bin/kube
export LISTENQ_KUBE_APISERVER=$PWD/bin/kube/kube-apiserver

log "go test -race"
go test -race -count=1 ./...

log "fuzz ($FUZZTIME each)"
for pkg in ./internal/sockdiag/ ./internal/netns/ ./internal/cgroup/; do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
		go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg"
	done
done

log "benchmark smoke runs"
bash bench/run.sh --smoke
bash bench/sampler.sh --quick
bash bench/netns.sh --quick
bash bench/scale.sh --quick
bash bench/acceptwait.sh --quick
