#!/usr/bin/env bash
# Usage: test/kube/build.sh OUTDIR
#
# Builds kube-apiserver v1.37.2 from the wrapper module in apiserver/ into
# OUTDIR/kube-apiserver unless it is already there (about 9 minutes and
# 170 MB on 2 cores), and installs Debian's etcd-server when etcd is missing
# (as root). The tests in internal/testkube find the binary through
# LISTENQ_KUBE_APISERVER (or PATH) and etcd through LISTENQ_ETCD (or PATH).
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)/kube-apiserver

if ! command -v etcd >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ]; then
		echo "build.sh: installing etcd-server" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
		# The package starts a system etcd; the tests run their own.
		systemctl stop etcd >/dev/null 2>&1 || service etcd stop >/dev/null 2>&1 || true
	else
		echo "build.sh: etcd missing and not root to install etcd-server" >&2
	fi
fi

if [ -x "$out" ]; then
	exit 0
fi
echo "build.sh: building kube-apiserver into $out (about 9 minutes)" >&2
v=1.37.2
cd "$here/apiserver"
# Build to a temporary name so an interrupted build never leaves a partial
# binary that the check above would take for a finished one.
CGO_ENABLED=0 go build -trimpath -o "$out.tmp" \
	-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$v -X k8s.io/component-base/version.gitMajor=${v%%.*} -X k8s.io/component-base/version.gitMinor=$(echo $v | cut -d. -f2) -X k8s.io/component-base/version.gitTreeState=clean" \
	.
mv "$out.tmp" "$out"
