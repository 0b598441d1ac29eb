// Package sampler keeps, per listening socket, what frequent samples of its
// queue showed between scrapes: the peak length over a trailing window and
// the time the queue was seen full.
package sampler

import (
	"math"
	"sync"
	"time"
)

// Sample is one reading of one listener's queue.
type Sample struct {
	Inode  uint64
	Length uint32
	Limit  uint32
}

// Full reports whether the queue had no room: the kernel admits one entry
// beyond the backlog, so a full queue has Length > Limit.
func (s Sample) Full() bool { return s.Length > s.Limit }

// Stats is what the Tracker knows of one listener.
type Stats struct {
	Peak        uint32  // highest length over the trailing window
	FullSeconds float64 // accumulated time seen full
}

// numBuckets splits the window: the peak is the maximum of the buckets that
// overlap the window, so it may include up to window/numBuckets more than
// the window. A window that does not start on a bucket boundary overlaps
// numBuckets+1 buckets, so that many slots are kept per listener.
const numBuckets = 15

// noBucket marks a slot that holds no bucket yet (indexes may be negative
// for times before the epoch).
const noBucket = math.MinInt64

// numSlots is the number of buckets a series keeps: every bucket that can
// overlap the window.
const numSlots = numBuckets + 1

// Tracker holds per-listener state for one source of listeners (one
// protocol in one namespace). It is safe for concurrent use.
type Tracker struct {
	width  time.Duration // of one bucket
	maxGap time.Duration // longest time one sample may stand for

	mu     sync.Mutex
	series map[uint64]*series
	// order is the series of the last round, in the order of its samples,
	// and spare a slice to build the next one in. A dump lists sockets in
	// the same order from one round to the next unless they change, so a
	// round finds most series here without a map lookup.
	order, spare []*series
	round        uint32
	// epoch is the first observation's time. Buckets are counted from it
	// with Time.Sub, which uses the monotonic clock: a wall-clock step (NTP)
	// must neither expire peaks nor keep them past the window.
	epoch time.Time
}

type series struct {
	inode uint64
	// buckets is nil until the queue is first seen non-empty: most
	// listeners never queue, and their peak is 0 without them. That keeps
	// an idle listener's state under half a busy one's (96 bytes, against 256).
	buckets  *buckets
	fullSecs float64
	// lastSample is since the Tracker's epoch, valid once round is not 0:
	// a time.Time would be a third of an idle listener's state.
	lastSample time.Duration
	round      uint32 // last round that saw the listener
}

// NewTracker returns a Tracker with a trailing window for peaks; interval is
// the sampling interval, used to bound how much time one sample accounts
// for when sampling was delayed.
func NewTracker(window, interval time.Duration) *Tracker {
	width := window / numBuckets
	if width <= 0 {
		width = time.Millisecond
	}
	return &Tracker{width: width, maxGap: 2 * interval, series: map[uint64]*series{}}
}

// SetInterval tells the Tracker the sampling interval now in force, when
// the sampler stretches it to stay within its CPU budget.
func (t *Tracker) SetInterval(interval time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.maxGap = 2 * interval
}

// Observe records one sampling round taken at now. Listeners missing from
// samples are gone and their state is dropped, so memory follows the live
// listeners.
func (t *Tracker) Observe(now time.Time, samples []Sample) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.epoch.IsZero() {
		t.epoch = now
	}
	idx, at := t.bucket(now), now.Sub(t.epoch)
	t.round++
	next, seen := t.spare[:0], 0
	for i, s := range samples {
		sr := t.find(i, s.Inode)
		if sr.round != t.round {
			seen++ // a dump under churn may list a socket twice
		}
		sr.record(idx, s.Length)
		if s.Full() && sr.round != 0 {
			sr.fullSecs += min(at-sr.lastSample, t.maxGap).Seconds()
		}
		sr.lastSample, sr.round = at, t.round
		next = append(next, sr)
	}
	if seen < len(t.series) {
		for ino, sr := range t.series {
			if sr.round != t.round {
				delete(t.series, ino)
			}
		}
	}
	clear(t.order) // drop the pointers, so the spare holds no gone series
	t.order, t.spare = next, t.order
}

// find returns the series of the inode that is sample i of this round,
// creating it for a new listener.
func (t *Tracker) find(i int, inode uint64) *series {
	if i < len(t.order) && t.order[i].inode == inode {
		return t.order[i]
	}
	sr := t.series[inode]
	if sr == nil {
		sr = &series{inode: inode}
		t.series[inode] = sr
	}
	return sr
}

// bucket is the index of the bucket holding now, counted from the epoch.
func (t *Tracker) bucket(now time.Time) int64 {
	d := now.Sub(t.epoch)
	idx := int64(d / t.width)
	if d < 0 && d%t.width != 0 {
		idx-- // floor, so slots stay in range
	}
	return idx
}

// buckets are the maxima of the last numSlots buckets of a series.
type buckets struct {
	maxes [numSlots]uint32
	idx   [numSlots]int64 // which bucket each slot holds
}

func (sr *series) record(idx int64, length uint32) {
	if sr.buckets == nil {
		if length == 0 {
			return // a bucket of 0 adds nothing to a peak of 0
		}
		sr.buckets = &buckets{}
		for i := range sr.buckets.idx {
			sr.buckets.idx[i] = noBucket
		}
	}
	b := sr.buckets
	slot := ((idx % numSlots) + numSlots) % numSlots
	if b.idx[slot] != idx {
		b.idx[slot], b.maxes[slot] = idx, 0
	}
	b.maxes[slot] = max(b.maxes[slot], length)
}

// Stats returns the state of one listener as of now; ok is false for a
// listener the Tracker has not sampled.
func (t *Tracker) Stats(now time.Time, inode uint64) (Stats, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sr, ok := t.series[inode]
	if !ok {
		return Stats{}, false
	}
	return Stats{Peak: sr.peak(t.bucket(now)), FullSeconds: sr.fullSecs}, true
}

// peak is the highest length in the buckets overlapping the window that
// ends in bucket idx.
func (sr *series) peak(idx int64) uint32 {
	if sr.buckets == nil {
		return 0
	}
	var peak uint32
	for slot, bi := range sr.buckets.idx {
		// Bucket idx-numBuckets holds now-window (its end is after it),
		// so it overlaps the window and counts.
		if bi >= idx-numBuckets && bi <= idx {
			peak = max(peak, sr.buckets.maxes[slot])
		}
	}
	return peak
}

// Len reports how many listeners the Tracker holds state for.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.series)
}
