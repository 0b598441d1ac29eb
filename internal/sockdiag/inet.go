// Package sockdiag speaks the kernel's sock_diag netlink protocol (inet_diag
// for TCP, unix_diag for unix sockets). Requests are encoded and replies
// decoded by pure functions over bytes; Conn is the thin I/O layer on top.
package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Kernel constants from linux/inet_diag.h, linux/sock_diag.h and
// linux/tcp_states.h. They are part of the stable uapi.
const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	// tcpDiagGetSock is the original inet_diag request (TCPDIAG_GETSOCK),
	// still served: it dumps IPv4 and IPv6 sockets in one walk of the
	// kernel's tables, where SOCK_DIAG_BY_FAMILY needs one walk per family.
	tcpDiagGetSock = 18

	StateSynRecv = 3  // TCP_SYN_RECV
	StateListen  = 10 // TCP_LISTEN
	// StateNewSynRecv is how request sockets (pending handshakes) are dumped.
	StateNewSynRecv = 12 // TCP_NEW_SYN_RECV

	inetDiagSKMemInfo = 7 // INET_DIAG_SKMEMINFO
	skMemInfoDrops    = 8 // SK_MEMINFO_DROPS

	inetDiagReqLen       = 56 // sizeof(struct inet_diag_req_v2)
	inetDiagReqCompatLen = 60 // sizeof(struct inet_diag_req)
	inetDiagMsgLen       = 72 // sizeof(struct inet_diag_msg)

	ipprotoTCP = 6
)

// Address families as the kernel numbers them.
const (
	// FamilyUnspec asks for IPv4 and IPv6 TCP sockets in one dump.
	FamilyUnspec = 0  // AF_UNSPEC
	FamilyUnix   = 1  // AF_UNIX
	FamilyINet   = 2  // AF_INET
	FamilyINet6  = 10 // AF_INET6
)

// InetRequest describes one inet_diag dump.
type InetRequest struct {
	Family  uint8
	States  uint32 // bit set of 1<<TCP_STATE
	MemInfo bool   // ask for INET_DIAG_SKMEMINFO
}

// MarshalBinary encodes the request as struct inet_diag_req_v2 for TCP, or,
// for FamilyUnspec, as the original struct inet_diag_req (see
// messageType).
func (r InetRequest) MarshalBinary() ([]byte, error) {
	var ext byte
	if r.MemInfo {
		// idiag_ext is a bit set of (1 << (INET_DIAG_xxx - 1)).
		ext = 1 << (inetDiagSKMemInfo - 1)
	}
	switch r.Family {
	case FamilyUnspec:
		// Family, address lengths, ext; the socket id (b[4:52]) stays
		// zero; states; dbs.
		b := make([]byte, inetDiagReqCompatLen)
		b[3] = ext
		binary.NativeEndian.PutUint32(b[52:56], r.States)
		return b, nil
	case FamilyINet, FamilyINet6:
	default:
		return nil, fmt.Errorf("inet_diag: unsupported address family %d", r.Family)
	}
	b := make([]byte, inetDiagReqLen)
	b[0] = r.Family
	b[1] = ipprotoTCP
	b[2] = ext
	binary.NativeEndian.PutUint32(b[4:8], r.States)
	// The socket id (b[8:56]) stays zero: no address filter.
	return b, nil
}

// messageType is the netlink message type of the request (and its
// replies): TCPDIAG_GETSOCK for FamilyUnspec, else SOCK_DIAG_BY_FAMILY.
func (r InetRequest) messageType() uint16 {
	if r.Family == FamilyUnspec {
		return tcpDiagGetSock
	}
	return sockDiagByFamily
}

// InetSocket is one socket record of an inet_diag reply.
type InetSocket struct {
	Family  uint8
	State   uint8
	Local   netip.AddrPort
	Remote  netip.AddrPort
	IfIndex uint32
	// RQueue is idiag_rqueue: for a listener, the accept-queue length.
	RQueue uint32
	// WQueue is idiag_wqueue: for a listener, the effective backlog.
	WQueue uint32
	UID    uint32
	Inode  uint32
	// Cookie is the socket's cookie: unique on the host, across network
	// namespaces, for as long as it runs. Dumping a socket gives it one.
	Cookie uint64
	// Drops is SK_MEMINFO_DROPS (sk_drops); valid when HasDrops is set.
	Drops    uint32
	HasDrops bool
}

// ErrShortMessage reports a reply too short for the structure it must hold.
var ErrShortMessage = errors.New("sock_diag: short message")

// ParseInetSocket decodes one struct inet_diag_msg and its attributes.
func ParseInetSocket(b []byte) (InetSocket, error) {
	if len(b) < inetDiagMsgLen {
		return InetSocket{}, fmt.Errorf("inet_diag_msg: %w: %d bytes, want %d", ErrShortMessage, len(b), inetDiagMsgLen)
	}
	s := InetSocket{Family: b[0], State: b[1]}
	var err error
	if s.Local, err = parseAddrPort(s.Family, b[4:6], b[8:24]); err != nil {
		return InetSocket{}, err
	}
	if s.Remote, err = parseAddrPort(s.Family, b[6:8], b[24:40]); err != nil {
		return InetSocket{}, err
	}
	ne := binary.NativeEndian
	s.IfIndex = ne.Uint32(b[40:44])
	s.Cookie = cookieOf(b[44:52])
	// b[52:56] is idiag_expires.
	s.RQueue = ne.Uint32(b[56:60])
	s.WQueue = ne.Uint32(b[60:64])
	s.UID = ne.Uint32(b[64:68])
	s.Inode = ne.Uint32(b[68:72])

	if len(b) == inetDiagMsgLen {
		return s, nil
	}
	// Walked in place: a scrape decodes thousands of these.
	mem, err := findAttr(b[inetDiagMsgLen:], inetDiagSKMemInfo)
	if err != nil {
		return InetSocket{}, fmt.Errorf("inet_diag_msg attributes: %w", err)
	}
	// Older kernels have fewer SK_MEMINFO fields: no drop counter.
	if len(mem) >= 4*(skMemInfoDrops+1) {
		s.Drops = ne.Uint32(mem[4*skMemInfoDrops:])
		s.HasDrops = true
	}
	return s, nil
}

// parseAddrPort decodes a big-endian port and a 16-byte address field, of
// which IPv4 uses only the first four bytes.
func parseAddrPort(family uint8, port, addr []byte) (netip.AddrPort, error) {
	p := binary.BigEndian.Uint16(port)
	switch family {
	case FamilyINet:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(addr[:4])), p), nil
	case FamilyINet6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(addr[:16])), p), nil
	default:
		return netip.AddrPort{}, fmt.Errorf("inet_diag_msg: unexpected address family %d", family)
	}
}

// cookieOf decodes idiag_cookie: the cookie's low and high 32 bits.
func cookieOf(b []byte) uint64 {
	ne := binary.NativeEndian
	return uint64(ne.Uint32(b[0:4])) | uint64(ne.Uint32(b[4:8]))<<32
}
