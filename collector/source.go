package collector

import (
	"slices"
	"sync"
	"time"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/sampler"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

// source is the listeners of one protocol in one network namespace.
//
// Scrapes read it with a full dump (addresses, names, drops). Such reads are
// shared: concurrent scrapes wait for the read in flight instead of each
// asking the kernel, so 50 simultaneous scrapes cost one dump. The sampler
// reads only the queue lengths, a much cheaper dump, every interval.
type source struct {
	ns     *netns.Handle
	proto  string
	read   readFunc
	queues func(*netns.Handle, []sockdiag.Queue) ([]sockdiag.Queue, error)
	// tracker is set when the sampler runs.
	tracker *sampler.Tracker

	labelMu    sync.Mutex
	labels     map[uint64]*labelSet // see labelSets
	labelRound uint32
	nsl        *listenerNS // see nsLabelSet

	mu       sync.Mutex
	inflight *readResult
	reads    int // kernel reads made for scrapes, for tests

	// Reused by the sampler's rounds, which run one at a time.
	queueBuf  []sockdiag.Queue
	sampleBuf []sampler.Sample
}

type readResult struct {
	done      chan struct{}
	listeners []Listener
	err       error
	joiners   int // under source.mu
}

// Listeners reads the listeners from the kernel, or joins a read already in
// flight. The slice returned is the caller's own, to change.
func (s *source) Listeners() ([]Listener, error) {
	s.mu.Lock()
	if r := s.inflight; r != nil {
		r.joiners++
		s.mu.Unlock()
		<-r.done
		return slices.Clone(r.listeners), r.err
	}
	r := &readResult{done: make(chan struct{})}
	s.inflight = r
	s.reads++
	s.mu.Unlock()

	ls, err := s.read(s.ns, s.knownAddress)
	r.err = err

	s.mu.Lock()
	s.inflight = nil
	if r.joiners > 0 {
		// Joiners copy these; the reader keeps ls to change.
		r.listeners = slices.Clone(ls)
	}
	s.mu.Unlock()
	close(r.done)
	return ls, err
}

// knownAddress is the address the listener with inode was last exported
// with; "" for one not exported.
func (s *source) knownAddress(inode uint64) string {
	s.labelMu.Lock()
	defer s.labelMu.Unlock()
	if ls := s.labels[inode]; ls != nil {
		return ls.listener
	}
	return ""
}

// sample is one sampler round for this source. peaks, when the acceptwait
// collector runs, are the highest queue lengths its events saw in the
// round, by socket cookie: a sample of that length stands for them, so the
// tracker's windowed peak is exact.
func (s *source) sample(peaks map[uint64]uint32) error {
	if s.tracker == nil {
		return nil
	}
	qs, err := s.queues(s.ns, s.queueBuf[:0])
	if err != nil {
		return err
	}
	samples := s.sampleBuf[:0]
	for _, q := range qs {
		length := q.Length
		if p, ok := peaks[q.Cookie]; ok && q.Cookie != 0 {
			length = max(length, p)
		}
		samples = append(samples, sampler.Sample{Inode: uint64(q.Inode), Length: length, Limit: q.Limit})
	}
	s.tracker.Observe(time.Now(), samples)
	s.queueBuf, s.sampleBuf = qs, samples
	return nil
}

// withStats adds the sampler's peak and full time to ls, in place. A listener newer
// than the sampler's last round has no stats yet and gets none.
func (s *source) withStats(ls []Listener) []Listener {
	if s.tracker == nil {
		return ls
	}
	now := time.Now()
	for i := range ls {
		l := &ls[i]
		if st, ok := s.tracker.Stats(now, l.Inode); ok {
			// The scrape's own reading is a sample too.
			l.Peak, l.FullSeconds, l.HasStats = max(st.Peak, l.Length), st.FullSeconds, true
		}
	}
	return ls
}
