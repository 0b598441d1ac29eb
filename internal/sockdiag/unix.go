package sockdiag

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Constants from linux/unix_diag.h.
const (
	unixDiagReqLen = 24 // sizeof(struct unix_diag_req)
	unixDiagMsgLen = 16 // sizeof(struct unix_diag_msg)

	unixDiagName  = 0 // UNIX_DIAG_NAME
	unixDiagRQLen = 4 // UNIX_DIAG_RQLEN

	udiagShowName  = 0x01 // UDIAG_SHOW_NAME
	udiagShowRQLen = 0x10 // UDIAG_SHOW_RQLEN
)

// Socket types of unix sockets (linux/net.h).
const (
	SockStream    = 1
	SockDgram     = 2
	SockSeqPacket = 5
)

// UnixRequest describes one unix_diag dump.
type UnixRequest struct {
	States uint32 // bit set of 1<<TCP_STATE; unix sockets reuse TCP state numbers
	// QueuesOnly leaves out the names, for sampling.
	QueuesOnly bool
}

// MarshalBinary encodes the request as struct unix_diag_req asking for the
// queue lengths and, unless QueuesOnly, the name.
func (r UnixRequest) MarshalBinary() ([]byte, error) {
	b := make([]byte, unixDiagReqLen)
	b[0] = FamilyUnix
	ne := binary.NativeEndian
	ne.PutUint32(b[4:8], r.States)
	// b[8:12] udiag_ino = 0: all sockets.
	show := uint32(udiagShowName | udiagShowRQLen)
	if r.QueuesOnly {
		show = udiagShowRQLen
	}
	ne.PutUint32(b[12:16], show)
	// The cookie b[16:24] stays zero.
	return b, nil
}

// UnixSocket is one socket record of a unix_diag reply.
type UnixSocket struct {
	Type  uint8
	State uint8
	// Inode is the socket inode, as in /proc/PID/fd/N -> socket:[Inode].
	Inode uint32
	// Name is the raw sun_path; abstract names start with a NUL byte. Empty
	// for unnamed sockets.
	Name []byte
	// RQueue is, for a listener, the number of connections waiting to be
	// accepted; WQueue its backlog. Valid when HasQueue is set.
	RQueue, WQueue uint32
	HasQueue       bool
}

// ParseUnixSocket decodes one struct unix_diag_msg and its attributes.
func ParseUnixSocket(b []byte) (UnixSocket, error) {
	s, err := parseUnixSocket(b)
	s.Name = bytes.Clone(s.Name)
	return s, err
}

// parseUnixSocket is ParseUnixSocket with a Name that points into b.
func parseUnixSocket(b []byte) (UnixSocket, error) {
	if len(b) < unixDiagMsgLen {
		return UnixSocket{}, fmt.Errorf("unix_diag_msg: %w: %d bytes, want %d", ErrShortMessage, len(b), unixDiagMsgLen)
	}
	ne := binary.NativeEndian
	s := UnixSocket{Type: b[1], State: b[2], Inode: ne.Uint32(b[4:8])}
	if len(b) == unixDiagMsgLen {
		return s, nil
	}
	// The same in-place walk as the sampler's ParseUnixQueue, so the two
	// decoders agree on every message.
	attrs := b[unixDiagMsgLen:]
	name, err := findAttr(attrs, unixDiagName)
	if err != nil {
		return UnixSocket{}, fmt.Errorf("unix_diag_msg attributes: %w", err)
	}
	s.Name = name
	q, err := findAttr(attrs, unixDiagRQLen)
	if err != nil {
		return UnixSocket{}, fmt.Errorf("unix_diag_msg attributes: %w", err)
	}
	if q != nil {
		if len(q) < 8 {
			return UnixSocket{}, fmt.Errorf("unix_diag_msg: %w: UNIX_DIAG_RQLEN has %d bytes, want 8", ErrShortMessage, len(q))
		}
		s.RQueue, s.WQueue, s.HasQueue = ne.Uint32(q[0:4]), ne.Uint32(q[4:8]), true
	}
	return s, nil
}
