package collector

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"

	"github.com/listenq/listenq_exporter/internal/netns"
)

func init() {
	register("netstat", true, "Namespace-wide TCP listen-queue counters from /proc/net/netstat (TcpExt)", newNetstatCollector, nil)
}

// netstatCounter is one TcpExt field and the metric it becomes.
type netstatCounter struct {
	desc  *prometheus.Desc
	value func(procfs.ProcNetstat) *float64
}

func newNetstatDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "tcp", name), help, []string{"netns"}, nil)
}

var netstatCounters = []netstatCounter{
	{newNetstatDesc("listen_overflows_total",
		"Packets dropped because a listener's accept queue was full (TcpExt ListenOverflows), counted per packet: a retried SYN counts again."),
		func(n procfs.ProcNetstat) *float64 { return n.ListenOverflows }},
	{newNetstatDesc("listen_drops_total",
		"Packets dropped at any listener for any reason, accept queue overflows included (TcpExt ListenDrops)."),
		func(n procfs.ProcNetstat) *float64 { return n.ListenDrops }},
	{newNetstatDesc("syn_queue_drops_total",
		"SYNs dropped because a listener's SYN queue was full and SYN cookies were off (TcpExt TCPReqQFullDrop)."),
		func(n procfs.ProcNetstat) *float64 { return n.TCPReqQFullDrop }},
	{newNetstatDesc("syn_queue_cookies_total",
		"SYNs answered with a SYN cookie because a listener's SYN queue was full (TcpExt TCPReqQFullDoCookies); a sign of a SYN flood or a too small backlog."),
		func(n procfs.ProcNetstat) *float64 { return n.TCPReqQFullDoCookies }},
	{newNetstatDesc("syncookies_sent_total",
		"SYN cookies sent (TcpExt SyncookiesSent)."),
		func(n procfs.ProcNetstat) *float64 { return n.SyncookiesSent }},
	{newNetstatDesc("syncookies_received_total",
		"Valid SYN cookies received back in a handshake ACK (TcpExt SyncookiesRecv)."),
		func(n procfs.ProcNetstat) *float64 { return n.SyncookiesRecv }},
	{newNetstatDesc("syncookies_failed_total",
		"Handshake ACKs whose SYN cookie did not validate (TcpExt SyncookiesFailed)."),
		func(n procfs.ProcNetstat) *float64 { return n.SyncookiesFailed }},
}

type netstatCollector struct {
	namespaces []*netns.Handle
}

func newNetstatCollector(d Deps) (Collector, error) {
	return &netstatCollector{namespaces: d.Namespaces}, nil
}

func (c *netstatCollector) Update(s Scrape) error {
	for _, ns := range c.namespaces {
		stats, err := ns.Proc.Netstat()
		if err != nil {
			return fmt.Errorf("read netstat of netns %q: %w", ns.ID, err)
		}
		for _, nc := range netstatCounters {
			// A counter this kernel does not have stays absent, not zero.
			if v := nc.value(stats); v != nil {
				s.Metrics <- prometheus.MustNewConstMetric(nc.desc, prometheus.CounterValue, *v, ns.ID)
			}
		}
	}
	return nil
}
