package netns

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

// Sysctls are the sysctls a Handle can read: those that shape listen
// queues. They are opened once inside the namespace, so they must be named
// up front.
var Sysctls = []string{
	"net/core/somaxconn",
	"net/ipv4/tcp_max_syn_backlog",
	"net/ipv4/tcp_syncookies",
	"net/ipv4/tcp_abort_on_overflow",
}

// Identity is who a network namespace belongs to. Every field may be empty:
// the host's namespace, or a namespace no runtime claims.
type Identity struct {
	Namespace string // Kubernetes namespace of the pod
	Pod       string // Kubernetes pod name
	PodUID    string
	Runtime   string // "containerd", "cri-o", "docker", ... or ""
}

// Use is what a Handle's sock_diag socket is for. A socket serialises its
// dumps, so in a namespace of many listeners (the host's, the exporter's
// own) each use has its own: the scrape's TCP and unix dumps then run at
// once, on two cores, and neither waits for the sampler's. A pod's handle
// keeps one socket for every use: a node has hundreds of pods, and their
// dumps are short.
type Use int

// The uses of a Handle's sock_diag sockets.
const (
	UseTCP        Use = iota // the scrape's TCP listener dump
	UseUnix                  // the scrape's unix listener dump
	UseBackground            // the sampler's queue dumps and SYN-queue counting
	numUses
)

// ErrClosed is returned by a Handle whose namespace is gone.
var ErrClosed = errors.New("network namespace handle closed")

// Handle is the way into one network namespace. It is safe for concurrent
// use; the Set that made it closes it when the namespace goes.
type Handle struct {
	Key Key
	// ID is the value of the netns label: "" for the host's namespace,
	// else its /run/netns name or its inode number.
	ID string
	// Identity is settled before the Handle is first handed out and never
	// changes, so the labels of its series never change either.
	Identity Identity
	// Dial opens a new sock_diag socket inside the namespace. ConnFor
	// keeps them open; tests replace Dial with a fake kernel.
	Dial func() (*sockdiag.Conn, error)

	files  files
	nsFile *os.File // nil when no entering is needed (own namespace)

	mu sync.Mutex
	// conns are the open sockets by Use; only conns[0] when shared.
	conns   [numUses]*sockdiag.Conn
	shared  bool
	closed  bool
	ifnames map[uint32]string
}

// files reads a namespace's netstat and sysctls.
type files interface {
	netstat() ([]byte, error)
	sysctl(name string) ([]byte, error)
	close()
}

// NewFixed returns a Handle that reads netstat and sysctls from paths, for
// fixture trees in tests; its sock_diag socket is shared by every Use.
func NewFixed(id, netstatPath, sysctlDir string, dial func() (*sockdiag.Conn, error)) *Handle {
	return &Handle{ID: id, Dial: dial, files: pathFiles{netstatPath, sysctlDir}, shared: true}
}

// Self returns the handle of the exporter's own network namespace, reading
// procfs mounted at procRoot, with the netns label id. It keeps its files
// open as other namespaces' handles do: opening a procfs file costs five
// times reading it again.
func Self(procRoot, id string) (*Handle, error) {
	kept, err := openKept(filepath.Join(procRoot, "self", "net", "netstat"), filepath.Join(procRoot, "sys"))
	if err != nil {
		return nil, fmt.Errorf("procfs at %q: %w", procRoot, err)
	}
	h := &Handle{ID: id, files: kept, Dial: func() (*sockdiag.Conn, error) { return sockdiag.Dial(true) }}
	if k, err := KeyOf(filepath.Join(procRoot, "self", "ns", "net")); err == nil {
		h.Key = k
	}
	return h, nil
}

// SelfID is the netns label of the exporter's own namespace when every
// namespace is read: "" when it is the host's (PID 1's), else its inode.
func SelfID(procRoot string) string {
	own, err := KeyOf(filepath.Join(procRoot, "self", "ns", "net"))
	if err != nil {
		return ""
	}
	host, err := KeyOf(filepath.Join(procRoot, "1", "ns", "net"))
	if err != nil || host == own {
		return ""
	}
	return own.String()
}

// open enters the namespace at path to open there what the Handle keeps: a
// sock_diag socket and the netstat and sysctl files. The host's namespace
// is entered again, the first time, for its sockets of other Uses.
func open(path string, want Key, id string, ident Identity) (*Handle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		var k Key
		if k, err = keyOfInfo(fi); err == nil && k != want {
			// The process exited and its PID now names another one.
			err = fmt.Errorf("%s: namespace changed while opening it", path)
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	h := &Handle{Key: want, ID: id, Identity: ident, nsFile: f, shared: id != ""}
	h.Dial = func() (*sockdiag.Conn, error) {
		var c *sockdiag.Conn
		err := inNamespace(f, func() (err error) { c, err = sockdiag.Dial(id == ""); return err })
		return c, err
	}
	var kept *keptFiles
	err = inNamespace(f, func() (err error) {
		// The host's namespace holds most listeners; a pod's, a few.
		if h.conns[UseTCP], err = sockdiag.Dial(id == ""); err != nil {
			return err
		}
		kept, err = openKept("/proc/thread-self/net/netstat", "/proc/sys")
		return err
	})
	if err != nil {
		if h.conns[UseTCP] != nil {
			h.conns[UseTCP].Close()
		}
		f.Close()
		return nil, err
	}
	h.files = kept
	return h, nil
}

// Conn is ConnFor(UseTCP).
func (h *Handle) Conn() (*sockdiag.Conn, error) { return h.ConnFor(UseTCP) }

// ConnFor returns the namespace's long-lived sock_diag socket for u,
// opening it the first time (or again after Failed dropped it).
func (h *Handle) ConnFor(u Use) (*sockdiag.Conn, error) {
	if h.shared {
		u = UseTCP
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if h.conns[u] == nil {
		c, err := h.Dial()
		if err != nil {
			return nil, err
		}
		h.conns[u] = c
	}
	return h.conns[u], nil
}

// Failed drops c after a failed dump (a dump cut short leaves messages in
// the socket that would confuse the next one) and returns err, or
// ErrClosed when the namespace went during the dump: its socket was
// closed under the reader, which is no failure of the namespace.
func (h *Handle) Failed(c *sockdiag.Conn, err error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	for i, open := range h.conns {
		if open == c && c != nil {
			c.Close()
			h.conns[i] = nil
		}
	}
	return err
}

// Netstat returns the counters of one section of the namespace's
// /proc/net/netstat ("TcpExt").
func (h *Handle) Netstat(section string) (map[string]float64, error) {
	if h.isClosed() {
		return nil, ErrClosed
	}
	b, err := h.files.netstat()
	if err != nil {
		return nil, h.closedOr(err)
	}
	if len(b) == 0 {
		return nil, errors.New("netstat: empty file")
	}
	return ParseNetstat(b, section)
}

// Sysctl reads one of Sysctls, such as "net/core/somaxconn", as seen inside
// the namespace. A sysctl this kernel lacks gives an fs.ErrNotExist error.
func (h *Handle) Sysctl(name string) (int64, error) {
	if h.isClosed() {
		return 0, ErrClosed
	}
	b, err := h.files.sysctl(name)
	if err != nil {
		return 0, h.closedOr(err)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse sysctl %s: %w", name, err)
	}
	return v, nil
}

// InterfaceName names the interface with index idx in this namespace (for
// listeners bound to a device), or returns the index as a string.
func (h *Handle) InterfaceName(idx uint32) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if name, ok := h.ifnames[idx]; ok {
		return name
	}
	name := strconv.FormatUint(uint64(idx), 10)
	lookup := func() error {
		ifi, err := net.InterfaceByIndex(int(idx))
		if err == nil {
			name = ifi.Name
		}
		return err
	}
	if h.nsFile == nil {
		_ = lookup()
	} else if !h.closed {
		_ = inNamespace(h.nsFile, lookup)
	}
	if h.ifnames == nil {
		h.ifnames = map[uint32]string{}
	}
	h.ifnames[idx] = name
	return name
}

// Close releases everything that keeps the namespace alive.
func (h *Handle) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for i, c := range h.conns {
		if c != nil {
			c.Close()
			h.conns[i] = nil
		}
	}
	if h.files != nil {
		h.files.close()
	}
	if h.nsFile != nil {
		h.nsFile.Close()
	}
}

// closedOr returns ErrClosed if the handle was closed (its files with it)
// while err happened, else err.
func (h *Handle) closedOr(err error) error {
	if h.isClosed() {
		return ErrClosed
	}
	return err
}

func (h *Handle) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// pathFiles reads by path: right for the exporter's own namespace.
type pathFiles struct{ netstatPath, sysctlDir string }

func (p pathFiles) netstat() ([]byte, error) { return os.ReadFile(p.netstatPath) }
func (p pathFiles) sysctl(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(p.sysctlDir, name))
}
func (p pathFiles) close() {}

// keptFiles were opened inside another namespace and keep showing it.
type keptFiles struct {
	netstatFile *os.File
	sysctls     map[string]*os.File
	missing     map[string]error
}

// openKept opens a namespace's netstat and sysctl files. An open file keeps
// showing the namespace of the thread that opened it (/proc/thread-self/net
// and /proc/sys follow the opener's namespace), so for another namespace it
// runs inside that namespace.
func openKept(netstatPath, sysctlDir string) (*keptFiles, error) {
	k := &keptFiles{sysctls: map[string]*os.File{}, missing: map[string]error{}}
	f, err := os.Open(netstatPath)
	if err != nil {
		return nil, err
	}
	k.netstatFile = f
	for _, name := range Sysctls {
		f, err := os.Open(filepath.Join(sysctlDir, name))
		if err != nil {
			k.missing[name] = err
			continue
		}
		k.sysctls[name] = f
	}
	return k, nil
}

func (k *keptFiles) netstat() ([]byte, error) { return readAt0(k.netstatFile) }

func (k *keptFiles) sysctl(name string) ([]byte, error) {
	if f, ok := k.sysctls[name]; ok {
		return readAt0(f)
	}
	if err, ok := k.missing[name]; ok {
		return nil, err
	}
	return nil, fmt.Errorf("sysctl %s: %w", name, os.ErrNotExist)
}

func (k *keptFiles) close() {
	k.netstatFile.Close()
	for _, f := range k.sysctls {
		f.Close()
	}
}

// readAt0 is ReadAt0 into a buffer of the pool, returning a copy.
func readAt0(f *os.File) ([]byte, error) {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	b, err := ReadAt0(f, *bp)
	*bp = b[:cap(b)]
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), b...), nil
}

// ReadAt0 reads a whole procfs file kept open again from its start, in one
// read, into buf, and returns buf[:n] or, when buf was too small, a larger
// buffer (up to 4 MiB) read again. procfs formats the content anew for a
// read at another offset than where the last one ended, so reading in
// pieces (or reading again to see the end) would make the kernel format
// the file (netstat: over 200 counters) several times; a read shorter than
// the buffer is the whole file. The read holds f open, so a concurrent
// Close cannot hand its descriptor number to another file mid-read.
func ReadAt0(f *os.File, buf []byte) ([]byte, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return buf[:0], fmt.Errorf("read %s: %w", f.Name(), err)
	}
	for {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Pread(int(fd), buf, 0)
			return true
		}); err != nil {
			rerr = err
		}
		if rerr != nil {
			return buf[:0], fmt.Errorf("read %s: %w", f.Name(), rerr)
		}
		if n < len(buf) || len(buf) >= 4<<20 {
			return buf[:n], nil
		}
		buf = make([]byte, max(4*len(buf), 4<<10))
	}
}

// readBufs are readAt0's buffers, shared: hundreds of namespaces are read
// every scrape.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}
