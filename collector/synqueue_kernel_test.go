package collector

import (
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/listenq/listenq_exporter/internal/testns"
)

var synQueueArgs = []string{"--collector.tcp.syn-queue", "--collector.tcp.syn-queue.interval=50ms"}

func TestKernelSynQueueLength(t *testing.T) {
	testns.Require(t)
	reg := newRealRegistry(t, synQueueArgs...)

	// A wildcard IPv4 listener with clients connecting to 127.0.0.1, and a
	// dual-stack IPv6 listener with IPv4 clients.
	v4 := testns.ListenTCP(t, "0.0.0.0:0", 16, false)
	v4.DeferAccept(t, 30)
	dual := testns.ListenTCP(t, "[::]:0", 16, false)
	dual.DeferAccept(t, 30)
	testns.DialTCP(t, addrOn("127.0.0.1", v4), 3)
	testns.DialTCP(t, addrOn("127.0.0.1", dual), 2)

	for _, c := range []struct {
		l    *testns.Listener
		want float64
	}{{v4, 3}, {dual, 2}} {
		testns.Eventually(t, 5*time.Second, func() (bool, string) {
			got := find(gather(t, reg), "listenq_syn_queue_length", inodeLabel(c.l.Inode))
			ss := testns.SynRecv(t, c.l.Addr.Port())
			return len(got) == 1 && got[0].value == c.want && ss == int(c.want),
				fmt.Sprintf("%s: syn queue %v, ss sees %d request sockets, want %v", c.l.Addr, got, ss, c.want)
		})
	}
	// Half-open handshakes are not in the accept queue.
	if v := one(t, gather(t, reg), "listenq_queue_length", inodeLabel(v4.Inode)).value; v != 0 {
		t.Errorf("accept queue length = %v, want 0 while handshakes are incomplete", v)
	}
}

func TestKernelSynQueueOffByDefault(t *testing.T) {
	testns.Require(t)
	testns.ListenTCP(t, "127.0.0.1:0", 4, false)
	if n := len(gather(t, newRealRegistry(t))["listenq_syn_queue_length"]); n != 0 {
		t.Errorf("SYN-queue counting is opt-in, but %d series were exported", n)
	}
}

func TestKernelSynQueueFullDropsWithoutCookies(t *testing.T) {
	testns.Require(t)
	setSysctl(t, "net/ipv4/tcp_syncookies", "0")
	reg := newRealRegistry(t)
	before := netnsCounter(t, reg, "listenq_tcp_syn_queue_drops_total")
	l := testns.ListenTCP(t, "127.0.0.1:0", 1, false)
	l.DeferAccept(t, 30)
	testns.DialTCP(t, l.Addr, 6)
	testns.Eventually(t, 5*time.Second, func() (bool, string) {
		after := netnsCounter(t, reg, "listenq_tcp_syn_queue_drops_total")
		return after > before, fmt.Sprintf("SYN-queue drops stayed at %v", after)
	})
}

func TestKernelSynCookiesAlways(t *testing.T) {
	testns.Require(t)
	setSysctl(t, "net/ipv4/tcp_syncookies", "2")
	reg := newRealRegistry(t)
	cookies := netnsCounter(t, reg, "listenq_tcp_syn_queue_cookies_total")
	sent := netnsCounter(t, reg, "listenq_tcp_syncookies_sent_total")
	l := testns.ListenTCP(t, "127.0.0.1:0", 4, false)
	testns.DialTCP(t, l.Addr, 3)
	testns.Eventually(t, 5*time.Second, func() (bool, string) {
		c := netnsCounter(t, reg, "listenq_tcp_syn_queue_cookies_total")
		s := netnsCounter(t, reg, "listenq_tcp_syncookies_sent_total")
		return c >= cookies+3 && s >= sent+3, fmt.Sprintf("cookies %v -> %v, sent %v -> %v; want +3 each", cookies, c, sent, s)
	})
	if v := one(t, gather(t, reg), "listenq_tcp_syncookies", nil).value; v != 2 {
		t.Errorf("listenq_tcp_syncookies = %v, want 2", v)
	}
}

func netnsCounter(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	return one(t, gather(t, reg), name, map[string]string{"netns": ""}).value
}

// addrOn is the address host:port of a listener's port.
func addrOn(host string, l *testns.Listener) netip.AddrPort {
	return netip.MustParseAddrPort(host + ":" + strconv.Itoa(int(l.Addr.Port())))
}
