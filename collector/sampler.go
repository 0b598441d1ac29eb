package collector

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/sampler"
)

// Sampler reads the queue lengths of every listener source, in every
// namespace, every interval in the background, so bursts that fill and
// drain a queue between two scrapes still show up as a peak and as time
// spent full. It asks the kernel for lengths only (no names, no memory
// counters), a dump several times cheaper than a scrape's; scrapes still
// read names and drops themselves.
type Sampler struct {
	interval, window time.Duration
	// maxCPU is the share of one core the sampler may use (0: no limit):
	// a round's cost grows with namespaces, since every namespace's TCP
	// dump walks the host's whole listening table, so on a node with
	// hundreds of pods the sampler waits longer between rounds instead of
	// taking more CPU.
	maxCPU float64
	logger *slog.Logger

	namespaces netns.Namespaces
	listeners  *ListenerExporter

	mu          sync.Mutex
	lastRound   time.Duration
	effective   time.Duration // interval in force after the CPU budget
	rounds      uint64
	lastSuccess time.Time // end of the last round in which every read worked
	stretched   bool      // the budget has lengthened the interval (logged)
	failing     map[*source]bool
	errors      map[*source]uint64
}

// samplerWorkers bounds the namespaces read at once in a round: the work is
// kernel time, and two cores are common on small nodes.
const samplerWorkers = 2

var (
	samplerRoundDesc = prometheus.NewDesc(namespace+"_sampler_round_duration_seconds",
		"How long the background sampler's last round over every listener of every namespace took.",
		nil, nil)
	samplerRoundsDesc = prometheus.NewDesc(namespace+"_sampler_rounds_total",
		"Rounds the background sampler has made. If this stops rising, listenq_queue_peak_length and listenq_queue_full_seconds_total are frozen and the alerts built on them are blind.",
		nil, nil)
	samplerErrorsDesc = prometheus.NewDesc(namespace+"_sampler_errors_total",
		"Sampler reads of one namespace's listeners that failed; the exporter log says why.",
		append(append([]string{}, nsLabels...), "proto"), nil)
	samplerLastSuccessDesc = prometheus.NewDesc(namespace+"_sampler_last_success_timestamp_seconds",
		"When the background sampler last finished a round in which every read succeeded (Unix time).",
		nil, nil)
	samplerIntervalDesc = prometheus.NewDesc(namespace+"_sampler_interval_seconds",
		"Time between two sampler rounds now: --sampler.interval, or longer when a round costs more than --sampler.max-cpu allows (many namespaces). Bursts shorter than this are caught with probability duration/interval.",
		nil, nil)
)

// NewSampler returns a Sampler, or nil when interval is 0 (sampler off).
// maxCPU bounds the share of one core it uses (0: no bound).
func NewSampler(interval, window time.Duration, maxCPU float64, logger *slog.Logger) *Sampler {
	if interval <= 0 {
		return nil
	}
	return &Sampler{interval: interval, window: window, maxCPU: maxCPU, effective: interval, logger: logger,
		failing: map[*source]bool{}, errors: map[*source]uint64{}}
}

// use makes s sample the listener sources of x in namespaces: every source
// gets a tracker from now on.
func (s *Sampler) use(namespaces netns.Namespaces, x *ListenerExporter) {
	if s == nil {
		return
	}
	s.namespaces, s.listeners = namespaces, x
	x.mu.Lock()
	x.newTracker = func() *sampler.Tracker { return sampler.NewTracker(s.window, s.interval) }
	x.mu.Unlock()
}

// Run samples until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	for {
		start := time.Now()
		wait := s.round()
		timer := time.NewTimer(wait - time.Since(start))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// round samples every source once and returns the time from its start to
// the next round's.
func (s *Sampler) round() time.Duration {
	start := time.Now()
	handles := s.namespaces.Handles()
	sources := s.listeners.allSources(handles)
	errs := make([]error, len(sources))
	cpu0 := processCPU()
	peaks := s.listeners.events.advance()
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(samplerWorkers, len(sources)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = sources[i].sample(peaks)
			}
		}()
	}
	for i := range sources {
		next <- i
	}
	close(next)
	wg.Wait()
	s.listeners.prune(handles)
	// The process's CPU over the round: the sampler's own, and whatever
	// else ran meanwhile (a scrape), which only makes it back off more
	// when the exporter is busy.
	wait := s.budget(processCPU() - cpu0)
	for _, src := range sources {
		if src.tracker != nil {
			src.tracker.SetInterval(wait)
		}
	}
	s.report(sources, errs, time.Since(start), wait)
	return wait
}

// budget returns the interval that keeps a round costing cost (CPU time)
// within maxCPU of a core.
func (s *Sampler) budget(cost time.Duration) time.Duration {
	if s.maxCPU <= 0 {
		return s.interval
	}
	return max(s.interval, time.Duration(float64(cost)/s.maxCPU))
}

func (s *Sampler) report(sources []*source, errs []error, took, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if wait > s.interval && !s.stretched {
		// Once: the interval in force is a metric, and it moves with load.
		s.stretched = true
		s.logger.Info("sampler rounds cost more than --sampler.max-cpu allows at --sampler.interval; sampling less often", "round", took, "interval", wait, "sources", len(sources))
	}
	s.lastRound, s.effective, s.rounds = took, wait, s.rounds+1
	live := make(map[*source]bool, len(sources))
	allOK := true
	for i, src := range sources {
		live[src] = true
		err := errs[i]
		if errors.Is(err, netns.ErrClosed) || errors.Is(err, errUnsupported) {
			err = nil // the namespace went during the round; or nothing to read
		}
		switch {
		case err != nil && !s.failing[src]:
			s.logger.Error("sampler cannot read listeners", "proto", src.proto, "netns", src.ns.ID, "err", err)
		case err == nil && s.failing[src]:
			s.logger.Info("sampler reads listeners again", "proto", src.proto, "netns", src.ns.ID)
		}
		s.failing[src] = err != nil
		if err != nil {
			s.errors[src]++
			allOK = false
		}
	}
	if allOK {
		s.lastSuccess = time.Now()
	}
	for src := range s.failing {
		if !live[src] {
			delete(s.failing, src)
			delete(s.errors, src)
		}
	}
}

// collect exports the sampler's own health, for the namespaces of this
// scrape: one that went since the last round has no series any more.
func (s *Sampler) collect(ch chan<- prometheus.Metric, handles []*netns.Handle) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(samplerRoundsDesc, prometheus.CounterValue, float64(s.rounds))
	if s.rounds > 0 {
		ch <- prometheus.MustNewConstMetric(samplerRoundDesc, prometheus.GaugeValue, s.lastRound.Seconds())
		ch <- prometheus.MustNewConstMetric(samplerIntervalDesc, prometheus.GaugeValue, s.effective.Seconds())
	}
	if !s.lastSuccess.IsZero() {
		ch <- prometheus.MustNewConstMetric(samplerLastSuccessDesc, prometheus.GaugeValue, float64(s.lastSuccess.UnixNano())/1e9)
	}
	// Every live source, so a namespace's counter exists (at 0) before
	// its first failure and rate() sees the first one.
	live := make(map[*netns.Handle]bool, len(handles))
	for _, h := range handles {
		live[h] = true
	}
	for src := range s.failing {
		if !live[src.ns] {
			continue
		}
		labels := append(nsLabelValues(src.ns), src.proto)
		ch <- prometheus.MustNewConstMetric(samplerErrorsDesc, prometheus.CounterValue, float64(s.errors[src]), labels...)
	}
}

// processCPU is the CPU time the exporter has used, user and system.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
