package sockdiag

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
)

type unixCase struct {
	name    string
	msg     []byte
	want    UnixSocket
	wantErr error // sentinel the error must wrap
	errSub  string
}

// unixCases is shared with FuzzParseUnixSocket as its seed corpus.
func unixCases() []unixCase {
	listener := unixMsg{family: FamilyUnix, typ: SockStream, state: StateListen, inode: 31337, cookie: [2]uint32{5, 6}}
	name := nameAttr[string]
	rqlen := rqlenAttr

	return []unixCase{
		{
			name: "path listener with queue",
			msg:  listener.encode(attrs(name("/run/php/fpm.sock"), rqlen(3, 511))),
			want: UnixSocket{
				Type: SockStream, State: StateListen, Inode: 31337,
				Name:   []byte("/run/php/fpm.sock"),
				RQueue: 3, WQueue: 511, HasQueue: true,
			},
		},
		{
			name: "attributes in reverse order",
			msg:  listener.encode(attrs(rqlen(0, 4096), name("/tmp/x"))),
			want: UnixSocket{
				Type: SockStream, State: StateListen, Inode: 31337,
				Name: []byte("/tmp/x"), WQueue: 4096, HasQueue: true,
			},
		},
		{
			name: "abstract name starts with NUL",
			msg:  listener.encode(attrs(name("\x00listenq-test"), rqlen(129, 128))),
			want: UnixSocket{
				Type: SockStream, State: StateListen, Inode: 31337,
				Name:   []byte("\x00listenq-test"),
				RQueue: 129, WQueue: 128, HasQueue: true,
			},
		},
		{
			name: "raw name keeps trailing NULs",
			msg:  listener.encode(attrs(name("/run/a.sock\x00\x00"))),
			want: UnixSocket{
				Type: SockStream, State: StateListen, Inode: 31337,
				Name: []byte("/run/a.sock\x00\x00"),
			},
		},
		{
			name: "name of odd length (attribute padding is not part of it)",
			msg:  listener.encode(attrs(name("/a"), rqlen(1, 2))),
			want: UnixSocket{
				Type: SockStream, State: StateListen, Inode: 31337,
				Name: []byte("/a"), RQueue: 1, WQueue: 2, HasQueue: true,
			},
		},
		{
			name: "unnamed socket without attributes",
			msg:  unixMsg{family: FamilyUnix, typ: SockDgram, state: 7, inode: 1}.encode(nil),
			want: UnixSocket{Type: SockDgram, State: 7, Inode: 1},
		},
		{
			name: "seqpacket listener, queue only, large values",
			msg:  unixMsg{family: FamilyUnix, typ: SockSeqPacket, state: StateListen, inode: 0xffffffff}.encode(attrs(rqlen(0xffffffff, 0x80000001))),
			want: UnixSocket{
				Type: SockSeqPacket, State: StateListen, Inode: 0xffffffff,
				RQueue: 0xffffffff, WQueue: 0x80000001, HasQueue: true,
			},
		},
		{
			name: "longer RQLEN uses the first two fields",
			msg:  listener.encode(attrs(netlink.Attribute{Type: 4, Data: u32s(8, 9, 10)})),
			want: UnixSocket{
				Type: SockStream, State: StateListen, Inode: 31337,
				RQueue: 8, WQueue: 9, HasQueue: true,
			},
		},
		{
			name: "unknown attributes are ignored",
			msg: listener.encode(attrs(
				netlink.Attribute{Type: 1, Data: u32s(100, 200)}, // UNIX_DIAG_VFS
				netlink.Attribute{Type: 2, Data: u32s(4)},        // UNIX_DIAG_PEER
				name("/run/x.sock"),
				netlink.Attribute{Type: 3, Data: u32s(1, 2, 3)},    // UNIX_DIAG_ICONS
				netlink.Attribute{Type: 5, Data: u32s(0, 0, 0, 0)}, // UNIX_DIAG_MEMINFO
				rqlen(2, 16),
				netlink.Attribute{Type: 6, Data: []byte{3}}, // UNIX_DIAG_SHUTDOWN
				netlink.Attribute{Type: 0x1234},
			)),
			want: UnixSocket{
				Type: SockStream, State: StateListen, Inode: 31337,
				Name: []byte("/run/x.sock"), RQueue: 2, WQueue: 16, HasQueue: true,
			},
		},
		{
			name:    "empty message",
			msg:     []byte{},
			wantErr: ErrShortMessage,
		},
		{
			name:    "one byte short",
			msg:     listener.encode(nil)[:15],
			wantErr: ErrShortMessage,
		},
		{
			name:    "short RQLEN",
			msg:     listener.encode(attrs(name("/x"), netlink.Attribute{Type: 4, Data: u32s(3)})),
			wantErr: ErrShortMessage,
			errSub:  "UNIX_DIAG_RQLEN",
		},
		{
			name:    "empty RQLEN",
			msg:     listener.encode(attrs(netlink.Attribute{Type: 4})),
			wantErr: ErrShortMessage,
			errSub:  "UNIX_DIAG_RQLEN",
		},
		{
			name:   "attribute shorter than its header",
			msg:    append(listener.encode(nil), 0x05, 0x00),
			errSub: "attributes",
		},
		{
			name:   "attribute length beyond the message",
			msg:    append(listener.encode(nil), append(u16(200), append(u16(0), '/', 'x', 0, 0)...)...),
			errSub: "attributes",
		},
		{
			name:   "attribute length below header size",
			msg:    append(listener.encode(nil), append(u16(3), u16(4)...)...),
			errSub: "attributes",
		},
	}
}

func TestParseUnixSocket(t *testing.T) {
	for _, tc := range unixCases() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseUnixSocket(tc.msg)
			if tc.wantErr != nil || tc.errSub != "" {
				if err == nil {
					t.Fatalf("ParseUnixSocket() = %+v, want error", got)
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Errorf("error %q does not wrap %q", err, tc.wantErr)
				}
				if tc.wantErr == nil && errors.Is(err, ErrShortMessage) {
					t.Errorf("error %q wraps ErrShortMessage unexpectedly", err)
				}
				if !strings.Contains(err.Error(), tc.errSub) {
					t.Errorf("error %q does not mention %q", err, tc.errSub)
				}
				if !unixEqual(got, UnixSocket{}) {
					t.Errorf("on error got %+v, want zero UnixSocket", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseUnixSocket() error: %v", err)
			}
			if !unixEqual(got, tc.want) {
				t.Errorf("ParseUnixSocket()\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestParseUnixSocketNameIsACopy checks that the decoded name does not alias
// the message buffer, which a netlink connection may reuse.
func TestParseUnixSocketNameIsACopy(t *testing.T) {
	msg := unixMsg{family: FamilyUnix, typ: SockStream, state: StateListen, inode: 1}.
		encode(attrs(netlink.Attribute{Type: 0, Data: []byte("/run/a.sock")}))
	s, err := ParseUnixSocket(msg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range msg {
		msg[i] = 0xff
	}
	if string(s.Name) != "/run/a.sock" {
		t.Errorf("Name changed with the message buffer: %q", s.Name)
	}
}

func TestUnixRequestMarshalBinary(t *testing.T) {
	// struct unix_diag_req: 0 family, 1 protocol, 2 pad[2], 4 states,
	// 8 ino, 12 show, 16 cookie[2].
	want := func(states uint32) []byte {
		b := make([]byte, 24)
		b[0] = 1
		ne.PutUint32(b[4:8], states)
		ne.PutUint32(b[12:16], 0x01|0x10)
		return b
	}
	tests := []struct {
		name string
		req  UnixRequest
		want []byte
	}{
		{"listeners", UnixRequest{States: 1 << StateListen}, want(1 << 10)},
		{"all states", UnixRequest{States: 0xffffffff}, want(0xffffffff)},
		{"no states", UnixRequest{}, want(0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.req.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary() error: %v", err)
			}
			if len(got) != 24 {
				t.Errorf("len = %d, want 24", len(got))
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("MarshalBinary()\n got % x\nwant % x", got, tt.want)
			}
			if show := ne.Uint32(got[12:16]); show != 0x11 {
				t.Errorf("udiag_show = %#x, want UDIAG_SHOW_NAME|UDIAG_SHOW_RQLEN (0x11)", show)
			}
		})
	}
}
