package collector

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/listenq/listenq_exporter/internal/acceptwait"
)

var acceptWaitMethod *string

func init() {
	register("acceptwait", false,
		"How long connections wait in each TCP listener's accept queue, connections accepted, and exact queue peaks and full time, from eBPF events (needs CAP_BPF and CAP_PERFMON; see the README for its costs)",
		newAcceptWaitCollector,
		func(app *kingpin.Application) {
			acceptWaitMethod = app.Flag("collector.acceptwait.method",
				"How the acceptwait collector sees accept(): auto (fexit on inet_csk_accept where BPF trampolines load, else the accept syscall tracepoints), fexit, or tracepoint.").
				Default("auto").Enum("auto", acceptwait.MethodFexit, acceptwait.MethodTracepoint)
		})
}

var (
	acceptWaitDesc = prometheus.NewDesc(namespace+"_accept_wait_seconds",
		"How long connections waited in this TCP listener's accept queue, from the moment their handshake completed to the moment accept() took them (eBPF events; connections that joined before the collector started are not timed).",
		listenerLabelValueNames(), nil)
	acceptedDesc = prometheus.NewDesc(namespace+"_accepted_total",
		"Connections the application's accept() took from this TCP listener's queue since the collector started (eBPF events).",
		listenerLabelValueNames(), nil)
	acceptWaitMethodDesc = prometheus.NewDesc(namespace+"_accept_wait_method",
		"The way the acceptwait collector sees accept(), 1 for the one in use: fexit (every accept, io_uring included) or tracepoint (accept and accept4 syscalls only; every syscall on the host takes the kernel's slower path while it is attached).",
		[]string{"method"}, nil)
	acceptWaitEntriesDesc = prometheus.NewDesc(namespace+"_accept_wait_map_entries",
		"Entries in the acceptwait collector's BPF maps now: children (connections waiting to be accepted) or listeners.",
		[]string{"map"}, nil)
	acceptWaitCapacityDesc = prometheus.NewDesc(namespace+"_accept_wait_map_capacity",
		"Entries the acceptwait collector's BPF maps can hold before they evict the least recently used.",
		[]string{"map"}, nil)
	acceptWaitEvictionsDesc = prometheus.NewDesc(namespace+"_accept_wait_map_evictions_total",
		"Entries the acceptwait collector's BPF maps evicted because they were full: connections whose wait is then not timed, or listeners whose counts restart.",
		[]string{"map"}, nil)
	acceptWaitUnmatchedDesc = prometheus.NewDesc(namespace+"_accept_wait_unmatched_total",
		"Events the acceptwait collector could not use: event=accept (a connection accepted without a recorded join: it joined before the collector started, its record was evicted, or it joined where the listener was not woken), event=join (a connection joined a listener the exporter has not read yet, in its first sampler interval).",
		[]string{"event"}, nil)
)

// listenerLabelValueNames are the per-listener label names in the order
// of labelSet.values, for descs fed those values.
func listenerLabelValueNames() []string {
	names := make([]string, numListenerLabels)
	for i, n := range listenerLabelNames {
		names[i] = *n
	}
	return names
}

// eventSource is what the collector reads: an acceptwait.Tracer, or a fake
// in the exposition tests.
type eventSource interface {
	Method() string
	Bounds() []float64
	Read() (acceptwait.Reading, error)
	Advance() (map[uint64]uint32, error)
	Close() error
}

// startEvents starts the event source; the exposition tests replace it.
var startEvents = func(opts acceptwait.Options) (eventSource, error) { return acceptwait.Start(opts) }

type acceptWaitCollector struct {
	tracer eventSource
	logger *slog.Logger
	// err says why nothing could load; every Update returns it.
	err error
}

func newAcceptWaitCollector(d Deps) (Collector, error) {
	method := ""
	if acceptWaitMethod != nil && *acceptWaitMethod != "auto" {
		method = *acceptWaitMethod
	}
	t, err := startEvents(acceptwait.Options{Method: method})
	if err != nil {
		// The exporter runs on without it; the registry logs this once.
		return &acceptWaitCollector{err: fmt.Errorf("%w: %w", errUnsupported, err)}, nil
	}
	d.Logger.Info("acceptwait collector attached", "method", t.Method())
	d.Listeners.events = newEventStats(t)
	return &acceptWaitCollector{tracer: t, logger: d.Logger}, nil
}

// Start detaches the programs when ctx ends.
func (c *acceptWaitCollector) Start(ctx context.Context) {
	if c.tracer == nil {
		return
	}
	go func() {
		<-ctx.Done()
		if err := c.tracer.Close(); err != nil {
			c.logger.Warn("acceptwait: detaching the BPF programs", "err", err)
		}
	}()
}

func (c *acceptWaitCollector) Update(s Scrape) error {
	if c.err != nil {
		return c.err
	}
	r, err := c.tracer.Read()
	if err != nil {
		return err
	}
	// The scrape's export attributes the figures to the listeners it read.
	s.waits.figs = r.Listeners
	s.Metrics <- prometheus.MustNewConstMetric(acceptWaitMethodDesc, prometheus.GaugeValue, 1, c.tracer.Method())
	n := r.Counters
	for _, m := range []struct {
		name              string
		entries, capacity int
		evictions         uint64
	}{
		{"children", n.Children, n.ChildrenCapacity, n.ChildrenEvicted},
		{"listeners", n.Listeners, n.ListenersCapacity, n.ListenersEvicted},
	} {
		s.Metrics <- prometheus.MustNewConstMetric(acceptWaitEntriesDesc, prometheus.GaugeValue, float64(m.entries), m.name)
		s.Metrics <- prometheus.MustNewConstMetric(acceptWaitCapacityDesc, prometheus.GaugeValue, float64(m.capacity), m.name)
		s.Metrics <- prometheus.MustNewConstMetric(acceptWaitEvictionsDesc, prometheus.CounterValue, float64(m.evictions), m.name)
	}
	s.Metrics <- prometheus.MustNewConstMetric(acceptWaitUnmatchedDesc, prometheus.CounterValue, float64(n.AcceptsUnseen+n.AcceptsNoCookie), "accept")
	s.Metrics <- prometheus.MustNewConstMetric(acceptWaitUnmatchedDesc, prometheus.CounterValue, float64(n.JoinsWithoutCookie), "join")
	return nil
}

// eventStats is the acceptwait collector's part in every scrape and
// sampler round.
type eventStats struct {
	tracer eventSource
	// help replaces the Help of the metrics the events make exact.
	help [numListenerMetrics]string
}

func newEventStats(t eventSource) *eventStats {
	e := &eventStats{tracer: t}
	e.help[mPeak] = "Highest listen-queue length over the trailing --sampler.window. TCP listeners: exact, from the acceptwait collector's eBPF events, which see every change; unix listeners: the highest the background sampler saw."
	e.help[mFullSeconds] = "Seconds this listen queue was full (length above limit), when new connections are dropped or refused. TCP listeners: exact, from the acceptwait collector's eBPF events (from the queue's first event on); unix listeners: estimated from samples every --sampler.interval."
	return e
}

// advance starts a new peak round and returns the one that ended; nil when
// the collector is off.
func (e *eventStats) advance() map[uint64]uint32 {
	if e == nil {
		return nil
	}
	peaks, err := e.tracer.Advance()
	if err != nil {
		return nil // the scrape's read reports the map's failure
	}
	return peaks
}

// batch starts a scrape's part; nil when the collector is off.
func (e *eventStats) batch() *waitBatch {
	if e == nil {
		return nil
	}
	return &waitBatch{e: e}
}

// waitBatch is what one scrape read from the events and the listeners it
// exported.
type waitBatch struct {
	e    *eventStats
	figs map[uint64]acceptwait.Figures
	rows []waitRow
}

type waitRow struct {
	labels *labelSet
	f      acceptwait.Figures
}

// attribute gives an exported TCP listener its event figures: the full
// time, and the wait series emit writes. A listener without events yet
// gets zeros, so its series exist before its first connection.
func (w *waitBatch) attribute(ls *labelSet, l *Listener) {
	if w == nil || w.figs == nil || l.Cookie == 0 {
		return
	}
	f := w.figs[l.Cookie]
	if l.HasStats { // the sampler runs: it keeps the peak's window
		l.FullSeconds = f.FullSeconds
	}
	w.rows = append(w.rows, waitRow{ls, f})
}

func (w *waitBatch) emit(ch chan<- prometheus.Metric) {
	if w == nil {
		return
	}
	bounds := w.e.tracer.Bounds()
	for _, r := range w.rows {
		values := r.labels.values()
		buckets := make(map[float64]uint64, len(bounds))
		for i, b := range bounds {
			buckets[b] = r.f.Buckets[i]
		}
		ch <- prometheus.MustNewConstHistogram(acceptWaitDesc, r.f.Timed, r.f.WaitSum, buckets, values...)
		ch <- prometheus.MustNewConstMetric(acceptedDesc, prometheus.CounterValue, float64(r.f.Accepted), values...)
	}
}
