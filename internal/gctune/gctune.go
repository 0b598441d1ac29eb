// Package gctune lets the Go heap grow by a fixed headroom past what is
// live before the next collection, whatever the live size.
//
// Go's default GC target (GOGC=100) lets the heap reach twice its live
// size. Most of the exporter's live heap is what it keeps between scrapes
// (label sets, owners, sampler state, compressed segments), which grows
// with the listeners on the node: at 25,000 listeners the default doubled
// 15-20 MB into 30-40 MB of heap. A fixed lower GOGC would bound that but
// makes small nodes collect more often for nothing: at 1,000 listeners
// GOGC=50 cost a fifth more CPU per scrape and saved 1 MiB. The other way
// round, a small heap under the default collects every few scrapes: at
// 1,000 listeners (4 MB live, 0.6 MB allocated a scrape) the collector
// took an eighth of the exporter's CPU, and a target of 200 made a scrape
// 7-13% faster for 5 MB of RSS. So the target follows the live heap: what
// lets it grow by the headroom, never under a floor.
package gctune

import (
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// heapMinimum is the runtime's smallest heap goal at GOGC=100, which it
// scales with the target: at GOGC=200 no collection starts below 8 MiB.
const heapMinimum = 4 << 20

// Percent is the GC target that lets a heap with live bytes grow by about
// headroom: headroom/live, and less when the runtime's scaled heap minimum
// would let it grow further; at least floor. About: the runtime also counts
// goroutine stacks and globals into the growth (a few hundred KB here), so
// above 100 the heap may exceed live+headroom by that times the target.
func Percent(live, headroom uint64, floor int) int {
	p := (headroom + live) * 100 / heapMinimum
	if live > 0 {
		p = min(p, headroom*100/live)
	}
	return max(int(p), floor)
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
