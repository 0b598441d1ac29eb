package sockdiag

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzParseInetSocket feeds arbitrary bytes to the inet_diag decoder. Beyond
// not panicking, a successful parse must agree with the fixed header it came
// from, and re-encoding the result must parse back to the same socket.
func FuzzParseInetSocket(f *testing.F) {
	for _, tc := range inetCases() {
		f.Add(tc.msg)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseInetSocket(b)
		if len(b) < 72 {
			if !errors.Is(err, ErrShortMessage) {
				t.Fatalf("%d bytes: err = %v, want ErrShortMessage", len(b), err)
			}
			return
		}
		if err != nil {
			if errors.Is(err, ErrShortMessage) {
				t.Fatalf("%d bytes: ErrShortMessage for a full header: %v", len(b), err)
			}
			if s != (InetSocket{}) {
				t.Fatalf("non-zero socket %+v alongside error %v", s, err)
			}
			return
		}

		if s.Family != b[0] || s.State != b[1] {
			t.Fatalf("family/state = %d/%d, header has %d/%d", s.Family, s.State, b[0], b[1])
		}
		switch s.Family {
		case FamilyINet:
			if !s.Local.Addr().Is4() || !s.Remote.Addr().Is4() {
				t.Fatalf("AF_INET socket with non-IPv4 addresses %v %v", s.Local, s.Remote)
			}
		case FamilyINet6:
			if !s.Local.Addr().Is6() || !s.Remote.Addr().Is6() {
				t.Fatalf("AF_INET6 socket with non-IPv6 addresses %v %v", s.Local, s.Remote)
			}
		default:
			t.Fatalf("parsed a socket of family %d", s.Family)
		}
		if s.Local.Port() != binary.BigEndian.Uint16(b[4:6]) || s.Remote.Port() != binary.BigEndian.Uint16(b[6:8]) {
			t.Fatalf("ports %d/%d do not match header % x", s.Local.Port(), s.Remote.Port(), b[4:8])
		}
		if !s.HasDrops && s.Drops != 0 {
			t.Fatalf("Drops = %d without HasDrops", s.Drops)
		}

		// Round trip: the header bytes the decoder reads must come back
		// unchanged (timer, retrans, expires and the unused tail of an IPv4
		// address are not decoded).
		var attr []byte
		if s.HasDrops {
			attr = attrs(skMemInfo(9, s.Drops))
		}
		re := inetMsg{
			family: s.Family, state: s.State, local: s.Local, remote: s.Remote,
			ifIndex: s.IfIndex, rqueue: s.RQueue, wqueue: s.WQueue, uid: s.UID, inode: s.Inode,
			cookie: [2]uint32{uint32(s.Cookie), uint32(s.Cookie >> 32)},
		}.encode(attr)
		for i := range 72 {
			skip := i == 2 || i == 3 || (i >= 52 && i < 56) ||
				(s.Family == FamilyINet && ((i >= 12 && i < 24) || (i >= 28 && i < 40)))
			if !skip && re[i] != b[i] {
				t.Fatalf("re-encoded header differs at byte %d\n got % x\nwant % x", i, re[:72], b[:72])
			}
		}
		s2, err := ParseInetSocket(re)
		if err != nil {
			t.Fatalf("re-encoded socket does not parse: %v", err)
		}
		if s2 != s {
			t.Fatalf("round trip\n got %+v\nwant %+v", s2, s)
		}
	})
}

// FuzzParseUnixSocket is FuzzParseInetSocket for unix_diag.
func FuzzParseUnixSocket(f *testing.F) {
	for _, tc := range unixCases() {
		f.Add(tc.msg)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseUnixSocket(b)
		if len(b) < 16 {
			if !errors.Is(err, ErrShortMessage) {
				t.Fatalf("%d bytes: err = %v, want ErrShortMessage", len(b), err)
			}
			return
		}
		if err != nil {
			if !unixEqual(s, UnixSocket{}) {
				t.Fatalf("non-zero socket %+v alongside error %v", s, err)
			}
			return
		}

		if s.Type != b[1] || s.State != b[2] || s.Inode != ne.Uint32(b[4:8]) {
			t.Fatalf("type/state/inode = %d/%d/%d, header % x", s.Type, s.State, s.Inode, b[:16])
		}
		if !s.HasQueue && (s.RQueue != 0 || s.WQueue != 0) {
			t.Fatalf("queue %d/%d without HasQueue", s.RQueue, s.WQueue)
		}
		if len(s.Name) > len(b)-16 {
			t.Fatalf("name of %d bytes from %d attribute bytes", len(s.Name), len(b)-16)
		}
		if len(s.Name) > 0 && !bytes.Contains(b[16:], s.Name) {
			t.Fatalf("name %q is not in the message", s.Name)
		}

		var a []byte
		if s.Name != nil {
			a = append(a, attrs(nameAttr(s.Name))...)
		}
		if s.HasQueue {
			a = append(a, attrs(rqlenAttr(s.RQueue, s.WQueue))...)
		}
		re := unixMsg{family: b[0], typ: s.Type, state: s.State, inode: s.Inode}.encode(a)
		s2, err := ParseUnixSocket(re)
		if err != nil {
			t.Fatalf("re-encoded socket does not parse: %v", err)
		}
		if !unixEqual(s2, s) {
			t.Fatalf("round trip\n got %+v\nwant %+v", s2, s)
		}
	})
}

// FuzzParseQueues feeds arbitrary bytes to the sampler's in-place decoders,
// which must agree with the full decoders on every message both accept.
func FuzzParseQueues(f *testing.F) {
	for _, tc := range inetCases() {
		f.Add(tc.msg, false)
	}
	for _, tc := range unixCases() {
		f.Add(tc.msg, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, isUnix bool) {
		if isUnix {
			q, ok, err := ParseUnixQueue(b)
			full, ferr := ParseUnixSocket(b)
			if err != nil || !ok {
				return
			}
			if ferr != nil {
				t.Fatalf("queue decoder accepted what the full one rejects: %v", ferr)
			}
			if q.Inode != full.Inode || q.Length != full.RQueue || q.Limit != full.WQueue || !full.HasQueue {
				t.Fatalf("queue %+v disagrees with socket %+v", q, full)
			}
			return
		}
		q, ok, err := ParseInetQueue(b)
		full, ferr := ParseInetSocket(b)
		if err != nil || !ok || ferr != nil {
			if (err == nil) != (len(b) >= 72) {
				t.Fatalf("%d bytes: err = %v", len(b), err)
			}
			return
		}
		if q.Inode != full.Inode || q.Length != full.RQueue || q.Limit != full.WQueue || q.Cookie != full.Cookie {
			t.Fatalf("queue %+v disagrees with socket %+v", q, full)
		}
	})
}
