package collector

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
	logger           *slog.Logger

	namespaces netns.Namespaces
	listeners  *ListenerExporter

	mu        sync.Mutex
	lastRound time.Duration
	rounds    uint64
	failing   map[*source]bool
}

// samplerWorkers bounds the namespaces read at once in a round: the work is
// kernel time, and two cores are common on small nodes.
const samplerWorkers = 2

var samplerRoundDesc = prometheus.NewDesc(namespace+"_sampler_round_duration_seconds",
	"How long the background sampler's last round over every listener of every namespace took; when it nears --sampler.interval the sampler cannot keep up.",
	nil, nil)

// NewSampler returns a Sampler, or nil when interval is 0 (sampler off).
func NewSampler(interval, window time.Duration, logger *slog.Logger) *Sampler {
	if interval <= 0 {
		return nil
	}
	return &Sampler{interval: interval, window: window, logger: logger, failing: map[*source]bool{}}
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
	ticker := time.NewTicker(s.interval)
	defer ticker.Stop()
	for {
		s.round()
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// round samples every source once.
func (s *Sampler) round() {
	start := time.Now()
	handles := s.namespaces.Handles()
	sources := s.listeners.allSources(handles)
	errs := make([]error, len(sources))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(samplerWorkers, len(sources)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = sources[i].sample()
			}
		}()
	}
	for i := range sources {
		next <- i
	}
	close(next)
	wg.Wait()
	s.listeners.prune(handles)
	s.report(sources, errs, time.Since(start))
}

func (s *Sampler) report(sources []*source, errs []error, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastRound, s.rounds = took, s.rounds+1
	live := make(map[*source]bool, len(sources))
	for i, src := range sources {
		live[src] = true
		err := errs[i]
		if errors.Is(err, netns.ErrClosed) {
			err = nil // the namespace went during the round
		}
		switch {
		case err != nil && !s.failing[src]:
			s.logger.Error("sampler cannot read listeners", "proto", src.proto, "netns", src.ns.ID, "err", err)
		case err == nil && s.failing[src]:
			s.logger.Info("sampler reads listeners again", "proto", src.proto, "netns", src.ns.ID)
		}
		s.failing[src] = err != nil
	}
	for src := range s.failing {
		if !live[src] {
			delete(s.failing, src)
		}
	}
}

// collect exports the sampler's own health.
func (s *Sampler) collect(ch chan<- prometheus.Metric) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rounds > 0 {
		ch <- prometheus.MustNewConstMetric(samplerRoundDesc, prometheus.GaugeValue, s.lastRound.Seconds())
	}
}
