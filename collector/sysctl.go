package collector

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/listenq/listenq_exporter/internal/netns"
)

func init() {
	register("sysctl", true, "Namespace sysctls that shape listen queues (somaxconn, tcp_max_syn_backlog, tcp_syncookies, tcp_abort_on_overflow)", newSysctlCollector, nil)
}

type sysctl struct {
	path string
	desc *prometheus.Desc
}

func newSysctlDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_"+name, help, nsLabels, nil)
}

var sysctls = []sysctl{
	{"net/core/somaxconn", newSysctlDesc("somaxconn",
		"net.core.somaxconn: the cap on every listen() backlog in this namespace, applied when listen() is called.")},
	{"net/ipv4/tcp_max_syn_backlog", newSysctlDesc("tcp_max_syn_backlog",
		"net.ipv4.tcp_max_syn_backlog: how many pending handshakes a listener may hold when SYN cookies are off.")},
	{"net/ipv4/tcp_syncookies", newSysctlDesc("tcp_syncookies",
		"net.ipv4.tcp_syncookies: 0 never send SYN cookies, 1 send them when a SYN queue is full, 2 always.")},
	{"net/ipv4/tcp_abort_on_overflow", newSysctlDesc("tcp_abort_on_overflow",
		"net.ipv4.tcp_abort_on_overflow: 1 if a full accept queue answers clients with a reset, 0 if it silently drops their handshake ACK.")},
}

type sysctlCollector struct{}

func newSysctlCollector(Deps) (Collector, error) { return sysctlCollector{}, nil }

// Update reads each namespace's own sysctls: a new namespace starts with
// the kernel's defaults, not the host's, so a pod's somaxconn is its own.
func (sysctlCollector) Update(s Scrape) error {
	return forEachNamespace(s, "sysctl", func(h *netns.Handle) error {
		var errs []error
		labels := nsLabelValues(h)
		for _, sc := range sysctls {
			v, err := h.Sysctl(sc.path)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				// Not on this kernel (or IPv4 not in this namespace): absent.
			case err != nil:
				errs = append(errs, fmt.Errorf("read sysctl %s of netns %q: %w", sc.path, h.ID, err))
			default:
				s.Metrics <- prometheus.MustNewConstMetric(sc.desc, prometheus.GaugeValue, float64(v), labels...)
			}
		}
		return errors.Join(errs...)
	})
}
