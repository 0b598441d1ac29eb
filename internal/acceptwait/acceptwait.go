// Package acceptwait measures, with eBPF, how long connections wait in TCP
// listeners' accept queues, and the queues' exact peaks and time full.
//
// Data flow: the BPF programs in bpf/acceptwait.c keep one listener_state
// per listening socket, keyed by its socket cookie, in an LRU hash. A
// Tracer loads them with the cheapest attach method the kernel allows
// (Start), and Read copies every listener's figures out. The collector
// package joins them to its listeners by cookie (inet_diag reports each
// listener's cookie) and exports them with the listener's labels; the
// sampler calls Advance once per round to get each listener's exact peak
// over the round.
//
// Join: tp_btf/inet_sock_set_state, LISTEN -> SYN_RECV on the child, which
// is still a copy of its listener at that moment (cookie, queue length,
// backlog). Accept: fexit/inet_csk_accept, or where trampolines are refused
// the accept and accept4 syscall tracepoints (which miss accepts made by
// io_uring, and put every task's syscalls on the kernel's slow path while
// attached).
package acceptwait

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Attach methods, as exported in listenq_accept_wait_method.
const (
	MethodFexit      = "fexit"
	MethodTracepoint = "tracepoint"
)

// ErrUnsupported wraps every reason the programs could not load or attach:
// no BTF, no privilege, lockdown, no tracefs.
var ErrUnsupported = errors.New("accept-wait tracing is not supported here")

// Figures are one listener's counts since its first event.
type Figures struct {
	Netns    uint32 // inode of its network namespace
	Accepted uint64 // connections accept() took from the queue
	// Timed counts accepted connections whose join was seen; their waits
	// are WaitSum and Buckets (cumulative, one per Bounds entry, then +Inf).
	Timed   uint64
	WaitSum float64 // seconds
	Buckets [NumBuckets]uint64
	// FullSeconds is the time the queue was full (length above limit),
	// including a period still running.
	FullSeconds float64
}

// NumBuckets is the number of histogram buckets, +Inf included.
const NumBuckets = numBounds + 1

const numBounds = 16

// Counters say what the events could not tie to a listener, and the maps'
// bookkeeping, so evictions can be told apart from closes.
type Counters struct {
	Joins, JoinsWithoutCookie               uint64
	Accepts, AcceptsUnseen, AcceptsNoCookie uint64
	ChildrenClosed, ChildrenAccepted        uint64
	ListenersNew, ListenersClosed           uint64
	Children, Listeners                     int // entries now
	ChildrenEvicted, ListenersEvicted       uint64
	ChildrenCapacity, ListenersCapacity     int
}

// Tracer is the loaded and attached programs. Its methods are safe for
// concurrent use.
type Tracer struct {
	method string
	bounds []float64 // seconds
	objs   tracerObjects
	links  []link.Link
	// progs are what only one method loads, closed with the Tracer.
	progs []*ebpf.Program

	// mu serialises Advance: one epoch at a time.
	mu    sync.Mutex
	epoch uint32
}

// tracerObjects is what every method loads: the join programs and every
// map.
type tracerObjects struct {
	acceptwaitMaps
	StateChange *ebpf.Program  `ebpf:"state_change"`
	DataReady   *ebpf.Program  `ebpf:"data_ready"`
	Epoch       *ebpf.Variable `ebpf:"epoch"`
}

type fexitObjects struct {
	tracerObjects
	AcceptExit *ebpf.Program `ebpf:"accept_exit"`
}

type tracepointObjects struct {
	tracerObjects
	ExitAccept  *ebpf.Program `ebpf:"exit_accept"`
	ExitAccept4 *ebpf.Program `ebpf:"exit_accept4"`
}

// Options choose how Start attaches.
type Options struct {
	// Method forces one attach method; "" tries fexit, then tracepoints.
	Method string
	// MaxWaiting and MaxListeners size the maps of connections waiting to
	// be accepted and of listeners; 0 keeps the object's sizes (65536 and
	// 16384). A full map evicts its least recently used entry, and
	// Reading.Counters counts what it evicted.
	MaxWaiting, MaxListeners uint32
}

// Start loads and attaches the programs. The error wraps ErrUnsupported
// when nothing could load here, and says why for each method tried.
func Start(opts Options) (*Tracer, error) {
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK, later ones
	// to the memory cgroup. Raising the limit may be refused (no
	// CAP_SYS_RESOURCE): harmless where cgroups are charged, and where not
	// the load below says so. Not cilium/ebpf's rlimit package: its init
	// makes a bpf() call in every process that links it, collector on or
	// off, which a seccomp filter without bpf (the systemd unit's) punishes.
	_ = unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY})
	spec, err := loadAcceptwait()
	if err != nil {
		return nil, err
	}
	bounds, err := boundsOf(spec)
	if err != nil {
		return nil, err
	}
	if opts.MaxWaiting > 0 {
		spec.Maps["children"].MaxEntries = opts.MaxWaiting
	}
	if opts.MaxListeners > 0 {
		spec.Maps["listeners"].MaxEntries = opts.MaxListeners
	}
	methods := []string{MethodFexit, MethodTracepoint}
	if opts.Method != "" {
		methods = []string{opts.Method}
	}
	var errs []error
	for _, m := range methods {
		t, err := start(spec, m)
		if err == nil {
			t.bounds = bounds
			return t, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", m, err))
	}
	return nil, fmt.Errorf("%w: %w", ErrUnsupported, errors.Join(errs...))
}

func start(spec *ebpf.CollectionSpec, method string) (*Tracer, error) {
	t := &Tracer{method: method}
	var err error
	switch method {
	case MethodFexit:
		err = t.startFexit(spec)
	case MethodTracepoint:
		err = t.startTracepoints(spec)
	default:
		return nil, fmt.Errorf("unknown attach method %q (want %s or %s)", method, MethodFexit, MethodTracepoint)
	}
	if err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *Tracer) startFexit(spec *ebpf.CollectionSpec) error {
	var o fexitObjects
	if err := spec.LoadAndAssign(&o, nil); err != nil {
		return fmt.Errorf("loading: %w", err)
	}
	t.objs = o.tracerObjects
	t.progs = []*ebpf.Program{o.AcceptExit}
	if err := t.attachJoin(); err != nil {
		return err
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: o.AcceptExit})
	if err != nil {
		return fmt.Errorf("attaching fexit/inet_csk_accept: %w", err)
	}
	t.links = append(t.links, l)
	return nil
}

func (t *Tracer) startTracepoints(spec *ebpf.CollectionSpec) error {
	var o tracepointObjects
	if err := spec.LoadAndAssign(&o, nil); err != nil {
		return fmt.Errorf("loading: %w", err)
	}
	t.objs = o.tracerObjects
	t.progs = []*ebpf.Program{o.ExitAccept, o.ExitAccept4}
	if err := t.attachJoin(); err != nil {
		return err
	}
	if _, err := os.Stat("/sys/kernel/tracing/events/syscalls"); err != nil {
		if _, err2 := os.Stat("/sys/kernel/debug/tracing/events/syscalls"); err2 != nil {
			return fmt.Errorf("tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing): %w", err)
		}
	}
	for _, tp := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"sys_exit_accept4", o.ExitAccept4}, {"sys_exit_accept", o.ExitAccept},
	} {
		l, err := link.Tracepoint("syscalls", tp.name, tp.prog, nil)
		if err != nil {
			return fmt.Errorf("attaching tracepoint syscalls/%s: %w", tp.name, err)
		}
		t.links = append(t.links, l)
	}
	return nil
}

func (t *Tracer) attachJoin() error {
	for _, p := range []struct {
		name string
		prog *ebpf.Program
	}{{"inet_sock_set_state", t.objs.StateChange}, {"sk_data_ready", t.objs.DataReady}} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p.prog})
		if err != nil {
			return fmt.Errorf("attaching tp_btf/%s: %w", p.name, err)
		}
		t.links = append(t.links, l)
	}
	return nil
}

// Method is the attach method in use.
func (t *Tracer) Method() string { return t.method }

// Bounds are the histogram's upper bounds in seconds, +Inf left out.
func (t *Tracer) Bounds() []float64 { return t.bounds }

// Bounds are the histogram's upper bounds in seconds, +Inf left out, as
// the BPF object defines them; reading them loads nothing into the kernel.
func Bounds() ([]float64, error) {
	spec, err := loadAcceptwait()
	if err != nil {
		return nil, err
	}
	return boundsOf(spec)
}

func boundsOf(spec *ebpf.CollectionSpec) ([]float64, error) {
	var ns [numBounds]uint64
	if err := spec.Variables["wait_bounds_ns"].Get(&ns); err != nil {
		return nil, fmt.Errorf("reading the bucket bounds from the BPF object: %w", err)
	}
	out := make([]float64, numBounds)
	for i, b := range ns {
		out[i] = float64(b) / 1e9
	}
	return out, nil
}

// Close detaches the programs and frees the maps.
func (t *Tracer) Close() error {
	var errs []error
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	// Closing a nil program or map is a no-op: a load that failed half
	// way is closed the same way.
	for _, p := range append(t.progs, t.objs.StateChange, t.objs.DataReady) {
		errs = append(errs, p.Close())
	}
	errs = append(errs, t.objs.Close()) // the maps
	return errors.Join(errs...)
}

// monotonicNs is bpf_ktime_get_ns's clock, CLOCK_MONOTONIC.
func monotonicNs() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano())
}
