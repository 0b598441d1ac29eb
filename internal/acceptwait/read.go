package acceptwait

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Reading is one read of the programs' state.
type Reading struct {
	Listeners map[uint64]Figures // by socket cookie
	Counters  Counters
}

// Read returns every listener's figures, keyed by socket cookie, and the
// counters; the listeners map is walked once for both.
func (t *Tracer) Read() (Reading, error) {
	now := monotonicNs()
	r := Reading{Listeners: map[uint64]Figures{}}
	err := t.each(func(cookie uint64, st *acceptwaitListenerState) {
		r.Listeners[cookie] = t.figures(st, now)
	})
	if err != nil {
		return r, err
	}
	r.Counters, err = t.counters(len(r.Listeners))
	return r, err
}

func (t *Tracer) figures(st *acceptwaitListenerState, now uint64) Figures {
	f := Figures{
		Netns: st.Netns, Accepted: st.Accepted, Timed: st.Timed,
		WaitSum: float64(st.WaitSumNs) / 1e9,
	}
	var cum uint64
	for i, n := range st.Buckets {
		cum += n
		f.Buckets[i] = cum
	}
	full := st.FullNs
	if st.FullSince != 0 && now > st.FullSince {
		full += now - st.FullSince
	}
	f.FullSeconds = float64(full) / 1e9
	return f
}

// each calls fn for every listener in the map. The map changes under the
// walk: a listener added meanwhile may be missed, one closed may be seen
// for the last time; both are what a scrape a moment earlier or later
// would have got.
func (t *Tracer) each(fn func(uint64, *acceptwaitListenerState)) error {
	var (
		cookie uint64
		st     acceptwaitListenerState
	)
	it := t.objs.Listeners.Iterate()
	for it.Next(&cookie, &st) {
		fn(cookie, &st)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading the listeners map: %w", err)
	}
	return nil
}

// Advance ends the current peak round and starts the next. It returns, for
// every listener with events in the round that ended, the highest queue
// length an event saw; listeners without events kept the length of their
// last event.
func (t *Tracer) Advance() (map[uint64]uint32, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ended := t.epoch
	t.epoch++
	if err := t.objs.Epoch.Set(t.epoch); err != nil {
		t.epoch--
		return nil, fmt.Errorf("advancing the peak round: %w", err)
	}
	peaks := map[uint64]uint32{}
	err := t.each(func(cookie uint64, st *acceptwaitListenerState) {
		switch st.Epoch {
		case ended, t.epoch:
			// Events of the new round write the other slot.
			peaks[cookie] = st.Peak[ended&1]
		default:
			peaks[cookie] = st.Length
		}
	})
	return peaks, err
}

// counters reads the programs' counters and the children map's size;
// listeners is the listeners map's.
func (t *Tracer) counters(listeners int) (Counters, error) {
	var c Counters
	sums := make([]uint64, numStats)
	for i := range sums {
		var perCPU []uint64
		if err := t.objs.Stats.Lookup(uint32(i), &perCPU); err != nil {
			return c, fmt.Errorf("reading counter %d: %w", i, err)
		}
		for _, v := range perCPU {
			sums[i] += v
		}
	}
	c.Joins, c.JoinsWithoutCookie = sums[0], sums[1]
	c.Accepts, c.AcceptsUnseen, c.AcceptsNoCookie = sums[2], sums[3], sums[4]
	c.ChildrenClosed, c.ChildrenAccepted = sums[5], sums[6]
	c.ListenersNew, c.ListenersClosed = sums[7], sums[8]
	var err error
	if c.Children, err = count(t.objs.Children); err != nil {
		return c, err
	}
	c.Listeners = listeners
	c.ChildrenCapacity = int(t.objs.Children.MaxEntries())
	c.ListenersCapacity = int(t.objs.Listeners.MaxEntries())
	// Every record ends by accept, close or eviction: what neither
	// accept nor close removed, and is not there now, was evicted.
	recorded := c.Joins - c.JoinsWithoutCookie
	c.ChildrenEvicted = sub(recorded, c.ChildrenAccepted+c.ChildrenClosed+uint64(c.Children))
	c.ListenersEvicted = sub(c.ListenersNew, c.ListenersClosed+uint64(c.Listeners))
	return c, nil
}

const numStats = 9

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// count walks a map's keys.
func count(m *ebpf.Map) (int, error) {
	var (
		key uint64
		n   int
	)
	for err := m.NextKey(nil, &key); ; err = m.NextKey(key, &key) {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("counting %s: %w", m, err)
		}
		n++
	}
}

// Waiting counts the connections waiting to be accepted whose join was
// recorded, by listener cookie: the children map's entries.
func (t *Tracer) Waiting() (map[uint64]int, error) {
	var (
		key uint64
		c   acceptwaitChild
	)
	out := map[uint64]int{}
	it := t.objs.Children.Iterate()
	for it.Next(&key, &c) {
		out[c.Listener]++
	}
	if err := it.Err(); err != nil {
		return out, fmt.Errorf("reading the children map: %w", err)
	}
	return out, nil
}
