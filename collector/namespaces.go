package collector

import (
	"errors"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/listenq/listenq_exporter/internal/netns"
)

// nsLabels are the labels of every per-namespace series.
var nsLabels = []string{"netns", "namespace", "pod"}

func nsLabelValues(h *netns.Handle) []string {
	return []string{h.ID, h.Identity.Namespace, h.Identity.Pod}
}

var (
	netnsInfoDesc = prometheus.NewDesc(namespace+"_netns_info",
		"One series per network namespace the exporter reads, with the Kubernetes namespace, pod and pod UID owning it and the container runtime that named it (all empty for the host's namespace and for namespaces no runtime claims). Value is always 1.",
		[]string{"netns", "namespace", "pod", "pod_uid", "runtime"}, nil)
	netnsSuccessDesc = prometheus.NewDesc(namespace+"_netns_scrape_success",
		"1 if every collector read this network namespace during this scrape, 0 if one failed (the exporter log says which and why); the other namespaces are read regardless.",
		nsLabels, nil)
)

// maxNamespaceReaders bounds how many namespaces one collector reads at
// once: reads are short syscalls, and a node may have hundreds.
const maxNamespaceReaders = 4

// forEachNamespace runs read for every namespace of the scrape, a few at a
// time. A namespace that fails is recorded as that namespace's failure
// alone; the collector fails only when it could read no namespace at all.
// A namespace closed under the read (it went away) is neither.
func forEachNamespace(s Scrape, collector string, read func(h *netns.Handle) error) error {
	var (
		mu          sync.Mutex
		errs        []error
		unsupported bool
		wg          sync.WaitGroup
		sem         = make(chan struct{}, maxNamespaceReaders)
	)
	for _, h := range s.handles {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := read(h)
			if err == nil || errors.Is(err, netns.ErrClosed) {
				return
			}
			if errors.Is(err, errUnsupported) {
				// The kernel's, not the namespace's: no namespace failed.
				mu.Lock()
				unsupported = true
				mu.Unlock()
				return
			}
			s.failures.add(h, collector, err)
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	switch {
	case unsupported && len(errs) == 0:
		return errUnsupported
	case len(errs) > 0 && len(errs) == len(s.handles):
		return errors.Join(errs...)
	}
	return nil
}

// errUnsupported is a collector's answer on a kernel that lacks what it
// reads (unix_diag not built or loaded): the collector is left out of the
// scrape, success metric included, rather than failing on every scrape.
var errUnsupported = errors.New("not supported by this kernel")

// nsFailures are the namespaces collectors failed to read in one scrape.
type nsFailures struct {
	mu   sync.Mutex
	errs map[*netns.Handle]map[string]error
}

func (f *nsFailures) add(h *netns.Handle, collector string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.errs == nil {
		f.errs = map[*netns.Handle]map[string]error{}
	}
	if f.errs[h] == nil {
		f.errs[h] = map[string]error{}
	}
	f.errs[h][collector] = err
}

// nsHealth exports each namespace's identity and read status, and logs a
// namespace's failures once when they start and once when they end.
type nsHealth struct {
	logger *slog.Logger
	mu     sync.Mutex
	failed map[*netns.Handle]bool
}

func newNSHealth(logger *slog.Logger) *nsHealth {
	return &nsHealth{logger: logger, failed: map[*netns.Handle]bool{}}
}

func (n *nsHealth) report(s Scrape, handles []*netns.Handle) {
	s.failures.mu.Lock()
	errs := s.failures.errs
	s.failures.mu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	live := make(map[*netns.Handle]bool, len(handles))
	for _, h := range handles {
		live[h] = true
		id := h.Identity
		s.Metrics <- prometheus.MustNewConstMetric(netnsInfoDesc, prometheus.GaugeValue, 1, h.ID, id.Namespace, id.Pod, id.PodUID, id.Runtime)
		failed := len(errs[h]) > 0
		success := 1.0
		if failed {
			success = 0
		}
		s.Metrics <- prometheus.MustNewConstMetric(netnsSuccessDesc, prometheus.GaugeValue, success, nsLabelValues(h)...)
		logger := n.logger.With("netns", h.ID, "namespace", id.Namespace, "pod", id.Pod)
		switch {
		case failed && !n.failed[h]:
			for c, err := range errs[h] {
				logger.Error("cannot read network namespace; its series are missing until it recovers", "collector", c, "err", err)
			}
		case !failed && n.failed[h]:
			logger.Info("network namespace read again")
		}
		n.failed[h] = failed
	}
	for h := range n.failed {
		if !live[h] {
			delete(n.failed, h)
		}
	}
}
