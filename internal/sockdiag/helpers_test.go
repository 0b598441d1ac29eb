package sockdiag

import (
	"bytes"
	"encoding/binary"
	"net/netip"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
)

// The helpers below build kernel messages by hand, field by field, following
// the uapi structure layouts, so the tests do not trust the code under test
// to know them.

var ne = binary.NativeEndian

// inetMsg is a struct inet_diag_msg to encode.
type inetMsg struct {
	family, state, timer, retrans uint8
	local, remote                 netip.AddrPort
	// localRaw and remoteRaw, when set, replace the 16-byte address fields
	// verbatim (to put garbage behind an IPv4 address).
	localRaw, remoteRaw []byte
	ifIndex             uint32
	cookie              [2]uint32
	expires             uint32
	rqueue, wqueue      uint32
	uid, inode          uint32
}

// encode lays out struct inet_diag_msg (72 bytes) followed by attrs:
//
//	0 family, 1 state, 2 timer, 3 retrans,
//	4 sport (be16), 6 dport (be16), 8 src[16], 24 dst[16], 40 if,
//	44 cookie[2], 52 expires, 56 rqueue, 60 wqueue, 64 uid, 68 inode.
func (m inetMsg) encode(attrs []byte) []byte {
	b := make([]byte, 72, 72+len(attrs))
	b[0], b[1], b[2], b[3] = m.family, m.state, m.timer, m.retrans
	binary.BigEndian.PutUint16(b[4:6], m.local.Port())
	binary.BigEndian.PutUint16(b[6:8], m.remote.Port())
	putAddr(b[8:24], m.local.Addr(), m.localRaw)
	putAddr(b[24:40], m.remote.Addr(), m.remoteRaw)
	ne.PutUint32(b[40:44], m.ifIndex)
	ne.PutUint32(b[44:48], m.cookie[0])
	ne.PutUint32(b[48:52], m.cookie[1])
	ne.PutUint32(b[52:56], m.expires)
	ne.PutUint32(b[56:60], m.rqueue)
	ne.PutUint32(b[60:64], m.wqueue)
	ne.PutUint32(b[64:68], m.uid)
	ne.PutUint32(b[68:72], m.inode)
	return append(b, attrs...)
}

func putAddr(dst []byte, a netip.Addr, raw []byte) {
	switch {
	case raw != nil:
		copy(dst, raw)
	case a.Is4():
		a4 := a.As4()
		copy(dst, a4[:])
	case a.IsValid():
		a16 := a.As16()
		copy(dst, a16[:])
	}
}

// unixMsg is a struct unix_diag_msg to encode.
type unixMsg struct {
	family, typ, state uint8
	inode              uint32
	cookie             [2]uint32
}

// encode lays out struct unix_diag_msg (16 bytes) followed by attrs:
//
//	0 family, 1 type, 2 state, 3 pad, 4 ino, 8 cookie[2].
func (m unixMsg) encode(attrs []byte) []byte {
	b := make([]byte, 16, 16+len(attrs))
	b[0], b[1], b[2] = m.family, m.typ, m.state
	ne.PutUint32(b[4:8], m.inode)
	ne.PutUint32(b[8:12], m.cookie[0])
	ne.PutUint32(b[12:16], m.cookie[1])
	return append(b, attrs...)
}

// attrs marshals netlink attributes.
func attrs(a ...netlink.Attribute) []byte { return nltest.MustMarshalAttributes(a) }

// u32s encodes native-endian u32 values, as the kernel does for
// INET_DIAG_SKMEMINFO and UNIX_DIAG_RQLEN.
func u32s(vs ...uint32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		ne.PutUint32(b[4*i:], v)
	}
	return b
}

// skMemInfo returns an INET_DIAG_SKMEMINFO attribute with n u32 fields, all
// distinct, with drops at index SK_MEMINFO_DROPS (8) when n > 8.
func skMemInfo(n int, drops uint32) netlink.Attribute {
	vs := make([]uint32, n)
	for i := range vs {
		vs[i] = uint32(1000 + i)
	}
	if n > 8 {
		vs[8] = drops
	}
	return netlink.Attribute{Type: 7, Data: u32s(vs...)}
}

// unixEqual compares UnixSockets; a nil and an empty Name are different
// (an unnamed socket versus a zero-length name attribute).
func unixEqual(a, b UnixSocket) bool {
	return a.Type == b.Type && a.State == b.State && a.Inode == b.Inode &&
		bytes.Equal(a.Name, b.Name) && (a.Name == nil) == (b.Name == nil) &&
		a.RQueue == b.RQueue && a.WQueue == b.WQueue && a.HasQueue == b.HasQueue
}

// nameAttr is UNIX_DIAG_NAME (type 0) carrying raw sun_path bytes.
func nameAttr[T string | []byte](name T) netlink.Attribute {
	return netlink.Attribute{Type: 0, Data: []byte(name)}
}

// rqlenAttr is UNIX_DIAG_RQLEN (type 4): rqueue, wqueue.
func rqlenAttr(rqueue, wqueue uint32) netlink.Attribute {
	return netlink.Attribute{Type: 4, Data: u32s(rqueue, wqueue)}
}
