package collector

import (
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

// TestFormatInetAddress holds the one-allocation printer to the plain one
// (netip's String, brackets, zone, port) over random addresses.
func TestFormatInetAddress(t *testing.T) {
	plain := func(ap netip.AddrPort, ifname string) string {
		host := ap.Addr().String()
		if ap.Addr().Is6() {
			host = "[" + host + "]"
		}
		if ifname != "" {
			host += "%" + ifname
		}
		return host + ":" + strconv.Itoa(int(ap.Port()))
	}
	for _, tc := range []struct {
		ap     string
		ifname string
		want   string
	}{
		{"0.0.0.0:80", "", "0.0.0.0:80"},
		{"[::]:443", "", "[::]:443"},
		{"127.0.0.1:8080", "lo", "127.0.0.1%lo:8080"},
		{"[::ffff:10.0.0.1]:0", "", "[::ffff:10.0.0.1]:0"},
		{"[fe80::1]:65535", "eth0", "[fe80::1]%eth0:65535"},
	} {
		if got := FormatInetAddress(netip.MustParseAddrPort(tc.ap), tc.ifname); got != tc.want {
			t.Errorf("FormatInetAddress(%s, %q) = %q, want %q", tc.ap, tc.ifname, got, tc.want)
		}
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for range 10000 {
		var a netip.Addr
		switch rng.IntN(3) {
		case 0:
			a = netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
		case 1:
			var b [16]byte
			for i := range b {
				if rng.IntN(3) > 0 {
					b[i] = byte(rng.Uint32())
				}
			}
			a = netip.AddrFrom16(b)
		default:
			a = netip.AddrFrom16(netip.AddrFrom4([4]byte{10, byte(rng.Uint32()), 0, 1}).As16())
		}
		ap := netip.AddrPortFrom(a, uint16(rng.Uint32()))
		ifname := []string{"", "lo", "eth0"}[rng.IntN(3)]
		if got, want := FormatInetAddress(ap, ifname), plain(ap, ifname); got != want {
			t.Fatalf("FormatInetAddress(%v, %q) = %q, want %q", ap, ifname, got, want)
		}
		l := tcpListener(&sockdiag.InetSocket{Local: ap}, FormatInetAddress(ap, ifname))
		if l.Port != strconv.Itoa(int(ap.Port())) {
			t.Fatalf("port of %v: %q", ap, l.Port)
		}
	}
}

// TestReadTCPListenersKeepsKnownAddresses: a listener whose address is the
// one it was exported with gets that string, not a new copy; another
// address (a reused inode) gets its own.
func TestReadTCPListenersKeepsKnownAddresses(t *testing.T) {
	known := map[uint64]string{1001: strings.Clone("0.0.0.0:80"), 2002: "[::]:9999"}
	got, err := readTCPListeners(&netns.Handle{Dial: fakeDial(t)}, func(ino uint64) string { return known[ino] })
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, l := range got {
		switch l.Inode {
		case 1001:
			seen++
			if unsafe.StringData(l.Address) != unsafe.StringData(known[1001]) {
				t.Errorf("inode 1001: %q is a new string, want the known one", l.Address)
			}
		case 2002:
			seen++
			if l.Address != "[::]:8443" || l.Port != "8443" {
				t.Errorf("inode 2002 (reused): address %q port %q, want [::]:8443 and 8443", l.Address, l.Port)
			}
		}
	}
	if seen != 3 { // 1001 twice, as the fake kernel reports it
		t.Errorf("saw %d of the 3 fake listeners: %+v", seen, got)
	}
}
