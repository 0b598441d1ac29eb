package sockdiag

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// replyFunc builds the kernel's answer to a checked request.
type replyFunc func(t *testing.T, req netlink.Message) ([]netlink.Message, error)

// dialChecked returns a Conn whose fake kernel checks every request (one
// SOCK_DIAG_BY_FAMILY dump request carrying wantBody) and then answers with
// reply. It reports how many requests it saw.
func dialChecked(t *testing.T, wantBody []byte, reply replyFunc) (*Conn, *int) {
	t.Helper()
	var calls int
	nc := nltest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) {
		calls++
		if len(reqs) != 1 {
			t.Errorf("got %d request messages, want 1", len(reqs))
			return nil, errors.New("bad request")
		}
		req := reqs[0]
		if req.Header.Type != 20 {
			t.Errorf("request type = %d, want 20 (SOCK_DIAG_BY_FAMILY)", req.Header.Type)
		}
		if want := netlink.Request | netlink.Dump; req.Header.Flags != want {
			t.Errorf("request flags = %v, want %v", req.Header.Flags, want)
		}
		if !bytes.Equal(req.Data, wantBody) {
			t.Errorf("request body\n got % x\nwant % x", req.Data, wantBody)
		}
		return reply(t, req)
	})
	c := NewConn(nc)
	t.Cleanup(func() { c.Close() })
	return c, &calls
}

// dumpReply answers req with a multi-part dump of bodies, ending with
// NLMSG_DONE, as the kernel does.
func dumpReply(req netlink.Message, bodies ...[]byte) ([]netlink.Message, error) {
	return dumpReplyErrno(req, 0, bodies...)
}

// dumpReplyErrno is dumpReply whose NLMSG_DONE carries errno, which is how
// the kernel reports an error that happens in the middle of a dump.
func dumpReplyErrno(req netlink.Message, errno unix.Errno, bodies ...[]byte) ([]netlink.Message, error) {
	var msgs []netlink.Message
	for _, b := range bodies {
		msgs = append(msgs, netlink.Message{
			Header: netlink.Header{Type: 20, Sequence: req.Header.Sequence, PID: req.Header.PID},
			Data:   b,
		})
	}
	// nltest.Multipart turns the last message into NLMSG_DONE.
	msgs = append(msgs, netlink.Message{
		Header: netlink.Header{Sequence: req.Header.Sequence, PID: req.Header.PID},
		Data:   u32s(uint32(-int32(errno))),
	})
	return nltest.Multipart(msgs)
}

// doneOnly is the kernel's answer to a dump that matched nothing.
func doneOnly(req netlink.Message, multi bool) []netlink.Message {
	h := netlink.Header{Type: netlink.Done, Sequence: req.Header.Sequence, PID: req.Header.PID}
	if multi {
		h.Flags = netlink.Multi
	}
	return []netlink.Message{{Header: h, Data: make([]byte, 4)}}
}

// errorReply is the kernel's NLMSG_ERROR answer to req. nltest.Error copies
// the request's flags into the reply, but for NLMSG_ERROR the bits of
// NLM_F_DUMP mean NLM_F_CAPPED|NLM_F_ACK_TLVS, which the kernel sets only
// with extended acks; clear them as the kernel does.
func errorReply(errno unix.Errno, req netlink.Message) ([]netlink.Message, error) {
	msgs, err := nltest.Error(int(errno), []netlink.Message{req})
	for i := range msgs {
		msgs[i].Header.Flags = 0
	}
	return msgs, err
}

func TestConnInetSockets(t *testing.T) {
	sock1 := inetMsg{family: FamilyINet6, state: StateListen, local: ap("[::]:443"), remote: any6, rqueue: 1, wqueue: 4096, inode: 100}
	sock2 := inetMsg{family: FamilyINet6, state: StateListen, local: ap("[::1]:8080"), remote: any6, ifIndex: 1, wqueue: 128, inode: 101}
	sock3 := inetMsg{family: FamilyINet6, state: StateListen, local: ap("[::ffff:127.0.0.1]:9000"), remote: any6, wqueue: 5, inode: 102}
	want1 := InetSocket{Family: FamilyINet6, State: StateListen, Local: ap("[::]:443"), Remote: any6, RQueue: 1, WQueue: 4096, Inode: 100, Drops: 9, HasDrops: true}
	want2 := InetSocket{Family: FamilyINet6, State: StateListen, Local: ap("[::1]:8080"), Remote: any6, IfIndex: 1, WQueue: 128, Inode: 101}
	want3 := InetSocket{Family: FamilyINet6, State: StateListen, Local: ap("[::ffff:127.0.0.1]:9000"), Remote: any6, WQueue: 5, Inode: 102, HasDrops: true}

	req := InetRequest{Family: FamilyINet6, States: 1 << StateListen, MemInfo: true}
	body := inetReq(10, 0x40, 1<<10)

	tests := []struct {
		name   string
		reply  replyFunc
		want   []InetSocket
		errIs  error
		errSub string
	}{
		{
			name: "multi-part dump",
			reply: func(_ *testing.T, r netlink.Message) ([]netlink.Message, error) {
				return dumpReply(r,
					sock1.encode(attrs(skMemInfo(9, 9))),
					sock2.encode(nil),
					sock3.encode(attrs(skMemInfo(9, 0))),
				)
			},
			want: []InetSocket{want1, want2, want3},
		},
		{
			name: "single socket",
			reply: func(_ *testing.T, r netlink.Message) ([]netlink.Message, error) {
				return dumpReply(r, sock2.encode(nil))
			},
			want: []InetSocket{want2},
		},
		{
			name: "empty dump",
			reply: func(_ *testing.T, r netlink.Message) ([]netlink.Message, error) {
				return doneOnly(r, true), nil
			},
			want: []InetSocket{},
		},
		{
			name: "empty dump, lone NLMSG_DONE without the multi flag",
			reply: func(_ *testing.T, r netlink.Message) ([]netlink.Message, error) {
				return doneOnly(r, false), nil
			},
			want: []InetSocket{},
		},
		{
			name: "netlink error reply",
			reply: func(_ *testing.T, r netlink.Message) ([]netlink.Message, error) {
				return errorReply(unix.ENOENT, r)
			},
			errIs:  unix.ENOENT,
			errSub: "inet_diag dump (family 10)",
		},
		{
			name: "error at the end of the dump",
			reply: func(_ *testing.T, r netlink.Message) ([]netlink.Message, error) {
				return dumpReplyErrno(r, unix.EINTR, sock1.encode(nil), sock2.encode(nil))
			},
			errIs:  unix.EINTR,
			errSub: "inet_diag dump (family 10)",
		},
		{
			name: "receive fails",
			reply: func(_ *testing.T, r netlink.Message) ([]netlink.Message, error) {
				return nil, unix.ENOBUFS
			},
			errIs:  unix.ENOBUFS,
			errSub: "inet_diag dump (family 10)",
		},
		{
			name: "reply too short to decode",
			reply: func(_ *testing.T, r netlink.Message) ([]netlink.Message, error) {
				return dumpReply(r, sock1.encode(nil), sock2.encode(nil)[:40])
			},
			errIs:  ErrShortMessage,
			errSub: "inet_diag_msg",
		},
		{
			name: "reply with malformed attributes",
			reply: func(_ *testing.T, r netlink.Message) ([]netlink.Message, error) {
				return dumpReply(r, append(sock1.encode(nil), 1, 2, 3))
			},
			errSub: "attributes",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, calls := dialChecked(t, body, tt.reply)
			got, err := c.InetSockets(req)
			checkDump(t, "InetSockets", *calls, got, err, tt.want, tt.errIs, tt.errSub, func(a, b InetSocket) bool { return a == b })
		})
	}
}

func TestConnInetSocketsUnsupportedFamily(t *testing.T) {
	c, calls := dialChecked(t, nil, func(t *testing.T, _ netlink.Message) ([]netlink.Message, error) {
		t.Error("request sent for an unsupported family")
		return nil, nil
	})
	got, err := c.InetSockets(InetRequest{Family: FamilyUnix, States: 1 << StateListen})
	if err == nil {
		t.Fatalf("InetSockets() = %+v, want error", got)
	}
	if !strings.Contains(err.Error(), "unsupported address family") {
		t.Errorf("error %q does not say why", err)
	}
	if *calls != 0 {
		t.Errorf("kernel saw %d requests, want 0", *calls)
	}
}

func TestConnUnixSockets(t *testing.T) {
	listener := unixMsg{family: FamilyUnix, typ: SockStream, state: StateListen}
	rq := rqlenAttr

	m1, m2 := listener, listener
	m1.inode, m2.inode = 200, 201
	want := []UnixSocket{
		{Type: SockStream, State: StateListen, Inode: 200, Name: []byte("/run/php/fpm.sock"), RQueue: 512, WQueue: 511, HasQueue: true},
		{Type: SockStream, State: StateListen, Inode: 201, Name: []byte("\x00abstract"), WQueue: 4096, HasQueue: true},
	}
	body := func() []byte {
		b := make([]byte, 24)
		b[0] = 1
		ne.PutUint32(b[4:8], 1<<10)
		ne.PutUint32(b[12:16], 0x11)
		return b
	}()

	tests := []struct {
		name   string
		reply  replyFunc
		want   []UnixSocket
		errIs  error
		errSub string
	}{
		{
			name: "multi-part dump",
			reply: func(_ *testing.T, r netlink.Message) ([]netlink.Message, error) {
				return dumpReply(r,
					m1.encode(attrs(nameAttr("/run/php/fpm.sock"), rq(512, 511))),
					m2.encode(attrs(nameAttr("\x00abstract"), rq(0, 4096))),
				)
			},
			want: want,
		},
		{
			name: "empty dump",
			reply: func(_ *testing.T, r netlink.Message) ([]netlink.Message, error) {
				return doneOnly(r, true), nil
			},
			want: []UnixSocket{},
		},
		{
			name: "empty dump, lone NLMSG_DONE without the multi flag",
			reply: func(_ *testing.T, r netlink.Message) ([]netlink.Message, error) {
				return doneOnly(r, false), nil
			},
			want: []UnixSocket{},
		},
		{
			name: "netlink error reply (unix_diag not loaded)",
			reply: func(_ *testing.T, r netlink.Message) ([]netlink.Message, error) {
				return errorReply(unix.ENOENT, r)
			},
			errIs:  unix.ENOENT,
			errSub: "unix_diag dump",
		},
		{
			name: "short RQLEN in the second socket",
			reply: func(_ *testing.T, r netlink.Message) ([]netlink.Message, error) {
				return dumpReply(r,
					m1.encode(attrs(rq(1, 2))),
					m2.encode(attrs(netlink.Attribute{Type: 4, Data: u32s(1)})),
				)
			},
			errIs:  ErrShortMessage,
			errSub: "UNIX_DIAG_RQLEN",
		},
		{
			name: "reply too short to decode",
			reply: func(_ *testing.T, r netlink.Message) ([]netlink.Message, error) {
				return dumpReply(r, []byte{1, 1, 10})
			},
			errIs:  ErrShortMessage,
			errSub: "unix_diag_msg",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, calls := dialChecked(t, body, tt.reply)
			got, err := c.UnixSockets(UnixRequest{States: 1 << StateListen})
			checkDump(t, "UnixSockets", *calls, got, err, tt.want, tt.errIs, tt.errSub, unixEqual)
		})
	}
}

// checkDump checks one dump's result against a table case: one request
// sent; with errIs or errSub set, an error wrapping errIs and mentioning
// errSub, and no sockets; otherwise exactly want, compared with eq.
func checkDump[S any](t *testing.T, name string, calls int, got []S, err error, want []S, errIs error, errSub string, eq func(a, b S) bool) {
	t.Helper()
	if calls != 1 {
		t.Errorf("kernel saw %d requests, want 1", calls)
	}
	if errIs != nil || errSub != "" {
		if err == nil {
			t.Fatalf("%s() = %+v, want error", name, got)
		}
		if errIs != nil && !errors.Is(err, errIs) {
			t.Errorf("error %q does not wrap %v", err, errIs)
		}
		if !strings.Contains(err.Error(), errSub) {
			t.Errorf("error %q lacks context %q", err, errSub)
		}
		if got != nil {
			t.Errorf("got sockets %+v alongside error", got)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s() error: %v", name, err)
	}
	if got == nil || len(got) != len(want) {
		t.Fatalf("%s() = %+v, want %+v", name, got, want)
	}
	for i := range got {
		if !eq(got[i], want[i]) {
			t.Errorf("socket %d\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// datagram is msgs as the kernel sends them in one datagram: each length
// counts the payload, and padding to 4 bytes follows.
func datagram(t *testing.T, msgs []netlink.Message) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		h := make([]byte, unix.NLMSG_HDRLEN)
		ne.PutUint32(h[0:], uint32(unix.NLMSG_HDRLEN+len(m.Data)))
		ne.PutUint16(h[4:], uint16(m.Header.Type))
		ne.PutUint16(h[6:], uint16(m.Header.Flags))
		ne.PutUint32(h[8:], m.Header.Sequence)
		ne.PutUint32(h[12:], m.Header.PID)
		b = append(append(b, h...), m.Data...)
		b = append(b, make([]byte, -len(b)&3)...)
	}
	return b
}

// TestReplies puts the fake kernel's answers through the parser of the
// real socket's datagrams, which must read them as netlink.Conn does.
func TestReplies(t *testing.T) {
	req := netlink.Message{Header: netlink.Header{Type: 20, Flags: netlink.Request | netlink.Dump, Sequence: 7, PID: 99}}
	must := func(msgs []netlink.Message, err error) []netlink.Message {
		if err != nil {
			t.Fatal(err)
		}
		return msgs
	}
	other := req
	other.Header.Sequence = 8
	otherPID := req
	otherPID.Header.PID = 100
	partial := must(dumpReply(req, []byte("a")))
	for _, tc := range []struct {
		name     string
		msgs     []netlink.Message
		want     []string
		done     bool
		wantErr  error
		eachFail bool
	}{
		{name: "dump", msgs: must(dumpReply(req, []byte("a"), []byte("bcde"), []byte("f"))), want: []string{"a", "bcde", "f"}, done: true},
		{name: "empty dump", msgs: doneOnly(req, true), done: true},
		{name: "empty dump, done without multi", msgs: doneOnly(req, false), done: true},
		{name: "errno in done", msgs: must(dumpReplyErrno(req, unix.EINTR, []byte("a"))), want: []string{"a"}, done: true, wantErr: unix.EINTR},
		{name: "error", msgs: must(errorReply(unix.ENOENT, req)), done: true, wantErr: unix.ENOENT},
		{name: "more to come", msgs: partial[:1], want: []string{"a"}},
		{name: "other request", msgs: must(dumpReply(other, []byte("a"))), done: true, wantErr: errSequence},
		{name: "other socket", msgs: must(dumpReply(otherPID, []byte("a"))), done: true, wantErr: errPID},
		{name: "each fails", msgs: must(dumpReply(req, []byte("a"), []byte("b"))), want: []string{"a"}, done: true, wantErr: errTruncated, eachFail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			done, err := replies(datagram(t, tc.msgs), req.Header, 20, func(data []byte) error {
				got = append(got, string(data))
				if tc.eachFail {
					return errTruncated
				}
				return nil
			})
			if !slices.Equal(got, tc.want) || done != tc.done || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("got %q, done %v, error %v; want %q, done %v, error %v", got, done, err, tc.want, tc.done, tc.wantErr)
			}
		})
	}
	for _, bad := range [][]byte{{1, 2, 3}, datagram(t, partial)[:16]} {
		if done, err := replies(bad, req.Header, 20, func([]byte) error { return nil }); !done || !errors.Is(err, errMalformed) {
			t.Errorf("% x: done %v, error %v; want done and %v", bad, done, err, errMalformed)
		}
	}
}

// TestLastInetCountIsListeners: the size hint counts the last LISTEN-only
// dump; a dump of other states (the background SYN_RECV count) leaves it.
func TestLastInetCountIsListeners(t *testing.T) {
	sock := inetMsg{family: FamilyINet, state: StateListen, local: ap("127.0.0.1:80"), remote: ap("0.0.0.0:0"), inode: 1}
	answers := 2
	nc := nltest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) {
		bodies := make([][]byte, answers)
		for i := range bodies {
			bodies[i] = sock.encode(nil)
		}
		return dumpReply(reqs[0], bodies...)
	})
	c := NewConn(nc)
	defer c.Close()
	if _, err := c.InetSockets(InetRequest{Family: FamilyINet, States: 1 << StateListen}); err != nil {
		t.Fatal(err)
	}
	answers = 5
	if _, err := c.InetSockets(InetRequest{Family: FamilyINet, States: 1<<StateSynRecv | 1<<StateNewSynRecv}); err != nil {
		t.Fatal(err)
	}
	if n := c.LastInetCount(); n != 2 {
		t.Errorf("after a listener dump of 2 and a SYN_RECV dump of 5, LastInetCount = %d, want 2", n)
	}
}
