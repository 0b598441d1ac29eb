package collector

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

func TestFormatUnixName(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []byte
		want string
	}{
		{"plain path", []byte("/run/php/fpm.sock"), "/run/php/fpm.sock"},
		{"path with trailing NULs", []byte("/run/php/fpm.sock\x00\x00\x00"), "/run/php/fpm.sock"},
		{"path with a space", []byte("/run/my app.sock"), "/run/my app.sock"},
		{"abstract", []byte("\x00listenq"), "@listenq"},
		{"abstract with trailing NULs", []byte("\x00listenq\x00\x00\x00\x00"), "@listenq"},
		{"abstract with a NUL inside", []byte("\x00a\x00b"), `@a\x00b`},
		{"empty", []byte{}, ""},
		{"nil", nil, ""},
		{"lone NUL", []byte("\x00"), "@"},
		{"abstract of NULs only", []byte("\x00\x00\x00"), "@"},
		{"control byte", []byte("/tmp/a\x01b"), `/tmp/a\x01b`},
		{"newline", []byte("/tmp/a\nb"), `/tmp/a\x0ab`},
		{"DEL", []byte("/tmp/\x7f"), `/tmp/\x7f`},
		{"invalid UTF-8", []byte("/tmp/\xff.sock"), `/tmp/\xff.sock`},
		{"truncated UTF-8 sequence", []byte("/tmp/\xe2\x82"), `/tmp/\xe2\x82`},
		{"backslash", []byte(`/tmp/a\b`), `/tmp/a\x5cb`},
		{"escape lookalike stays unambiguous", []byte(`/tmp/\x01`), `/tmp/\x5cx01`},
		{"valid non-ASCII UTF-8 kept", []byte("/run/é.sock"), "/run/é.sock"},
		{"abstract non-ASCII kept", []byte("\x00日本"), "@日本"},
		{"non-printable rune escaped byte-wise", []byte("/tmp/\u00a0"), `/tmp/\xc2\xa0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := FormatUnixName(tc.raw)
			if got != tc.want {
				t.Errorf("FormatUnixName(%q) = %q, want %q", tc.raw, got, tc.want)
			}
			for _, r := range got {
				if r < 0x20 || r == 0x7f {
					t.Errorf("FormatUnixName(%q) = %q carries control character %#x", tc.raw, got, r)
				}
			}
		})
	}
}

// unixSock is a listening unix socket record as the kernel sends it.
func unixSock(typ uint8, inode uint32, name string, rq, wq uint32) sockdiag.UnixSocket {
	s := sockdiag.UnixSocket{Type: typ, State: sockdiag.StateListen, Inode: inode, RQueue: rq, WQueue: wq, HasQueue: true}
	if name != "" {
		s.Name = []byte(name)
	}
	return s
}

// unixDumps counts the unix_diag dumps a fake kernel answered, by kind.
type unixDumps struct {
	full       atomic.Int32 // names and queues: scrapes
	queuesOnly atomic.Int32 // queues without names: sampler rounds
}

// fakeUnixDial answers unix_diag dumps with socks, checking the request and
// leaving out the names when the request does not ask for them; dumps
// (optional) counts the dumps.
func fakeUnixDial(t *testing.T, socks []sockdiag.UnixSocket, dumps *unixDumps) func() (*sockdiag.Conn, error) {
	return func() (*sockdiag.Conn, error) {
		c := nltest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) {
			return unixDumpReply(t, reqs[0], socks, dumps)
		})
		return sockdiag.NewConn(c), nil
	}
}

// unixDumpReply is the fake kernel's answer to the unix_diag dump request
// req, after checking it.
func unixDumpReply(t *testing.T, req netlink.Message, socks []sockdiag.UnixSocket, dumps *unixDumps) ([]netlink.Message, error) {
	const showName, showRQLen = 0x01, 0x10 // UDIAG_SHOW_NAME, UDIAG_SHOW_RQLEN
	if req.Header.Type != 20 || req.Header.Flags&netlink.Dump == 0 {
		t.Errorf("request header %+v, want a SOCK_DIAG_BY_FAMILY dump", req.Header)
	}
	ne := binary.NativeEndian
	if len(req.Data) != 24 || req.Data[0] != sockdiag.FamilyUnix {
		t.Errorf("request %x, want a 24-byte AF_UNIX unix_diag_req", req.Data)
		return nil, errors.New("bad request")
	}
	if states := ne.Uint32(req.Data[4:8]); states != 1<<sockdiag.StateListen {
		t.Errorf("request states %#x, want LISTEN only", states)
	}
	show := ne.Uint32(req.Data[12:16])
	switch show {
	case showName | showRQLen:
		if dumps != nil {
			dumps.full.Add(1)
		}
	case showRQLen:
		if dumps != nil {
			dumps.queuesOnly.Add(1)
		}
	default:
		t.Errorf("request show flags %#x, want UDIAG_SHOW_RQLEN with or without UDIAG_SHOW_NAME", show)
	}
	// Every part of a dump is NLM_F_MULTI and it ends with
	// NLMSG_DONE, also when it matched nothing (nltest.Multipart
	// leaves a lone message untouched, so it is not used here).
	hdr := netlink.Header{Type: 20, Flags: netlink.Multi, Sequence: req.Header.Sequence, PID: nltest.PID}
	var msgs []netlink.Message
	for _, s := range socks {
		if show&showName == 0 {
			s.Name = nil
		}
		b, err := s.MarshalBinary()
		if err != nil {
			t.Error(err)
			return nil, err
		}
		msgs = append(msgs, netlink.Message{Header: hdr, Data: b})
	}
	done := hdr
	done.Type = netlink.Done
	return append(msgs, netlink.Message{Header: done, Data: make([]byte, 4)}), nil
}

func TestReadUnixListeners(t *testing.T) {
	noQueue := unixSock(sockdiag.SockStream, 7, "/run/broken.sock", 0, 0)
	noQueue.HasQueue = false
	dgramNoQueue := unixSock(sockdiag.SockDgram, 8, "/dev/log", 0, 0)
	dgramNoQueue.HasQueue = false
	for _, tc := range []struct {
		name    string
		socks   []sockdiag.UnixSocket
		want    []Listener
		wantErr string
	}{
		{
			name: "stream and seqpacket kept, dgram and unnamed skipped",
			socks: []sockdiag.UnixSocket{
				unixSock(sockdiag.SockStream, 101, "/run/php/fpm.sock\x00", 3, 511),
				unixSock(sockdiag.SockDgram, 102, "/dev/log", 0, 0),
				unixSock(sockdiag.SockSeqPacket, 103, "\x00listenq-seq", 2, 1),
				unixSock(sockdiag.SockStream, 104, "", 0, 128), // unnamed
				unixSock(sockdiag.SockStream, 105, "\x00", 0, 5),
				unixSock(sockdiag.SockStream, 106, "/tmp/\x01x", 0, 5),
			},
			want: []Listener{
				{Proto: "unix", Address: "/run/php/fpm.sock", Inode: 101, Length: 3, Limit: 511},
				{Proto: "unix", Address: "@listenq-seq", Inode: 103, Length: 2, Limit: 1},
				{Proto: "unix", Address: "@", Inode: 105, Length: 0, Limit: 5},
				{Proto: "unix", Address: `/tmp/\x01x`, Inode: 106, Length: 0, Limit: 5},
			},
		},
		{
			name:  "no listeners",
			socks: nil,
			want:  []Listener{},
		},
		{
			name:    "a listener without RQLEN is an error",
			socks:   []sockdiag.UnixSocket{unixSock(sockdiag.SockStream, 1, "/run/a.sock", 0, 5), noQueue},
			wantErr: "socket 7 has no queue lengths",
		},
		{
			name:  "a dgram socket without RQLEN is skipped before it is checked",
			socks: []sockdiag.UnixSocket{dgramNoQueue, unixSock(sockdiag.SockStream, 9, "/run/a.sock", 1, 5)},
			want:  []Listener{{Proto: "unix", Address: "/run/a.sock", Inode: 9, Length: 1, Limit: 5}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadUnixListeners(&netns.Handle{Dial: fakeUnixDial(t, tc.socks, nil)})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q (listeners %+v)", err, tc.wantErr, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got == nil || !slices.Equal(got, tc.want) {
				t.Errorf("listeners:\n got %+v\nwant %+v", got, tc.want)
			}
			for _, l := range got {
				if l.Port != "" || l.HasDrops || l.Local.IsValid() {
					t.Errorf("%s: unix listener with TCP fields: %+v", l.Address, l)
				}
			}
		})
	}
}

func TestReadUnixListenersErrors(t *testing.T) {
	dialErr := errors.New("operation not permitted")
	for _, tc := range []struct {
		name string
		dial func() (*sockdiag.Conn, error)
		want error
	}{
		{"dial fails", func() (*sockdiag.Conn, error) { return nil, dialErr }, dialErr},
		{"kernel refuses the dump", func() (*sockdiag.Conn, error) {
			return sockdiag.NewConn(nltest.Dial(func([]netlink.Message) ([]netlink.Message, error) {
				return nil, syscall.EPERM
			})), nil
		}, syscall.EPERM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls, err := ReadUnixListeners(&netns.Handle{Dial: tc.dial})
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if ls != nil {
				t.Errorf("listeners %+v returned with an error", ls)
			}
		})
	}
}

// fakeUnixListeners: fpm.sock is held by nginx (pid 4242 holds socket 1001
// in the fixture) and is reported twice (dumps are not atomic); an abstract
// seqpacket listener owned by nobody is full; a dgram socket and an unnamed
// listener are not exported.
var fakeUnixListeners = []sockdiag.UnixSocket{
	unixSock(sockdiag.SockStream, 1001, "/run/php/fpm.sock", 3, 511),
	unixSock(sockdiag.SockSeqPacket, 5002, "\x00listenq-seq\x00\x00", 2, 1),
	unixSock(sockdiag.SockDgram, 5003, "/dev/log", 0, 0),
	unixSock(sockdiag.SockStream, 5004, "", 0, 128),
	unixSock(sockdiag.SockStream, 1001, "/run/php/fpm.sock", 3, 511),
}

func TestUnixCollectorFakeKernel(t *testing.T) {
	reg := newFakeRegistry(t, fixture(t, fixtureNetstat), fakeUnixDial(t, fakeUnixListeners, nil), nil, "unix")
	got := gather(t, reg)

	if v := one(t, got, "listenq_scrape_collector_success", map[string]string{"collector": "unix"}).value; v != 1 {
		t.Errorf("unix collector success = %v, want 1", v)
	}
	for _, tc := range []struct {
		labels        map[string]string
		length, limit float64
	}{
		{map[string]string{"netns": "", "proto": "unix", "listener": "/run/php/fpm.sock", "port": "", "process": "nginx", "inode": "1001"}, 3, 511},
		{map[string]string{"netns": "", "proto": "unix", "listener": "@listenq-seq", "port": "", "process": "", "inode": "5002"}, 2, 1},
	} {
		if v := one(t, got, "listenq_queue_length", tc.labels).value; v != tc.length {
			t.Errorf("queue length %v = %v, want %v", tc.labels, v, tc.length)
		}
		if v := one(t, got, "listenq_queue_limit", tc.labels).value; v != tc.limit {
			t.Errorf("queue limit %v = %v, want %v", tc.labels, v, tc.limit)
		}
	}
	for name, want := range map[string]int{
		"listenq_queue_length":      2, // no dgram, no unnamed, no duplicate
		"listenq_queue_limit":       2,
		"listenq_drops_total":       0, // the kernel keeps no drop counter for unix listeners
		"listenq_queue_peak_length": 0, // sampler off
		"listenq_syn_queue_length":  0,
		"listenq_listeners_omitted": 3, // reasons filter, cap, owner_pending
	} {
		if n := len(got[name]); n != want {
			t.Errorf("%s: %d series, want %d: %v", name, n, want, got[name])
		}
	}
	for _, s := range got["listenq_listeners_omitted"] {
		if s.labels["proto"] != "unix" || s.value != 0 {
			t.Errorf("listeners_omitted %v = %v, want proto unix and 0", s.labels, s.value)
		}
	}
}

func TestUnixCollectorFakeKernelFailure(t *testing.T) {
	noQueue := unixSock(sockdiag.SockStream, 1001, "/run/php/fpm.sock", 0, 0)
	noQueue.HasQueue = false
	reg := newFakeRegistry(t, fixture(t, fixtureNetstat), fakeUnixDial(t, []sockdiag.UnixSocket{noQueue}, nil), nil, "unix")
	got := gather(t, reg)
	if v := one(t, got, "listenq_scrape_collector_success", map[string]string{"collector": "unix"}).value; v != 0 {
		t.Errorf("unix collector success = %v, want 0", v)
	}
	if n := len(got["listenq_queue_length"]); n != 0 {
		t.Errorf("failed dump still exported %d queue lengths", n)
	}
}

// TestSameUnixName: sameUnixName may say yes only where FormatUnixName
// gives that very name, and does for the usual names.
func TestSameUnixName(t *testing.T) {
	for _, raw := range []string{"/run/php/fpm.sock", "/run/php/fpm.sock\x00\x00", "\x00listenq", "\x00listenq\x00",
		"@relative", "relative.sock", "/run/my app.sock"} {
		if name := FormatUnixName([]byte(raw)); !sameUnixName([]byte(raw), name) {
			t.Errorf("sameUnixName(%q, %q) = false, want true", raw, name)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	pieces := []string{"", "\x00", "@", "/", "a", `\`, "\n", "\xff", "é", "x00", `\x00`, "run"}
	build := func() string {
		var sb strings.Builder
		for range rng.IntN(5) {
			sb.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return sb.String()
	}
	for range 20000 {
		raw := []byte(build())
		name := build()
		if rng.IntN(2) == 0 {
			name = FormatUnixName(raw)
		}
		if sameUnixName(raw, name) && FormatUnixName(raw) != name {
			t.Fatalf("sameUnixName(%q, %q) = true, but FormatUnixName gives %q", raw, name, FormatUnixName(raw))
		}
	}
}

// TestReadUnixListenersKeepsKnownNames: a listener whose name is the one
// it was exported with gets that string, not a new copy; a changed name
// (a reused inode) gets its own.
func TestReadUnixListenersKeepsKnownNames(t *testing.T) {
	socks := []sockdiag.UnixSocket{
		unixSock(sockdiag.SockStream, 1, "/run/php/fpm.sock", 0, 5),
		unixSock(sockdiag.SockStream, 2, "\x00abstract", 0, 5),
		unixSock(sockdiag.SockStream, 3, "/run/new.sock", 0, 5),
	}
	known := map[uint64]string{1: strings.Clone("/run/php/fpm.sock"), 2: strings.Clone("@abstract"), 3: "/run/old.sock"}
	got, err := readUnixListeners(&netns.Handle{Dial: fakeUnixDial(t, socks, nil)}, func(ino uint64) string { return known[ino] })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d listeners, want 3: %+v", len(got), got)
	}
	for _, l := range got[:2] {
		if unsafe.StringData(l.Address) != unsafe.StringData(known[l.Inode]) {
			t.Errorf("inode %d: %q is a new string, want the known one", l.Inode, l.Address)
		}
	}
	if got[2].Address != "/run/new.sock" {
		t.Errorf("inode 3 (reused): address %q, want /run/new.sock", got[2].Address)
	}
}
