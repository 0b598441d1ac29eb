package collector

import (
	"sync"
	"time"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/sampler"
)

// source is the listeners of one protocol in one network namespace. Reads
// are shared: concurrent callers wait for the read in flight instead of
// each asking the kernel, so 50 simultaneous scrapes cost one dump.
type source struct {
	ns    *netns.Handle
	proto string
	read  func(*netns.Handle) ([]Listener, error)
	// tracker is set when the sampler runs; the latest sample then answers
	// scrapes, so a scrape costs no dump at all.
	tracker *sampler.Tracker

	mu       sync.Mutex
	inflight *readResult
	latest   *readResult
}

type readResult struct {
	done      chan struct{}
	listeners []Listener
	err       error
	at        time.Time
}

// Listeners returns the newest listeners: the sampler's latest round when
// there is one, otherwise a fresh (shared) read.
func (s *source) Listeners() ([]Listener, error) {
	s.mu.Lock()
	if s.tracker != nil && s.latest != nil {
		r := s.latest
		s.mu.Unlock()
		return r.listeners, r.err
	}
	s.mu.Unlock()
	r := s.readShared()
	return r.listeners, r.err
}

// readShared reads from the kernel, or joins a read already in flight.
func (s *source) readShared() *readResult {
	s.mu.Lock()
	if r := s.inflight; r != nil {
		s.mu.Unlock()
		<-r.done
		return r
	}
	r := &readResult{done: make(chan struct{})}
	s.inflight = r
	s.mu.Unlock()

	r.listeners, r.err = s.read(s.ns)
	r.at = time.Now()

	s.mu.Lock()
	s.inflight = nil
	s.latest = r
	s.mu.Unlock()
	close(r.done)
	return r
}

// sample is one sampler round for this source.
func (s *source) sample() error {
	r := s.readShared()
	if r.err != nil {
		return r.err
	}
	samples := make([]sampler.Sample, len(r.listeners))
	for i, l := range r.listeners {
		samples[i] = sampler.Sample{Inode: l.Inode, Length: l.Length, Limit: l.Limit}
	}
	s.tracker.Observe(r.at, samples)
	return nil
}

// withStats adds the sampler's peak and full time to ls.
func (s *source) withStats(ls []Listener) []Listener {
	if s.tracker == nil {
		return ls
	}
	now := time.Now()
	out := make([]Listener, len(ls))
	for i, l := range ls {
		if st, ok := s.tracker.Stats(now, l.Inode); ok {
			l.Peak, l.FullSeconds, l.HasStats = st.Peak, st.FullSeconds, true
		}
		out[i] = l
	}
	return out
}
