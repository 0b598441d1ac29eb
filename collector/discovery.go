package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/runtimeapi"
)

var (
	discoveredDesc = prometheus.NewDesc(namespace+"_netns_discovered",
		"Network namespaces the last discovery found, by state: read (exported), filtered (left out by --netns.* filters), denied (the exporter lacks the privilege to enter them: CAP_SYS_ADMIN, CAP_SYS_PTRACE), pending (new, waiting up to 30s for the container runtime to name their pod), failed (gone while being opened, or another error).",
		[]string{"state"}, nil)
	discoveryDurationDesc = prometheus.NewDesc(namespace+"_netns_discovery_duration_seconds",
		"How long the last network-namespace discovery took (scan of /proc and the bind-mount directories, opening new namespaces, asking the runtime who they belong to).",
		nil, nil)
)

var runtimeUpDesc = prometheus.NewDesc(namespace+"_runtime_up",
	"1 if the last call to this container runtime's API succeeded, 0 if it failed (pods and containers it would name keep empty names; the exporter log says why). Absent until the runtime was first asked.",
	[]string{"runtime", "endpoint"}, nil)

// RuntimeCollector exports whether the container runtimes answer.
type RuntimeCollector struct {
	status func() []runtimeapi.ClientStatus
}

// NewRuntimeCollector returns a collector of dir's runtime health.
func NewRuntimeCollector(dir *runtimeapi.Directory) *RuntimeCollector {
	return &RuntimeCollector{status: dir.Status}
}

// Describe implements prometheus.Collector.
func (c *RuntimeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- runtimeUpDesc }

// Collect implements prometheus.Collector.
func (c *RuntimeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.status() {
		if !st.Checked {
			continue
		}
		up := 0.0
		if st.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(runtimeUpDesc, prometheus.GaugeValue, up, st.Runtime, st.Endpoint)
	}
}

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
	for state, n := range map[string]int{"read": st.Read, "filtered": st.Filtered, "denied": st.Denied, "failed": st.Failed, "pending": st.Pending} {
		ch <- prometheus.MustNewConstMetric(discoveredDesc, prometheus.GaugeValue, float64(n), state)
	}
	ch <- prometheus.MustNewConstMetric(discoveryDurationDesc, prometheus.GaugeValue, st.Duration.Seconds())
}
