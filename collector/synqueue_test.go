package collector

import (
	"encoding/binary"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

// synListener builds a TCP listener as ReadTCPListeners would.
func synListener(local string, inode uint64) Listener {
	ap := netip.MustParseAddrPort(local)
	return Listener{
		Proto:   "tcp",
		Address: FormatInetAddress(ap, ""),
		Port:    strconv.Itoa(int(ap.Port())),
		Local:   ap,
		Inode:   inode,
		Length:  uint32(inode % 3),
		Limit:   511,
	}
}

func synCounts(kv ...any) map[netip.AddrPort]uint32 {
	m := map[netip.AddrPort]uint32{}
	for i := 0; i < len(kv); i += 2 {
		m[netip.MustParseAddrPort(kv[i].(string))] = uint32(kv[i+1].(int))
	}
	return m
}

func TestAttributeSynQueue(t *testing.T) {
	for _, tc := range []struct {
		name      string
		listeners []Listener
		counts    map[netip.AddrPort]uint32
		want      map[uint64]uint32 // SynQueue by inode; every listener listed
	}{
		{
			name:      "exact address beats wildcard",
			listeners: []Listener{synListener("0.0.0.0:80", 10), synListener("127.0.0.1:80", 11)},
			counts:    synCounts("127.0.0.1:80", 3, "10.0.0.5:80", 4),
			want:      map[uint64]uint32{10: 4, 11: 3},
		},
		{
			name:      "exact address beats wildcard whatever the order",
			listeners: []Listener{synListener("127.0.0.1:80", 11), synListener("0.0.0.0:80", 10)},
			counts:    synCounts("127.0.0.1:80", 3),
			want:      map[uint64]uint32{10: 0, 11: 3},
		},
		{
			name:      "loopback request goes to the IPv4 wildcard",
			listeners: []Listener{synListener("0.0.0.0:80", 10)},
			counts:    synCounts("127.0.0.1:80", 5),
			want:      map[uint64]uint32{10: 5},
		},
		{
			name:      "requests to several local addresses add up on the wildcard",
			listeners: []Listener{synListener("0.0.0.0:80", 10)},
			counts:    synCounts("127.0.0.1:80", 1, "10.0.0.1:80", 2, "192.0.2.7:80", 4),
			want:      map[uint64]uint32{10: 7},
		},
		{
			name:      "IPv4 request goes to dual-stack [::] when no IPv4 listener",
			listeners: []Listener{synListener("[::]:80", 12), synListener("0.0.0.0:443", 13)},
			counts:    synCounts("192.0.2.1:80", 2),
			want:      map[uint64]uint32{12: 2, 13: 0},
		},
		{
			name:      "IPv4 request prefers the IPv4 wildcard over [::]",
			listeners: []Listener{synListener("[::]:80", 12), synListener("0.0.0.0:80", 10)},
			counts:    synCounts("192.0.2.1:80", 2, "[2001:db8::1]:80", 3),
			want:      map[uint64]uint32{10: 2, 12: 3},
		},
		{
			name:      "IPv6 loopback request goes to [::]",
			listeners: []Listener{synListener("[::]:80", 12)},
			counts:    synCounts("[::1]:80", 4),
			want:      map[uint64]uint32{12: 4},
		},
		{
			name:      "IPv6 exact address beats [::]",
			listeners: []Listener{synListener("[::]:80", 12), synListener("[::1]:80", 14)},
			counts:    synCounts("[::1]:80", 4, "[2001:db8::1]:80", 1),
			want:      map[uint64]uint32{12: 1, 14: 4},
		},
		{
			name:      "IPv6 request never goes to an IPv4 wildcard",
			listeners: []Listener{synListener("0.0.0.0:80", 10)},
			counts:    synCounts("[::1]:80", 4),
			want:      map[uint64]uint32{10: 0},
		},
		{
			name:      "IPv4-mapped listener address matches the IPv4 request",
			listeners: []Listener{synListener("0.0.0.0:80", 10), synListener("[::ffff:127.0.0.1]:80", 15)},
			counts:    synCounts("127.0.0.1:80", 6),
			want:      map[uint64]uint32{10: 0, 15: 6},
		},
		{
			name:      "IPv4-mapped listener alone",
			listeners: []Listener{synListener("[::ffff:10.1.2.3]:8080", 15)},
			counts:    synCounts("10.1.2.3:8080", 2),
			want:      map[uint64]uint32{15: 2},
		},
		{
			name:      "port with no listener is dropped",
			listeners: []Listener{synListener("0.0.0.0:80", 10), synListener("[::]:80", 12)},
			counts:    synCounts("127.0.0.1:81", 7, "[::1]:81", 8),
			want:      map[uint64]uint32{10: 0, 12: 0},
		},
		{
			name:      "ports are told apart",
			listeners: []Listener{synListener("0.0.0.0:80", 10), synListener("0.0.0.0:8080", 16)},
			counts:    synCounts("127.0.0.1:8080", 3),
			want:      map[uint64]uint32{10: 0, 16: 3},
		},
		{
			name: "reuseport siblings: lowest inode gets the count",
			listeners: []Listener{
				synListener("0.0.0.0:80", 30), synListener("0.0.0.0:80", 20), synListener("0.0.0.0:80", 25),
			},
			counts: synCounts("192.0.2.1:80", 9, "127.0.0.1:80", 1),
			want:   map[uint64]uint32{20: 10, 25: 0, 30: 0},
		},
		{
			name: "reuseport siblings on [::] for an IPv4 request",
			listeners: []Listener{
				synListener("[::]:443", 41), synListener("[::]:443", 40),
			},
			counts: synCounts("192.0.2.1:443", 5),
			want:   map[uint64]uint32{40: 5, 41: 0},
		},
		{
			name:      "no pending handshakes: zero everywhere",
			listeners: []Listener{synListener("0.0.0.0:80", 10), synListener("[::]:443", 12)},
			counts:    map[netip.AddrPort]uint32{},
			want:      map[uint64]uint32{10: 0, 12: 0},
		},
		{
			name:      "no listeners",
			listeners: nil,
			counts:    synCounts("127.0.0.1:80", 1),
			want:      map[uint64]uint32{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.listeners)
			// A previous attribution must not leak into this one.
			for i := range in {
				in[i].SynQueue, in[i].HasSynQueue = 99, true
			}
			before := slices.Clone(in)
			got := AttributeSynQueue(in, tc.counts)

			if !slices.Equal(in, before) {
				t.Errorf("input modified:\n got %+v\nwant %+v", in, before)
			}
			if len(got) != len(in) {
				t.Fatalf("got %d listeners, want %d", len(got), len(in))
			}
			gotBy := map[uint64]uint32{}
			for i, l := range got {
				if !l.HasSynQueue {
					t.Errorf("%s (inode %d): HasSynQueue not set", l.Address, l.Inode)
				}
				// Everything but the SYN queue is the input, in order.
				l.SynQueue, l.HasSynQueue = in[i].SynQueue, in[i].HasSynQueue
				if l != in[i] {
					t.Errorf("listener %d changed beyond SynQueue:\n got %+v\nwant %+v", i, l, in[i])
				}
				gotBy[got[i].Inode] = got[i].SynQueue
			}
			if !maps.Equal(gotBy, tc.want) {
				t.Errorf("SynQueue by inode = %v, want %v", gotBy, tc.want)
			}
		})
	}
}

func TestCountByLocal(t *testing.T) {
	sock := func(local string) sockdiag.InetSocket {
		ap := netip.MustParseAddrPort(local)
		family := uint8(sockdiag.FamilyINet6)
		if ap.Addr().Is4() {
			family = sockdiag.FamilyINet
		}
		return sockdiag.InetSocket{Family: family, State: sockdiag.StateNewSynRecv, Local: ap,
			Remote: netip.MustParseAddrPort("198.51.100.9:40000")}
	}
	for _, tc := range []struct {
		name  string
		socks []sockdiag.InetSocket
		want  map[netip.AddrPort]uint32
	}{
		{"none", nil, map[netip.AddrPort]uint32{}},
		{"one per address", []sockdiag.InetSocket{sock("127.0.0.1:80"), sock("[::1]:80")},
			synCounts("127.0.0.1:80", 1, "[::1]:80", 1)},
		{"same address counted", []sockdiag.InetSocket{sock("10.0.0.1:80"), sock("10.0.0.1:80"), sock("10.0.0.1:443")},
			synCounts("10.0.0.1:80", 2, "10.0.0.1:443", 1)},
		{"IPv4-mapped local addresses are unmapped", []sockdiag.InetSocket{
			sock("127.0.0.1:80"), sock("[::ffff:127.0.0.1]:80"), sock("[::ffff:127.0.0.1]:80"), sock("[::ffff:10.0.0.1]:8080"),
		}, synCounts("127.0.0.1:80", 3, "10.0.0.1:8080", 1)},
		{"IPv6 addresses stay IPv6", []sockdiag.InetSocket{sock("[2001:db8::1]:80"), sock("[::]:80")},
			synCounts("[2001:db8::1]:80", 1, "[::]:80", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := countByLocal(tc.socks)
			// nil means "not counted yet" to synCounter; an empty count
			// must still report zeros.
			if got == nil {
				t.Fatal("countByLocal returned nil")
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("countByLocal = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSynCounterRefresh runs the background count against a fake kernel:
// it asks for SYN_RECV and NEW_SYN_RECV sockets of both families without
// meminfo, and attributes what it found.
func TestSynCounterRefresh(t *testing.T) {
	pending := map[uint8][]sockdiag.InetSocket{
		sockdiag.FamilyINet: {
			{Family: sockdiag.FamilyINet, State: sockdiag.StateNewSynRecv, Local: netip.MustParseAddrPort("127.0.0.1:80"), Remote: netip.MustParseAddrPort("127.0.0.1:50001")},
			{Family: sockdiag.FamilyINet, State: sockdiag.StateNewSynRecv, Local: netip.MustParseAddrPort("127.0.0.1:80"), Remote: netip.MustParseAddrPort("127.0.0.1:50002")},
		},
		sockdiag.FamilyINet6: {
			{Family: sockdiag.FamilyINet6, State: sockdiag.StateNewSynRecv, Local: netip.MustParseAddrPort("[::ffff:127.0.0.1]:80"), Remote: netip.MustParseAddrPort("[::ffff:127.0.0.1]:50003")},
			{Family: sockdiag.FamilyINet6, State: sockdiag.StateNewSynRecv, Local: netip.MustParseAddrPort("[::1]:443"), Remote: netip.MustParseAddrPort("[::1]:50004")},
		},
	}
	var families []uint8
	dial := func() (*sockdiag.Conn, error) {
		c := nltest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) {
			// struct inet_diag_req: family, lengths, ext, id, states.
			req := reqs[0].Data
			families = append(families, req[0])
			if states := binary.NativeEndian.Uint32(req[52:56]); states != 1<<sockdiag.StateSynRecv|1<<sockdiag.StateNewSynRecv {
				t.Errorf("request states = %#x, want SYN_RECV|NEW_SYN_RECV", states)
			}
			if req[3] != 0 {
				t.Errorf("request extensions = %#x, want none (meminfo is not needed to count)", req[3])
			}
			return inetDumpReply(t, reqs[0], fakeInet(reqs[0], pending))
		})
		return sockdiag.NewConn(c), nil
	}
	h := &netns.Handle{Dial: dial}
	sc := newSynCounters(netns.Static{h}, 0, discardLogger())
	ls := []Listener{synListener("0.0.0.0:80", 10), synListener("[::]:443", 12), synListener("0.0.0.0:22", 13)}

	if got := sc.attribute(h, ls); got[0].HasSynQueue {
		t.Errorf("before the first count: HasSynQueue set (%+v); the metric must be absent, not 0", got[0])
	}
	sc.refresh()
	if sc.failing[h] {
		t.Fatal("the count failed")
	}
	if !slices.Equal(families, []uint8{sockdiag.FamilyUnspec}) {
		t.Errorf("dumped families %v, want one dump of both (AF_UNSPEC)", families)
	}
	got := map[uint64]uint32{}
	for _, l := range sc.attribute(h, ls) {
		if !l.HasSynQueue {
			t.Errorf("inode %d: HasSynQueue not set after a count", l.Inode)
		}
		got[l.Inode] = l.SynQueue
	}
	if want := map[uint64]uint32{10: 3, 12: 1, 13: 0}; !maps.Equal(got, want) {
		t.Errorf("SynQueue by inode = %v, want %v", got, want)
	}
}
