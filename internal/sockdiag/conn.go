package sockdiag

import (
	"fmt"
	"sync"

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
	msgs, err := c.dump(req.messageType(), req.MarshalBinary)
	if err != nil {
		return nil, fmt.Errorf("inet_diag dump (family %d): %w", req.Family, err)
	}
	out := make([]InetSocket, 0, len(msgs))
	for _, m := range msgs {
		s, err := ParseInetSocket(m.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// UnixSockets runs one unix_diag dump.
func (c *Conn) UnixSockets(req UnixRequest) ([]UnixSocket, error) {
	msgs, err := c.dump(sockDiagByFamily, req.MarshalBinary)
	if err != nil {
		return nil, fmt.Errorf("unix_diag dump: %w", err)
	}
	out := make([]UnixSocket, 0, len(msgs))
	for _, m := range msgs {
		s, err := ParseUnixSocket(m.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (c *Conn) dump(typ uint16, marshal func() ([]byte, error)) ([]netlink.Message, error) {
	body, err := marshal()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	msgs, err := c.c.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(typ),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: body,
	})
	if err != nil {
		return nil, err
	}
	// An empty dump comes back as a lone NLMSG_DONE, which Execute keeps.
	out := msgs[:0]
	for _, m := range msgs {
		if m.Header.Type == netlink.HeaderType(typ) {
			out = append(out, m)
		}
	}
	return out, nil
}
