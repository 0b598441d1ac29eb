package collector

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/listenq/listenq_exporter/internal/sampler"
)

// Sampler reads the queue lengths of every listener source every interval
// in the background, so bursts that fill and drain a queue between two
// scrapes still show up as a peak and as time spent full. It asks the kernel
// for lengths only (no names, no memory counters), a dump several times
// cheaper than a scrape's; scrapes still read names and drops themselves.
type Sampler struct {
	interval, window time.Duration
	logger           *slog.Logger

	mu      sync.Mutex
	sources []*source
}

// NewSampler returns a Sampler, or nil when interval is 0 (sampler off).
func NewSampler(interval, window time.Duration, logger *slog.Logger) *Sampler {
	if interval <= 0 {
		return nil
	}
	return &Sampler{interval: interval, window: window, logger: logger}
}

// attach makes s sample src.
func (s *Sampler) attach(src *source) {
	if s == nil {
		return
	}
	src.tracker = sampler.NewTracker(s.window, s.interval)
	s.mu.Lock()
	s.sources = append(s.sources, src)
	s.mu.Unlock()
}

// Run samples until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	s.mu.Lock()
	sources := s.sources
	s.mu.Unlock()
	if len(sources) == 0 {
		return
	}
	failing := make([]bool, len(sources))
	ticker := time.NewTicker(s.interval)
	defer ticker.Stop()
	for {
		for i, src := range sources {
			err := src.sample()
			switch {
			case err != nil && !failing[i]:
				s.logger.Error("sampler cannot read listeners", "proto", src.proto, "netns", src.ns.ID, "err", err)
			case err == nil && failing[i]:
				s.logger.Info("sampler reads listeners again", "proto", src.proto, "netns", src.ns.ID)
			}
			failing[i] = err != nil
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
