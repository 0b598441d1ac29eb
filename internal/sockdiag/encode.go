package sockdiag

import (
	"encoding/binary"
	"net/netip"

	"github.com/mdlayher/netlink"
)

// The kernel encodes replies; these encoders exist so fakes (nltest) and
// fuzz seeds can produce byte-exact replies.

// MarshalBinary encodes s as the kernel would: struct inet_diag_msg and,
// when HasDrops is set, an INET_DIAG_SKMEMINFO attribute.
func (s InetSocket) MarshalBinary() ([]byte, error) {
	b := make([]byte, inetDiagMsgLen)
	b[0], b[1] = s.Family, s.State
	putAddrPort(b[4:6], b[8:24], s.Local)
	putAddrPort(b[6:8], b[24:40], s.Remote)
	ne := binary.NativeEndian
	ne.PutUint32(b[40:44], s.IfIndex)
	ne.PutUint32(b[44:48], uint32(s.Cookie))
	ne.PutUint32(b[48:52], uint32(s.Cookie>>32))
	ne.PutUint32(b[56:60], s.RQueue)
	ne.PutUint32(b[60:64], s.WQueue)
	ne.PutUint32(b[64:68], s.UID)
	ne.PutUint32(b[68:72], s.Inode)
	if !s.HasDrops {
		return b, nil
	}
	mem := make([]byte, 4*(skMemInfoDrops+1))
	ne.PutUint32(mem[4*skMemInfoDrops:], s.Drops)
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: inetDiagSKMemInfo, Data: mem}})
	if err != nil {
		return nil, err
	}
	return append(b, attrs...), nil
}

func putAddrPort(port, addr []byte, ap netip.AddrPort) {
	binary.BigEndian.PutUint16(port, ap.Port())
	a := ap.Addr()
	if a.Is4() {
		v4 := a.As4()
		copy(addr, v4[:])
		return
	}
	v6 := a.As16()
	copy(addr, v6[:])
}

// MarshalBinary encodes s as struct unix_diag_msg with UNIX_DIAG_NAME (when
// Name is set) and UNIX_DIAG_RQLEN (when HasQueue is set).
func (s UnixSocket) MarshalBinary() ([]byte, error) {
	b := make([]byte, unixDiagMsgLen)
	b[0], b[1], b[2] = FamilyUnix, s.Type, s.State
	ne := binary.NativeEndian
	ne.PutUint32(b[4:8], s.Inode)
	var attrs []netlink.Attribute
	if s.Name != nil {
		attrs = append(attrs, netlink.Attribute{Type: unixDiagName, Data: s.Name})
	}
	if s.HasQueue {
		q := make([]byte, 8)
		ne.PutUint32(q[0:4], s.RQueue)
		ne.PutUint32(q[4:8], s.WQueue)
		attrs = append(attrs, netlink.Attribute{Type: unixDiagRQLen, Data: q})
	}
	if len(attrs) == 0 {
		return b, nil
	}
	ab, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return nil, err
	}
	return append(b, ab...), nil
}
