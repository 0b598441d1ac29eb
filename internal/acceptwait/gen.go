package acceptwait

// The BPF object is compiled from bpf/acceptwait.c and committed, so
// building the exporter needs no clang. scripts/bpf-generate.sh runs this
// with the pinned bpf2go and fails CI when the committed files are stale.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go@v0.22.0 -tags linux -target bpfel -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" -type listener_state -type child acceptwait bpf/acceptwait.c -- -I./bpf
