package collector

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

var (
	synQueueEnabled  *bool
	synQueueInterval *time.Duration
)

func init() {
	register("tcp", true, "Per-listener TCP accept queues and drops, from one LISTEN-only inet_diag dump per address family", newTCPCollector,
		func(app *kingpin.Application) {
			synQueueEnabled = app.Flag("collector.tcp.syn-queue",
				"Also count handshakes in progress per listener (listenq_syn_queue_length). This walks the kernel's whole connection table, so it runs in the background every --collector.tcp.syn-queue.interval, never on the scrape path.").
				Default("false").Bool()
			synQueueInterval = app.Flag("collector.tcp.syn-queue.interval",
				"How often to count handshakes in progress when --collector.tcp.syn-queue is on.").
				Default("10s").Duration()
		})
}

type tcpCollector struct {
	namespaces netns.Namespaces
	out        *ListenerExporter
	syn        *synCounters // nil unless SYN-queue counting is on
}

func newTCPCollector(d Deps) (Collector, error) {
	c := &tcpCollector{namespaces: d.Namespaces, out: d.Listeners}
	d.Listeners.register("tcp", protocol{readTCPListeners, tcpQueues})
	if err := validateTCPFlags(); err != nil {
		return nil, err
	}
	if synQueueEnabled != nil && *synQueueEnabled {
		c.syn = newSynCounters(d.Namespaces, *synQueueInterval, d.Logger)
	}
	return c, nil
}

// validateTCPFlags checks the tcp collector's options, whether counting is
// on or not yet.
func validateTCPFlags() error {
	if synQueueInterval != nil && *synQueueInterval < 10*time.Millisecond {
		// A mistyped interval (1ns, or negative) would spin a core on
		// dumps of the whole connection table.
		return fmt.Errorf("--collector.tcp.syn-queue.interval must be at least 10ms, got %v", *synQueueInterval)
	}
	return nil
}

// Start runs SYN-queue counting in the background.
func (c *tcpCollector) Start(ctx context.Context) {
	if c.syn != nil {
		go c.syn.run(ctx)
	}
}

func (c *tcpCollector) Update(s Scrape) error {
	return forEachNamespace(s, "tcp", func(h *netns.Handle) error {
		src := c.out.source(h, "tcp")
		ls, err := src.Listeners()
		if err != nil {
			return err
		}
		ls = src.withStats(ls)
		if c.syn != nil {
			ls = c.syn.attribute(h, ls)
		}
		s.reads.add(src, ls)
		return nil
	})
}

// ReadTCPListeners dumps the TCP listeners of one namespace, IPv4 and IPv6.
// Asking for LISTEN only makes the kernel walk just the listening hash, so
// the cost follows the number of listeners, not of connections.
func ReadTCPListeners(ns *netns.Handle) ([]Listener, error) { return readTCPListeners(ns, nil) }

// readTCPListeners is ReadTCPListeners, reusing the addresses known
// returns (a readFunc). The sockets are turned into listeners as the dump
// streams, with no slice of them in between.
func readTCPListeners(ns *netns.Handle, known func(inode uint64) string) ([]Listener, error) {
	conn, err := ns.Conn()
	if err != nil {
		return nil, err
	}
	out := make([]Listener, 0, conn.LastInetCount())
	req := sockdiag.InetRequest{Family: sockdiag.FamilyUnspec, States: 1 << sockdiag.StateListen, MemInfo: true}
	var buf [64]byte
	err = conn.EachInetSocket(req, func(s *sockdiag.InetSocket) error {
		ifname := ""
		if s.IfIndex != 0 {
			ifname = ns.InterfaceName(s.IfIndex)
		}
		b := appendInetAddress(buf[:0], s.Local, ifname)
		var addr string
		if known != nil {
			if prev := known(uint64(s.Inode)); prev == string(b) {
				addr = prev
			}
		}
		if addr == "" {
			addr = string(b)
		}
		out = append(out, tcpListener(s, addr))
		return nil
	})
	if err != nil {
		return nil, ns.Failed(conn, err)
	}
	return out, nil
}

// dumpInet runs one inet_diag dump of IPv4 and IPv6 TCP sockets: the kernel
// walks its tables once, not once per family. That walk covers the host's
// whole listening table whatever the namespace, so with hundreds of
// namespaces it is most of what a read costs.
func dumpInet(ns *netns.Handle, states uint32, memInfo bool) ([]sockdiag.InetSocket, error) {
	conn, err := ns.ConnFor(netns.UseBackground)
	if err != nil {
		return nil, err
	}
	socks, err := conn.InetSockets(sockdiag.InetRequest{Family: sockdiag.FamilyUnspec, States: states, MemInfo: memInfo})
	if err != nil {
		return nil, ns.Failed(conn, err)
	}
	return socks, nil
}

// tcpQueues reads only the queue lengths of the TCP listeners, for the
// sampler.
func tcpQueues(ns *netns.Handle, dst []sockdiag.Queue) ([]sockdiag.Queue, error) {
	conn, err := ns.ConnFor(netns.UseBackground)
	if err != nil {
		return dst, err
	}
	if dst, err = conn.ListenQueues(sockdiag.FamilyUnspec, dst); err != nil {
		return dst, ns.Failed(conn, err)
	}
	return dst, nil
}

// tcpListener is socket s, whose address is addr (FormatInetAddress).
func tcpListener(s *sockdiag.InetSocket, addr string) Listener {
	return Listener{
		Proto:   "tcp",
		Address: addr,
		// The port is the address's tail: no string of its own.
		Port:     addr[strings.LastIndexByte(addr, ':')+1:],
		Local:    s.Local,
		Inode:    uint64(s.Inode),
		Cookie:   s.Cookie,
		Length:   s.RQueue,
		Limit:    s.WQueue,
		Drops:    uint64(s.Drops),
		HasDrops: s.HasDrops,
	}
}

// FormatInetAddress prints a local address the way ss does: 0.0.0.0:80,
// [::]:443, and 127.0.0.1%lo:8080 for a socket bound to a device. It makes
// one string: every listener's address is printed on every scrape.
func FormatInetAddress(ap netip.AddrPort, ifname string) string {
	var buf [64]byte
	return string(appendInetAddress(buf[:0], ap, ifname))
}

// appendInetAddress appends FormatInetAddress's text to b.
func appendInetAddress(b []byte, ap netip.AddrPort, ifname string) []byte {
	switch {
	case !ap.Addr().IsValid():
		b = append(b, ap.Addr().String()...)
	case ap.Addr().Is6():
		b = append(b, '[')
		b = ap.Addr().AppendTo(b)
		b = append(b, ']')
	default:
		b = ap.Addr().AppendTo(b)
	}
	if ifname != "" && ap.Addr().IsValid() {
		b = append(b, '%')
		b = append(b, ifname...)
	}
	b = append(b, ':')
	return strconv.AppendUint(b, uint64(ap.Port()), 10)
}
