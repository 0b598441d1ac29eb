package sockdiag

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"

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
	// Sockets in the last dump of each kind.
	lastInet, lastUnix atomic.Int64
}

// Dial opens a sock_diag socket in the calling thread's network namespace.
// It reads dumps through fixed buffers, which saves a peek and an
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
	return &Conn{c: c}, nil
}

// NewConn wraps an existing netlink connection, for tests with nltest.
func NewConn(c *netlink.Conn) *Conn { return &Conn{c: c} }

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }

// InetSockets runs one inet_diag dump.
func (c *Conn) InetSockets(req InetRequest) ([]InetSocket, error) {
	// Sized as the last dump of the kind was, so a steady dump never grows.
	out := make([]InetSocket, 0, c.lastInet.Load())
	err := c.dump(req.messageType(), req.MarshalBinary, func(data []byte) error {
		s, err := ParseInetSocket(data)
		out = append(out, s)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("inet_diag dump (family %d): %w", req.Family, err)
	}
	c.lastInet.Store(int64(len(out)))
	return out, nil
}

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
	n := 0
	var s UnixSocket // one for the dump, not one on the heap per socket
	err := c.dump(sockDiagByFamily, req.MarshalBinary, func(data []byte) error {
		var err error
		if s, err = parseUnixSocket(data); err != nil {
			return err
		}
		n++
		return each(&s)
	})
	if err != nil {
		return fmt.Errorf("unix_diag dump: %w", err)
	}
	c.lastUnix.Store(int64(n))
	return nil
}

// LastUnixCount is how many sockets the last unix dump returned: a size
// hint for the next one's results.
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
