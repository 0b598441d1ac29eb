package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/listenq/listenq_exporter/internal/netns"
)

var (
	discoveredDesc = prometheus.NewDesc(namespace+"_netns_discovered",
		"Network namespaces the last discovery found, by state: read (exported), filtered (left out by --netns.* filters), denied (the exporter lacks the privilege to enter them: CAP_SYS_ADMIN, CAP_SYS_PTRACE), failed (gone while being opened, or another error).",
		[]string{"state"}, nil)
	discoveryDurationDesc = prometheus.NewDesc(namespace+"_netns_discovery_duration_seconds",
		"How long the last network-namespace discovery took (scan of /proc and the bind-mount directories, opening new namespaces, asking the runtime who they belong to).",
		nil, nil)
)

// DiscoveryCollector exports the health of network-namespace discovery.
type DiscoveryCollector struct {
	stats func() netns.Stats
}

// NewDiscoveryCollector returns a collector of set's discovery figures.
func NewDiscoveryCollector(set interface{ Stats() netns.Stats }) *DiscoveryCollector {
	return &DiscoveryCollector{stats: set.Stats}
}

// Describe implements prometheus.Collector.
func (c *DiscoveryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- discoveredDesc
	ch <- discoveryDurationDesc
}

// Collect implements prometheus.Collector.
func (c *DiscoveryCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	for state, n := range map[string]int{"read": st.Read, "filtered": st.Filtered, "denied": st.Denied, "failed": st.Failed} {
		ch <- prometheus.MustNewConstMetric(discoveredDesc, prometheus.GaugeValue, float64(n), state)
	}
	ch <- prometheus.MustNewConstMetric(discoveryDurationDesc, prometheus.GaugeValue, st.Duration.Seconds())
}
