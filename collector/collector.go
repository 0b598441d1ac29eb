// Package collector holds listenq_exporter's collectors and the registry
// that switches them on and off (--[no-]collector.NAME) and reports each
// one's success and duration.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/listenq/listenq_exporter/internal/netns"
)

const namespace = "listenq"

// Collector is one source of metrics. Update puts what it read into the
// scrape and returns an error when its source failed; what it put in before
// failing is still exported.
type Collector interface {
	Update(s Scrape) error
}

// Scrape is where collectors put what they read during one Gather.
type Scrape struct {
	// Metrics takes ordinary metrics, which go through the registry's
	// consistency checks.
	Metrics chan<- prometheus.Metric
	// handles are the namespaces this scrape reads: one snapshot for all
	// collectors, so they agree while discovery changes the set.
	handles []*netns.Handle
	// reads collects what the listener collectors read; the exporter turns
	// all of it into series at once, so owners are looked up and the cap
	// applied across every namespace and protocol.
	reads *readBatches
	// failures records which namespaces a collector could not read.
	failures *nsFailures
	// waits is what the acceptwait collector read for this scrape; nil
	// when it is off.
	waits *waitBatch
}

// Deps is what collectors are built from.
type Deps struct {
	Logger *slog.Logger
	// Namespaces are the network namespaces to read, the host's first; the
	// set may change between scrapes.
	Namespaces netns.Namespaces
	Listeners  *ListenerExporter
	// Sampler samples the listener collectors in the background; nil when
	// it is off.
	Sampler *Sampler
}

type factory func(d Deps) (Collector, error)

type registration struct {
	name      string
	isDefault bool
	help      string
	factory   factory
	// flags adds the collector's own --collector.NAME.OPTION flags.
	flags func(*kingpin.Application)
}

var registrations []registration

func register(name string, isDefault bool, help string, f factory, flags func(*kingpin.Application)) {
	registrations = append(registrations, registration{name, isDefault, help, f, flags})
}

// starter is a collector with background work.
type starter interface {
	Start(ctx context.Context)
}

// Selection records which collectors the flags switched on.
type Selection map[string]*bool

// AddFlags adds --[no-]collector.NAME for every collector, and each
// collector's own options, to app.
func AddFlags(app *kingpin.Application) Selection {
	sel := Selection{}
	for _, r := range registrations {
		def := "false"
		state := "disabled"
		if r.isDefault {
			def, state = "true", "enabled"
		}
		sel[r.name] = app.Flag("collector."+r.name,
			fmt.Sprintf("%s (default: %s).", r.help, state)).Default(def).Bool()
		if r.flags != nil {
			r.flags(app)
		}
	}
	return sel
}

// ValidateFlags checks the collectors' own options, so a bad value stops
// the exporter before anything else starts.
func ValidateFlags() error { return validateTCPFlags() }

// Enabled lists the names of the collectors switched on, sorted.
func (s Selection) Enabled() []string {
	var names []string
	for name, on := range s {
		if *on {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

var (
	scrapeDurationDesc = prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "scrape", "collector_duration_seconds"),
		"How long the collector took to read its source during this scrape.",
		[]string{"collector"}, nil)
	scrapeSuccessDesc = prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "scrape", "collector_success"),
		"1 if the collector read its source during this scrape, 0 if it failed (the exporter log says why).",
		[]string{"collector"}, nil)
)

// Exporter runs the enabled collectors concurrently on every scrape. It is a
// prometheus.Gatherer.
type Exporter struct {
	logger     *slog.Logger
	sampler    *Sampler
	namespaces netns.Namespaces
	listeners  *ListenerExporter
	collectors map[string]Collector
	health     map[string]*health
	nsHealth   *nsHealth
}

// health remembers whether a collector failed last time, so a failure is
// logged once when it starts and once when it ends, not on every scrape.
type health struct {
	mu      sync.Mutex
	failing bool
	told    bool // that the collector is unsupported here
}

// unsupported logs once that the kernel lacks what the collector reads.
func (h *health) unsupported(logger *slog.Logger, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.told {
		logger.Info("collector left out: this kernel does not support it", "err", err)
		h.told = true
	}
}

// New builds the collectors that sel switched on.
func New(sel Selection, d Deps) (*Exporter, error) {
	e := &Exporter{
		logger: d.Logger, sampler: d.Sampler, namespaces: d.Namespaces, listeners: d.Listeners,
		collectors: map[string]Collector{}, health: map[string]*health{}, nsHealth: newNSHealth(d.Logger),
	}
	d.Sampler.use(d.Namespaces, d.Listeners)
	for _, r := range registrations {
		if on := sel[r.name]; on == nil || !*on {
			continue
		}
		c, err := r.factory(d)
		if err != nil {
			return nil, fmt.Errorf("collector %s: %w", r.name, err)
		}
		e.collectors[r.name] = c
		e.health[r.name] = &health{}
	}
	return e, nil
}

// Start runs the background work (sampler, slow refreshes) until ctx ends.
func (e *Exporter) Start(ctx context.Context) {
	if e.sampler != nil {
		go e.sampler.Run(ctx)
	}
	for _, c := range e.collectors {
		if s, ok := c.(starter); ok {
			s.Start(ctx)
		}
	}
}

// Gather runs every collector concurrently and returns what they read, as
// families: a Snapshot's Families. The Exporter is a prometheus.Gatherer
// rather than a Collector so that per-listener series can bypass the
// registry; Snapshot also gathers the registry of the usual Go, process and
// build-info collectors.
func (e *Exporter) Gather() ([]*dto.MetricFamily, error) {
	s, err := e.Snapshot()
	if s == nil {
		return nil, err
	}
	return s.Families(), err
}

func (e *Exporter) collect(ch chan<- prometheus.Metric, fams *listenerFamilies) {
	handles := e.namespaces.Handles()
	s := Scrape{Metrics: ch, handles: handles, reads: &readBatches{}, failures: &nsFailures{}, waits: e.listeners.events.batch()}
	var wg sync.WaitGroup
	for name, c := range e.collectors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.run(name, c, s)
		}()
	}
	wg.Wait()
	e.listeners.export(s, fams)
	e.listeners.prune(handles)
	e.nsHealth.report(s, handles)
	e.sampler.collect(ch, handles)
}

func (e *Exporter) run(name string, c Collector, s Scrape) {
	start := time.Now()
	err := c.Update(s)
	elapsed := time.Since(start).Seconds()
	if errors.Is(err, errUnsupported) {
		e.health[name].unsupported(e.logger.With("collector", name), err)
		return
	}
	success := 1.0
	if err != nil {
		success = 0
	}
	e.health[name].report(e.logger.With("collector", name), err)
	s.Metrics <- prometheus.MustNewConstMetric(scrapeDurationDesc, prometheus.GaugeValue, elapsed, name)
	s.Metrics <- prometheus.MustNewConstMetric(scrapeSuccessDesc, prometheus.GaugeValue, success, name)
}

// collectFunc is an unchecked prometheus.Collector made of a function.
type collectFunc func(chan<- prometheus.Metric)

func (f collectFunc) Describe(chan<- *prometheus.Desc)    {}
func (f collectFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

// mergeFamilies joins two lists of families, sorted by name. Two families of
// one name would make an invalid exposition: the second is dropped, and the
// clash is an error (a bug: two sources export one name), which promhttp
// logs and the tests catch.
func mergeFamilies(a, b []*dto.MetricFamily) ([]*dto.MetricFamily, error) {
	out := slices.Concat(a, b)
	slices.SortStableFunc(out, func(x, y *dto.MetricFamily) int { return strings.Compare(x.GetName(), y.GetName()) })
	var clashes []string
	out = slices.CompactFunc(out, func(x, y *dto.MetricFamily) bool {
		if x.GetName() != y.GetName() {
			return false
		}
		clashes = append(clashes, x.GetName())
		return true
	})
	if len(clashes) > 0 {
		return out, fmt.Errorf("metric families exported twice, the second dropped: %s", strings.Join(clashes, ", "))
	}
	return out, nil
}

func (h *health) report(logger *slog.Logger, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err != nil && !h.failing:
		logger.Error("collector failed; its metrics are missing until it recovers", "err", err)
	case err != nil:
		logger.Debug("collector still failing", "err", err)
	case h.failing:
		logger.Info("collector recovered")
	}
	h.failing = err != nil
}
