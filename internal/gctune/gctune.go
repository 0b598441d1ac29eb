// Package gctune bounds how far the Go heap may grow past what is live
// before the next collection.
//
// Go's default GC target (GOGC=100) lets the heap reach twice its live
// size. Most of the exporter's live heap is what it keeps between scrapes
// (label sets, owners, sampler state, compressed segments), which grows
// with the listeners on the node: at 25,000 listeners the default doubled
// 15-20 MB into 30-40 MB of heap. A fixed lower GOGC would bound that but
// makes small nodes collect more often for nothing: at 1,000 listeners
// GOGC=50 cost a fifth more CPU per scrape and saved 1 MiB. So the target
// follows the live heap: 100 while growing by 100% stays under a fixed
// headroom, lower above it, never under a floor.
package gctune

import (
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// Percent is the GC target that lets a heap with live bytes grow by at
// most headroom: 100 while live is below headroom, then headroom/live,
// and at least floor.
func Percent(live, headroom uint64, floor int) int {
	if live <= headroom {
		return 100
	}
	return max(int(headroom*100/live), floor)
}

// Tuner sets the GC target from the live heap each time Tune is called.
type Tuner struct {
	headroom uint64
	floor    int

	mu     sync.Mutex
	sample []metrics.Sample
	last   int
}

// New returns a Tuner for headroom bytes and a floor percent.
func New(headroom uint64, floor int) *Tuner {
	return &Tuner{headroom: headroom, floor: floor, last: 100,
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
}

// Tune sets the GC target for the live heap of the last collection, and
// returns it; a call that meets another in progress returns -1 at once.
func (t *Tuner) Tune() int {
	if !t.mu.TryLock() {
		return -1
	}
	defer t.mu.Unlock()
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() != metrics.KindUint64 {
		return t.last // a runtime without the metric: left as it is
	}
	if p := Percent(t.sample[0].Value.Uint64(), t.headroom, t.floor); p != t.last {
		debug.SetGCPercent(p)
		t.last = p
	}
	return t.last
}
