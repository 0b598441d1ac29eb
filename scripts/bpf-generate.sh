#!/usr/bin/env bash
# Regenerates the acceptwait collector's BPF object and its Go bindings
# (internal/acceptwait/acceptwait_bpfel.{o,go}) from bpf/acceptwait.c with
# the bpf2go version pinned in gen.go and Debian's clang. With --check it
# fails when the committed files differ from what the sources give, so a C
# change cannot land without its object. Needs clang, llvm-strip (llvm) and
# libbpf-dev's headers; scripts/test.sh installs them.
set -euo pipefail
cd "$(dirname "$0")/../internal/acceptwait"

files=(acceptwait_bpfel.o acceptwait_bpfel.go)
before=$(sha256sum "${files[@]}")
go generate ./...
after=$(sha256sum "${files[@]}")
if [ "${1:-}" = --check ] && [ "$before" != "$after" ]; then
	echo "bpf-generate: the committed BPF object or bindings are stale; commit what this run regenerated:" >&2
	diff <(echo "$before") <(echo "$after") >&2 || true
	exit 1
fi
echo "bpf-generate: ${files[*]} $([ "$before" = "$after" ] && echo "are current" || echo "regenerated")"
