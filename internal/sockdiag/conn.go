package sockdiag

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// dumpBufferSize is the largest datagram the kernel builds for a dump
// (netlink caps its dump buffers at 32 KiB).
const dumpBufferSize = 32 << 10

// smallBufferSize is the read buffer of sockets in namespaces with few
// sockets.
const smallBufferSize = 8 << 10

// Conn is a NETLINK_SOCK_DIAG socket. It reports the sockets of the network
// namespace it was opened in.
//
// A Conn is safe for concurrent use: dumps are serialised, since a reply
// read by the wrong dump would corrupt both.
type Conn struct {
	mu sync.Mutex
	c  *netlink.Conn
	// raw reads replies into buf, taken from pool for the length of a
	// dump (see receive); nil for a Conn without a socket of its own
	// (nltest's), which reads through c. recvFn is recv, bound once;
	// recvN and recvErr are its result.
	raw     syscall.RawConn
	pool    *sync.Pool
	buf     []byte
	recvFn  func(fd uintptr) bool
	recvN   int
	recvErr error
	// Sockets in the last LISTEN-only dump of each kind.
	lastInet, lastUnix atomic.Int64
}

// Dial opens a sock_diag socket in the calling thread's network namespace.
// It reads dumps into a buffer of fixed size, which saves a peek and an
// allocation per datagram; the kernel sizes a dump's datagrams to the
// reader's buffer. With large, 32 KiB, so a dump of thousands of sockets
// takes a dozen reads, not hundreds; else 8 KiB, plenty for a namespace
// holding a handful of listeners (a pod), since each socket keeps its own
// buffers and a node has hundreds of pods.
func Dial(large bool) (*Conn, error) {
	cfg := &netlink.Config{MessageBufferSize: smallBufferSize}
	if large {
		cfg.MessageBufferSize = dumpBufferSize
	}
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, cfg)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag netlink socket: %w", err)
	}
	return newConn(c, cfg.MessageBufferSize), nil
}

// NewConn wraps an existing netlink connection, for tests with nltest and
// benchmarks. Its replies are read as Dial's are when it has a socket of
// its own.
func NewConn(c *netlink.Conn) *Conn { return newConn(c, dumpBufferSize) }

func newConn(c *netlink.Conn, bufSize int) *Conn {
	conn := &Conn{c: c}
	if raw, err := c.SyscallConn(); err == nil {
		conn.raw, conn.pool, conn.recvFn = raw, &smallBuffers, conn.recv
		if bufSize > smallBufferSize {
			conn.pool = &largeBuffers
		}
	}
	return conn
}

// The read buffers are shared by all Conns, so what they hold follows the
// dumps in flight, not the namespaces (a node has hundreds of pods).
var (
	smallBuffers = sync.Pool{New: func() any { b := make([]byte, smallBufferSize); return &b }}
	largeBuffers = sync.Pool{New: func() any { b := make([]byte, dumpBufferSize); return &b }}
)

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }

// InetSockets runs one inet_diag dump.
func (c *Conn) InetSockets(req InetRequest) ([]InetSocket, error) {
	// Sized as the last dump of the kind was, so a steady dump never grows.
	out := make([]InetSocket, 0, c.lastInet.Load())
	err := c.EachInetSocket(req, func(s *InetSocket) error {
		out = append(out, *s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EachInetSocket runs one inet_diag dump as InetSockets does, handing each
// socket to each as it is decoded, and stops at the first error each
// returns: a caller that keeps only what it derives from the sockets
// builds no slice of them.
func (c *Conn) EachInetSocket(req InetRequest, each func(*InetSocket) error) error {
	n, err := eachSocket(c, req.messageType(), req.MarshalBinary, ParseInetSocket, each)
	if err != nil {
		return fmt.Errorf("inet_diag dump (family %d): %w", req.Family, err)
	}
	if req.States == 1<<StateListen {
		// Other dumps (SYN_RECV, counted in the background) say nothing
		// of how many listeners the next listener dump will bring.
		c.lastInet.Store(int64(n))
	}
	return nil
}

// LastInetCount is how many sockets the last LISTEN-only inet dump
// returned: a size hint for the next one's results.
func (c *Conn) LastInetCount() int { return int(c.lastInet.Load()) }

// UnixSockets runs one unix_diag dump.
func (c *Conn) UnixSockets(req UnixRequest) ([]UnixSocket, error) {
	out := make([]UnixSocket, 0, c.lastUnix.Load())
	err := c.EachUnixSocket(req, func(s *UnixSocket) error {
		s.Name = bytes.Clone(s.Name)
		out = append(out, *s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EachUnixSocket dumps unix sockets as UnixSockets does, handing each to
// each as it is decoded, and stops at the first error each returns. The
// socket's Name points into the netlink message and is valid only during
// the call: a caller that keeps only what it derives from it (the exporter
// keeps a formatted name) then copies no 20,000 names a scrape.
func (c *Conn) EachUnixSocket(req UnixRequest, each func(*UnixSocket) error) error {
	n, err := eachSocket(c, sockDiagByFamily, req.MarshalBinary, parseUnixSocket, each)
	if err != nil {
		return fmt.Errorf("unix_diag dump: %w", err)
	}
	if req.States == 1<<StateListen {
		c.lastUnix.Store(int64(n))
	}
	return nil
}

// eachSocket runs one dump of message type typ, decodes each answer with
// parse into one value for the whole dump (not one on the heap per
// socket) and hands it to each; it returns how many sockets there were.
func eachSocket[S any](c *Conn, typ uint16, marshal func() ([]byte, error), parse func([]byte) (S, error), each func(*S) error) (int, error) {
	n := 0
	var s S
	err := c.dump(typ, marshal, func(data []byte) error {
		var err error
		if s, err = parse(data); err != nil {
			return err
		}
		n++
		return each(&s)
	})
	return n, err
}

// LastUnixCount is how many sockets the last LISTEN-only unix dump
// returned: a size hint for the next one's results.
func (c *Conn) LastUnixCount() int { return int(c.lastUnix.Load()) }

// dump sends one dump request and hands each answer's payload to each as
// it arrives. Parsing messages as they come, rather than collecting them
// all first, keeps a dump of 20,000 sockets from holding 20,000 messages.
func (c *Conn) dump(typ uint16, marshal func() ([]byte, error), each func(data []byte) error) error {
	body, err := marshal()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	req, err := c.c.Send(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(typ),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: body,
	})
	if err != nil {
		return err
	}
	if c.raw != nil {
		return c.receive(req.Header, typ, each)
	}
	for m, err := range c.c.ReceiveIter() {
		if err != nil {
			return err
		}
		if err := netlink.Validate(req, []netlink.Message{m}); err != nil {
			return err
		}
		// An empty dump comes back as a lone NLMSG_DONE.
		if m.Header.Type != netlink.HeaderType(typ) {
			continue
		}
		if err := each(m.Data); err != nil {
			return err
		}
	}
	return nil
}

// receive reads the replies to req into c.buf and hands the payload of each
// message of type typ to each. netlink.Conn's reads copy every datagram
// into a new buffer: on a node of 25,000 listeners, megabytes of garbage
// per scrape, and again per sampler round.
func (c *Conn) receive(req netlink.Header, typ uint16, each func(data []byte) error) error {
	bp := c.pool.Get().(*[]byte)
	c.buf = *bp
	defer func() {
		c.buf = nil
		c.pool.Put(bp)
	}()
	for {
		n, err := c.read()
		if err != nil {
			return err
		}
		if done, err := replies(c.buf[:n], req, typ, each); done || err != nil {
			return err
		}
	}
}

var errTruncated = errors.New("datagram larger than the read buffer")

// read reads one datagram into c.buf, waiting for it through the runtime's
// poller as netlink.Conn does. Neither it nor recv allocates: it runs for
// every datagram of every dump.
func (c *Conn) read() (int, error) {
	err := c.raw.Read(c.recvFn)
	if err = cmp.Or(err, c.recvErr); err != nil {
		return 0, fmt.Errorf("netlink receive: %w", err)
	}
	return c.recvN, nil
}

// recv is read's attempt at a datagram: false to wait for one. recvfrom
// with MSG_TRUNC returns the datagram's whole length, so a datagram cut
// short is seen; without a source address, which netlink replies do not
// need and x/sys/unix would allocate.
func (c *Conn) recv(fd uintptr) bool {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.buf[0])), uintptr(len(c.buf)), unix.MSG_TRUNC, 0, 0)
		c.recvN, c.recvErr = int(n), nil
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			return false
		case errno != 0:
			c.recvErr = errno
		case c.recvN > len(c.buf):
			c.recvErr = errTruncated
		}
		return true
	}
}

var (
	errMalformed = errors.New("malformed netlink message")
	errSequence  = errors.New("netlink reply to another request (sequence)")
	errPID       = errors.New("netlink reply to another socket (port ID)")
)

// replies hands each message in datagram b of type typ to each, after
// checking it answers req as netlink.Validate does. done is true once the
// dump is over: at its NLMSG_DONE, at an NLMSG_ERROR, or after a datagram
// that is not part of a multi-part reply.
func replies(b []byte, req netlink.Header, typ uint16, each func(data []byte) error) (done bool, err error) {
	ne := binary.NativeEndian
	multi := false
	for len(b) > 0 {
		if len(b) < unix.NLMSG_HDRLEN {
			return true, fmt.Errorf("%w: %d trailing bytes", errMalformed, len(b))
		}
		n := int(ne.Uint32(b[0:4]))
		if n < unix.NLMSG_HDRLEN || n > len(b) {
			return true, fmt.Errorf("%w: length %d outside %d..%d", errMalformed, n, unix.NLMSG_HDRLEN, len(b))
		}
		t, flags, seq, pid := ne.Uint16(b[4:6]), netlink.HeaderFlags(ne.Uint16(b[6:8])), ne.Uint32(b[8:12]), ne.Uint32(b[12:16])
		switch {
		case req.Sequence != 0 && seq != req.Sequence:
			return true, errSequence
		case req.PID != 0 && pid != 0 && pid != req.PID:
			return true, errPID
		}
		data := b[unix.NLMSG_HDRLEN:n]
		switch netlink.HeaderType(t) {
		case netlink.Error, netlink.Done:
			// Both may carry an errno; the kernel reports one met in the
			// middle of a dump in its NLMSG_DONE.
			return true, errnoOf(netlink.HeaderType(t), data)
		case netlink.HeaderType(typ):
			if err := each(data); err != nil {
				return true, err
			}
		}
		multi = multi || flags&netlink.Multi != 0
		b = b[min((n+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1), len(b)):]
	}
	return !multi, nil
}

// errnoOf is the error an NLMSG_ERROR or NLMSG_DONE payload reports: nil
// for 0 (an acknowledgement) and for a bare NLMSG_DONE.
func errnoOf(t netlink.HeaderType, data []byte) error {
	if len(data) < 4 {
		if t == netlink.Done && len(data) == 0 {
			return nil
		}
		return fmt.Errorf("%w: %d-byte error payload", errMalformed, len(data))
	}
	if code := int32(binary.NativeEndian.Uint32(data[:4])); code != 0 {
		return fmt.Errorf("netlink receive: %w", unix.Errno(-code))
	}
	return nil
}
