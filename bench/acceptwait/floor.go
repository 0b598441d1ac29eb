package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// methodFloor attaches programs that do nothing to the tracepoint method's
// four attach points. What it costs is what the kernel charges for the
// attach points themselves (dispatch, and the slow path every syscall
// takes while a syscall tracepoint is attached): a floor no program on
// that route can go below. It is a reference, never the judged method.
const methodFloor = "floor-tracepoint"

type floor struct{ closers []io.Closer }

func startFloor() (io.Closer, error) {
	f := &floor{}
	for _, tp := range []string{"inet_sock_set_state", "sk_data_ready"} {
		p, err := f.load(&ebpf.ProgramSpec{
			Name: "floor", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: tp,
			Instructions: nothing(), License: "GPL",
		})
		if err != nil {
			return nil, f.fail(fmt.Errorf("loading an empty tp_btf/%s program: %w", tp, err))
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			return nil, f.fail(fmt.Errorf("attaching tp_btf/%s: %w", tp, err))
		}
		f.closers = append(f.closers, l)
	}
	for _, tp := range []string{"sys_exit_accept4", "sys_exit_accept"} {
		p, err := f.load(&ebpf.ProgramSpec{
			Name: "floor", Type: ebpf.TracePoint, Instructions: nothing(), License: "GPL",
		})
		if err != nil {
			return nil, f.fail(fmt.Errorf("loading an empty tracepoint program: %w", err))
		}
		l, err := link.Tracepoint("syscalls", tp, p, nil)
		if err != nil {
			return nil, f.fail(fmt.Errorf("attaching tracepoint syscalls/%s: %w", tp, err))
		}
		f.closers = append(f.closers, l)
	}
	return f, nil
}

func nothing() asm.Instructions {
	return asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
}

func (f *floor) load(spec *ebpf.ProgramSpec) (*ebpf.Program, error) {
	p, err := ebpf.NewProgram(spec)
	if err == nil {
		f.closers = append(f.closers, p)
	}
	return p, err
}

func (f *floor) fail(err error) error {
	return errors.Join(err, f.Close())
}

// Close detaches the links before closing the programs they hold.
func (f *floor) Close() error {
	var errs []error
	for i := len(f.closers) - 1; i >= 0; i-- {
		errs = append(errs, f.closers[i].Close())
	}
	f.closers = nil
	return errors.Join(errs...)
}
