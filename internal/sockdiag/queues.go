package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Queue is the accept-queue state of one listener, all a sampler needs.
type Queue struct {
	Inode  uint32
	Length uint32
	Limit  uint32
	Cookie uint64 // TCP only: the socket cookie (InetSocket.Cookie)
}

// ListenQueues dumps the listeners of family (FamilyUnix, FamilyINet,
// FamilyINet6, or FamilyUnspec for TCP over both IP families) and appends their queues to dst. It asks the kernel for no
// names or memory counters and decodes each record in place, so frequent
// sampling stays cheap: a fraction of the cost of a full dump.
func (c *Conn) ListenQueues(family uint8, dst []Queue) ([]Queue, error) {
	var (
		body  []byte
		err   error
		parse func([]byte) (Queue, bool, error)
		typ   uint16 = sockDiagByFamily
	)
	if family == FamilyUnix {
		body, err = UnixRequest{States: 1 << StateListen, QueuesOnly: true}.MarshalBinary()
		parse = ParseUnixQueue
	} else {
		req := InetRequest{Family: family, States: 1 << StateListen}
		body, err = req.MarshalBinary()
		parse, typ = ParseInetQueue, req.messageType()
	}
	if err != nil {
		return dst, err
	}
	err = c.dump(typ, func() ([]byte, error) { return body, nil }, func(data []byte) error {
		q, ok, err := parse(data)
		if ok {
			dst = append(dst, q)
		}
		return err
	})
	if err != nil {
		return dst, fmt.Errorf("sock_diag queue dump (family %d): %w", family, err)
	}
	return dst, nil
}

// ParseInetQueue decodes the queue fields of one struct inet_diag_msg.
func ParseInetQueue(b []byte) (Queue, bool, error) {
	if len(b) < inetDiagMsgLen {
		return Queue{}, false, fmt.Errorf("inet_diag_msg: %w: %d bytes, want %d", ErrShortMessage, len(b), inetDiagMsgLen)
	}
	ne := binary.NativeEndian
	return Queue{Inode: ne.Uint32(b[68:72]), Length: ne.Uint32(b[56:60]), Limit: ne.Uint32(b[60:64]), Cookie: cookieOf(b[44:52])}, true, nil
}

// ParseUnixQueue decodes one struct unix_diag_msg and its UNIX_DIAG_RQLEN
// attribute; ok is false for socket types that cannot listen (datagram).
func ParseUnixQueue(b []byte) (Queue, bool, error) {
	if len(b) < unixDiagMsgLen {
		return Queue{}, false, fmt.Errorf("unix_diag_msg: %w: %d bytes, want %d", ErrShortMessage, len(b), unixDiagMsgLen)
	}
	if b[1] != SockStream && b[1] != SockSeqPacket {
		return Queue{}, false, nil
	}
	ne := binary.NativeEndian
	q := Queue{Inode: ne.Uint32(b[4:8])}
	rq, err := findAttr(b[unixDiagMsgLen:], unixDiagRQLen)
	if err != nil {
		return Queue{}, false, fmt.Errorf("unix_diag_msg: %w", err)
	}
	if len(rq) < 8 {
		return Queue{}, false, fmt.Errorf("unix_diag_msg: %w: UNIX_DIAG_RQLEN has %d bytes, want 8", ErrShortMessage, len(rq))
	}
	q.Length, q.Limit = ne.Uint32(rq[0:4]), ne.Uint32(rq[4:8])
	return q, true, nil
}

// errBadAttribute reports a netlink attribute whose length does not fit.
var errBadAttribute = errors.New("malformed netlink attribute")

// findAttr returns the payload of the first netlink attribute of type typ,
// checking the whole attribute stream is well formed, without allocating.
func findAttr(b []byte, typ uint16) ([]byte, error) {
	ne := binary.NativeEndian
	var found []byte
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, fmt.Errorf("%w: %d trailing bytes", errBadAttribute, len(b))
		}
		n := int(ne.Uint16(b[0:2]))
		if n < 4 || n > len(b) {
			return nil, fmt.Errorf("%w: length %d outside 4..%d", errBadAttribute, n, len(b))
		}
		// The top two bits of the type are flags (nested, byte order).
		if found == nil && ne.Uint16(b[2:4])&0x3fff == typ {
			found = b[4:n]
		}
		b = b[min((n+3)&^3, len(b)):]
	}
	return found, nil
}
