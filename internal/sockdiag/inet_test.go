package sockdiag

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
)

var (
	ap = netip.MustParseAddrPort

	any4 = ap("0.0.0.0:0")
	any6 = ap("[::]:0")
)

type inetCase struct {
	name string
	msg  []byte
	want InetSocket
	// wantErr, when set, is a sentinel the error must wrap; errSub a
	// substring of its text. Either marks a case that must fail.
	wantErr error
	errSub  string
}

// inetCases is shared with FuzzParseInetSocket as its seed corpus.
func inetCases() []inetCase {
	listen4 := inetMsg{
		family: FamilyINet, state: StateListen,
		local: ap("0.0.0.0:80"), remote: any4,
		cookie: [2]uint32{0xdeadbeef, 0x1}, rqueue: 3, wqueue: 511, uid: 33, inode: 12345,
	}
	want4 := InetSocket{
		Family: FamilyINet, State: StateListen,
		Local: ap("0.0.0.0:80"), Remote: any4,
		RQueue: 3, WQueue: 511, UID: 33, Inode: 12345, Cookie: 0x1deadbeef,
	}
	withDrops := func(s InetSocket, d uint32) InetSocket {
		s.Drops, s.HasDrops = d, true
		return s
	}
	short := listen4.encode(nil)

	return []inetCase{
		{
			name: "ipv4 listener without attributes",
			msg:  listen4.encode(nil),
			want: want4,
		},
		{
			name: "ipv4 loopback listener, high port and large values",
			msg: inetMsg{
				family: FamilyINet, state: StateListen,
				local: ap("127.0.0.1:65535"), remote: any4,
				rqueue: 0xfffffffe, wqueue: 0x80000000, uid: 0xfffffffe, inode: 0xffffffff,
			}.encode(nil),
			want: InetSocket{
				Family: FamilyINet, State: StateListen,
				Local: ap("127.0.0.1:65535"), Remote: any4,
				RQueue: 0xfffffffe, WQueue: 0x80000000, UID: 0xfffffffe, Inode: 0xffffffff,
			},
		},
		{
			name: "ipv4 uses only the first four address bytes",
			msg: inetMsg{
				family: FamilyINet, state: StateListen,
				local:    ap("10.1.2.3:8080"),
				localRaw: []byte{10, 1, 2, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
				remote:   any4, remoteRaw: bytes.Repeat([]byte{0}, 4),
				wqueue: 4096, inode: 7,
			}.encode(nil),
			want: InetSocket{
				Family: FamilyINet, State: StateListen,
				Local: ap("10.1.2.3:8080"), Remote: any4, WQueue: 4096, Inode: 7,
			},
		},
		{
			name: "ipv4 with SK_MEMINFO drops",
			msg:  listen4.encode(attrs(skMemInfo(9, 42))),
			want: withDrops(want4, 42),
		},
		{
			name: "SK_MEMINFO with more fields than known (newer kernel)",
			msg:  listen4.encode(attrs(skMemInfo(12, 7))),
			want: withDrops(want4, 7),
		},
		{
			name: "SK_MEMINFO with zero drops still reports the counter",
			msg:  listen4.encode(attrs(skMemInfo(9, 0))),
			want: withDrops(want4, 0),
		},
		{
			name: "SK_MEMINFO too short: older kernel without drops",
			msg:  listen4.encode(attrs(skMemInfo(8, 0))),
			want: want4,
		},
		{
			name: "SK_MEMINFO empty",
			msg:  listen4.encode(attrs(netlink.Attribute{Type: 7})),
			want: want4,
		},
		{
			name: "SK_MEMINFO of odd length covering drops",
			msg:  listen4.encode(attrs(netlink.Attribute{Type: 7, Data: append(u32s(0, 1, 2, 3, 4, 5, 6, 7, 99), 0xaa, 0xbb)})),
			want: withDrops(want4, 99),
		},
		{
			name: "unknown attributes are ignored",
			msg: listen4.encode(attrs(
				netlink.Attribute{Type: 2, Data: bytes.Repeat([]byte{0xee}, 232)}, // INET_DIAG_INFO
				netlink.Attribute{Type: 4, Data: []byte("cubic\x00")},             // INET_DIAG_CONG
				skMemInfo(9, 5),
				netlink.Attribute{Type: 5, Data: []byte{0}},                      // INET_DIAG_TOS
				netlink.Attribute{Type: 0x7fff, Data: u32s(1, 2)},                // unknown type
				netlink.Attribute{Type: 3, Data: bytes.Repeat([]byte{0xdd}, 64)}, // INET_DIAG_VEGASINFO-sized, after SKMEMINFO
			)),
			want: withDrops(want4, 5),
		},
		{
			name: "only unknown attributes",
			msg: listen4.encode(attrs(
				netlink.Attribute{Type: 1, Data: u32s(1, 2, 3, 4)},                // INET_DIAG_MEMINFO
				netlink.Attribute{Type: 2, Data: bytes.Repeat([]byte{0xee}, 232)}, // INET_DIAG_INFO
			)),
			want: want4,
		},
		{
			name: "ipv6 wildcard listener",
			msg: inetMsg{
				family: FamilyINet6, state: StateListen,
				local: ap("[::]:443"), remote: any6,
				rqueue: 0, wqueue: 4096, inode: 999,
			}.encode(attrs(skMemInfo(9, 1))),
			want: InetSocket{
				Family: FamilyINet6, State: StateListen,
				Local: ap("[::]:443"), Remote: any6,
				WQueue: 4096, Inode: 999, Drops: 1, HasDrops: true,
			},
		},
		{
			name: "ipv6 request socket with remote address",
			msg: inetMsg{
				family: FamilyINet6, state: StateNewSynRecv, timer: 1, retrans: 2,
				local: ap("[2001:db8::1]:443"), remote: ap("[2001:db8::2]:51234"),
				expires: 900,
			}.encode(nil),
			want: InetSocket{
				Family: FamilyINet6, State: StateNewSynRecv,
				Local: ap("[2001:db8::1]:443"), Remote: ap("[2001:db8::2]:51234"),
			},
		},
		{
			name: "ipv4-mapped ipv6 address stays ipv6",
			msg: inetMsg{
				family: FamilyINet6, state: StateListen,
				local: ap("[::ffff:127.0.0.1]:8080"), remote: any6,
				wqueue: 128, inode: 4242,
			}.encode(nil),
			want: InetSocket{
				Family: FamilyINet6, State: StateListen,
				Local: ap("[::ffff:127.0.0.1]:8080"), Remote: any6,
				WQueue: 128, Inode: 4242,
			},
		},
		{
			name: "listener bound to an interface",
			msg: inetMsg{
				family: FamilyINet6, state: StateListen,
				local: ap("[fe80::1]:9100"), remote: any6,
				ifIndex: 3, wqueue: 511, inode: 77,
			}.encode(nil),
			want: InetSocket{
				Family: FamilyINet6, State: StateListen,
				Local: ap("[fe80::1]:9100"), Remote: any6,
				IfIndex: 3, WQueue: 511, Inode: 77,
			},
		},
		{
			name: "ipv4 listener bound to an interface",
			msg: inetMsg{
				family: FamilyINet, state: StateListen,
				local: ap("192.0.2.1:53"), remote: any4,
				ifIndex: 0x01020304, inode: 78,
			}.encode(nil),
			want: InetSocket{
				Family: FamilyINet, State: StateListen,
				Local: ap("192.0.2.1:53"), Remote: any4,
				IfIndex: 0x01020304, Inode: 78,
			},
		},
		{
			name:    "empty message",
			msg:     []byte{},
			wantErr: ErrShortMessage,
		},
		{
			name:    "nil message",
			msg:     nil,
			wantErr: ErrShortMessage,
		},
		{
			name:    "one byte short",
			msg:     short[:71],
			wantErr: ErrShortMessage,
		},
		{
			name:   "unexpected address family",
			msg:    inetMsg{family: FamilyUnix, state: StateListen}.encode(nil),
			errSub: "family 1",
		},
		{
			name:   "attribute shorter than its header",
			msg:    append(listen4.encode(nil), 0x08, 0x00, 0x07),
			errSub: "attributes",
		},
		{
			name:   "attribute length beyond the message",
			msg:    append(listen4.encode(nil), append(u16(64), append(u16(7), u32s(1, 2)...)...)...),
			errSub: "attributes",
		},
		{
			name:   "attribute length below header size",
			msg:    append(listen4.encode(nil), append(u16(2), u16(7)...)...),
			errSub: "attributes",
		},
		{
			name:   "valid attribute followed by garbage",
			msg:    append(listen4.encode(attrs(skMemInfo(9, 3))), 0x01),
			errSub: "attributes",
		},
	}
}

func u16(v uint16) []byte {
	b := make([]byte, 2)
	ne.PutUint16(b, v)
	return b
}

func TestParseInetSocket(t *testing.T) {
	for _, tc := range inetCases() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseInetSocket(tc.msg)
			if tc.wantErr != nil || tc.errSub != "" {
				if err == nil {
					t.Fatalf("ParseInetSocket() = %+v, want error", got)
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Errorf("error %q does not wrap %q", err, tc.wantErr)
				}
				if tc.wantErr == nil && errors.Is(err, ErrShortMessage) {
					t.Errorf("error %q wraps ErrShortMessage, but the message is long enough", err)
				}
				if !strings.Contains(err.Error(), tc.errSub) {
					t.Errorf("error %q does not mention %q", err, tc.errSub)
				}
				if got != (InetSocket{}) {
					t.Errorf("on error got %+v, want zero InetSocket", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseInetSocket() error: %v", err)
			}
			if got != tc.want {
				t.Errorf("ParseInetSocket()\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestParseInetSocketAddressKinds pins the netip representation collectors
// format labels from: AF_INET gives a 4-byte address, AF_INET6 a 16-byte one
// even when it is IPv4-mapped (ss prints [::ffff:127.0.0.1]:8080).
func TestParseInetSocketAddressKinds(t *testing.T) {
	tests := []struct {
		name        string
		msg         inetMsg
		is4, is4in6 bool
		str         string
	}{
		{"ipv4", inetMsg{family: FamilyINet, local: ap("127.0.0.1:80")}, true, false, "127.0.0.1:80"},
		{"ipv6", inetMsg{family: FamilyINet6, local: ap("[::1]:80")}, false, false, "[::1]:80"},
		{"ipv4-mapped", inetMsg{family: FamilyINet6, local: ap("[::ffff:10.0.0.1]:80")}, false, true, "[::ffff:10.0.0.1]:80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.msg.state = StateListen
			s, err := ParseInetSocket(tt.msg.encode(nil))
			if err != nil {
				t.Fatal(err)
			}
			a := s.Local.Addr()
			if a.Is4() != tt.is4 || a.Is4In6() != tt.is4in6 {
				t.Errorf("%v: Is4()=%v Is4In6()=%v, want %v %v", a, a.Is4(), a.Is4In6(), tt.is4, tt.is4in6)
			}
			if got := s.Local.String(); got != tt.str {
				t.Errorf("Local = %q, want %q", got, tt.str)
			}
		})
	}
}

// inetReq builds the expected struct inet_diag_req_v2 by hand:
// 0 family, 1 protocol, 2 idiag_ext, 3 pad, 4 states, 8 sockid[48].
func inetReq(family, ext uint8, states uint32) []byte {
	b := make([]byte, 56)
	b[0], b[1], b[2] = family, 6, ext
	ne.PutUint32(b[4:8], states)
	return b
}

func TestInetRequestMarshalBinary(t *testing.T) {
	tests := []struct {
		name string
		req  InetRequest
		want []byte
	}{
		{
			name: "ipv4 listeners with meminfo",
			req:  InetRequest{Family: FamilyINet, States: 1 << StateListen, MemInfo: true},
			want: inetReq(2, 1<<(7-1), 1<<10),
		},
		{
			name: "ipv6 listeners without meminfo",
			req:  InetRequest{Family: FamilyINet6, States: 1 << StateListen},
			want: inetReq(10, 0, 1<<10),
		},
		{
			name: "ipv6 syn queue",
			req:  InetRequest{Family: FamilyINet6, States: 1<<StateSynRecv | 1<<StateNewSynRecv, MemInfo: true},
			want: inetReq(10, 0x40, 1<<3|1<<12),
		},
		{
			name: "all states",
			req:  InetRequest{Family: FamilyINet, States: 0xffffffff},
			want: inetReq(2, 0, 0xffffffff),
		},
		{
			name: "no states",
			req:  InetRequest{Family: FamilyINet},
			want: inetReq(2, 0, 0),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.req.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary() error: %v", err)
			}
			if len(got) != 56 {
				t.Errorf("len = %d, want 56", len(got))
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("MarshalBinary()\n got % x\nwant % x", got, tt.want)
			}
		})
	}
}

// TestInetRequestCompat: AF_UNSPEC becomes the original struct
// inet_diag_req (TCPDIAG_GETSOCK), which dumps both IP families at once.
func TestInetRequestCompat(t *testing.T) {
	r := InetRequest{Family: FamilyUnspec, States: 1 << StateListen, MemInfo: true}
	got, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 60)
	want[3] = 1 << (7 - 1) // idiag_ext: INET_DIAG_SKMEMINFO
	binary.NativeEndian.PutUint32(want[52:56], 1<<StateListen)
	if !bytes.Equal(got, want) {
		t.Errorf("MarshalBinary()\n got % x\nwant % x", got, want)
	}
	if typ := r.messageType(); typ != 18 {
		t.Errorf("message type %d, want TCPDIAG_GETSOCK (18)", typ)
	}
	if typ := (InetRequest{Family: FamilyINet}).messageType(); typ != 20 {
		t.Errorf("message type %d, want SOCK_DIAG_BY_FAMILY (20)", typ)
	}
}

func TestInetRequestMarshalBinaryUnsupportedFamily(t *testing.T) {
	for _, family := range []uint8{FamilyUnix, 3, 16, 255} {
		got, err := InetRequest{Family: family, States: 1 << StateListen}.MarshalBinary()
		if err == nil {
			t.Errorf("family %d: MarshalBinary() = % x, want error", family, got)
			continue
		}
		if got != nil {
			t.Errorf("family %d: got % x alongside error", family, got)
		}
		if !strings.Contains(err.Error(), "unsupported address family") {
			t.Errorf("family %d: error %q does not say why", family, err)
		}
	}
}
