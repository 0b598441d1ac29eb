package collector

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

func init() {
	register("tcp", true, "Per-listener TCP accept queues and drops, from one LISTEN-only inet_diag dump per address family", newTCPCollector)
}

type tcpCollector struct {
	namespaces []*netns.Handle
	listeners  *ListenerExporter
}

func newTCPCollector(d Deps) (Collector, error) {
	return &tcpCollector{namespaces: d.Namespaces, listeners: d.Listeners}, nil
}

func (c *tcpCollector) Update(ch chan<- prometheus.Metric) error {
	for _, ns := range c.namespaces {
		ls, err := ReadTCPListeners(ns)
		if err != nil {
			return err
		}
		c.listeners.Export(ch, ns.ID, "tcp", ls)
	}
	return nil
}

// ReadTCPListeners dumps the TCP listeners of one namespace, IPv4 and IPv6.
// Asking for LISTEN only makes the kernel walk just the listening hash, so
// the cost follows the number of listeners, not of connections.
func ReadTCPListeners(ns *netns.Handle) ([]Listener, error) {
	conn, err := ns.Dial()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var out []Listener
	ifnames := ifNamer{}
	for _, family := range []uint8{sockdiag.FamilyINet, sockdiag.FamilyINet6} {
		socks, err := conn.InetSockets(sockdiag.InetRequest{
			Family:  family,
			States:  1 << sockdiag.StateListen,
			MemInfo: true,
		})
		if err != nil {
			return nil, err
		}
		for _, s := range socks {
			out = append(out, tcpListener(s, ifnames.name(s.IfIndex)))
		}
	}
	return out, nil
}

func tcpListener(s sockdiag.InetSocket, ifname string) Listener {
	return Listener{
		Proto:    "tcp",
		Address:  FormatInetAddress(s.Local, ifname),
		Port:     strconv.Itoa(int(s.Local.Port())),
		Inode:    uint64(s.Inode),
		Length:   s.RQueue,
		Limit:    s.WQueue,
		Drops:    uint64(s.Drops),
		HasDrops: s.HasDrops,
	}
}

// FormatInetAddress prints a local address the way ss does: 0.0.0.0:80,
// [::]:443, and 127.0.0.1%lo:8080 for a socket bound to a device.
func FormatInetAddress(ap netip.AddrPort, ifname string) string {
	host := ap.Addr().String()
	if ap.Addr().Is6() {
		host = "[" + host + "]"
	}
	if ifname != "" {
		host += "%" + ifname
	}
	return host + ":" + strconv.Itoa(int(ap.Port()))
}

// ifNamer resolves interface indexes of SO_BINDTODEVICE listeners, once per
// index per scrape; almost no listener has one.
type ifNamer map[uint32]string

func (n ifNamer) name(idx uint32) string {
	if idx == 0 {
		return ""
	}
	if s, ok := n[idx]; ok {
		return s
	}
	s := fmt.Sprint(idx)
	if ifi, err := net.InterfaceByIndex(int(idx)); err == nil {
		s = ifi.Name
	}
	n[idx] = s
	return s
}
