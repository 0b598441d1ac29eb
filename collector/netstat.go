package collector

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/listenq/listenq_exporter/internal/netns"
)

func init() {
	register("netstat", true, "Namespace-wide TCP listen-queue counters from /proc/net/netstat (TcpExt)", newNetstatCollector, nil)
}

// netstatCounter is one TcpExt field and the metric it becomes.
type netstatCounter struct {
	desc  *prometheus.Desc
	field string // the TcpExt name
}

func newNetstatDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "tcp", name), help, nsLabels, nil)
}

var netstatCounters = []netstatCounter{
	{newNetstatDesc("listen_overflows_total",
		"Packets dropped because a listener's accept queue was full (TcpExt ListenOverflows), counted per packet: a retried SYN counts again."),
		"ListenOverflows"},
	{newNetstatDesc("listen_drops_total",
		"Packets dropped at any listener for any reason, accept queue overflows included (TcpExt ListenDrops)."),
		"ListenDrops"},
	{newNetstatDesc("syn_queue_drops_total",
		"SYNs dropped because a listener's SYN queue was full and SYN cookies were off (TcpExt TCPReqQFullDrop)."),
		"TCPReqQFullDrop"},
	{newNetstatDesc("syn_queue_cookies_total",
		"SYNs answered with a SYN cookie because a listener's SYN queue was full (TcpExt TCPReqQFullDoCookies); a sign of a SYN flood or a too small backlog."),
		"TCPReqQFullDoCookies"},
	{newNetstatDesc("syncookies_sent_total",
		"SYN cookies sent (TcpExt SyncookiesSent)."),
		"SyncookiesSent"},
	{newNetstatDesc("syncookies_received_total",
		"Valid SYN cookies received back in a handshake ACK (TcpExt SyncookiesRecv)."),
		"SyncookiesRecv"},
	{newNetstatDesc("syncookies_failed_total",
		"Handshake ACKs whose SYN cookie did not validate (TcpExt SyncookiesFailed)."),
		"SyncookiesFailed"},
}

type netstatCollector struct{}

func newNetstatCollector(Deps) (Collector, error) { return netstatCollector{}, nil }

func (netstatCollector) Update(s Scrape) error {
	return forEachNamespace(s, "netstat", func(h *netns.Handle) error {
		stats, err := h.Netstat("TcpExt")
		if err != nil {
			return fmt.Errorf("read netstat of netns %q: %w", h.ID, err)
		}
		labels := nsLabelValues(h)
		for _, nc := range netstatCounters {
			// A counter this kernel does not have stays absent, not zero.
			if v, ok := stats[nc.field]; ok {
				s.Metrics <- prometheus.MustNewConstMetric(nc.desc, prometheus.CounterValue, v, labels...)
			}
		}
		return nil
	})
}
