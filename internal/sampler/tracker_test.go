package sampler

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// t0 starts on a bucket boundary for every window used below, so offsets
// from it say exactly which bucket a sample falls in.
var t0 = time.Unix(1_700_000_000, 0)

func at(d time.Duration) time.Time { return t0.Add(d) }

const (
	testWindow   = 15 * time.Second // one-second buckets
	testInterval = time.Second      // a sample may stand for at most 2s
)

// obs is one sampling round for a single listener (inode 1).
type obs struct {
	at            time.Duration
	length, limit uint32
}

func observeAll(tr *Tracker, rounds []obs) {
	for _, o := range rounds {
		tr.Observe(at(o.at), []Sample{{Inode: 1, Length: o.length, Limit: o.limit}})
	}
}

// steady returns one sample per second of length n from..to (inclusive).
func steady(from, to time.Duration, n uint32) []obs {
	var out []obs
	for d := from; d <= to; d += time.Second {
		out = append(out, obs{d, n, 100})
	}
	return out
}

func concat(parts ...[]obs) []obs {
	var out []obs
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestSampleFull(t *testing.T) {
	for _, tc := range []struct {
		length, limit uint32
		want          bool
	}{
		{0, 0, false},
		{1, 0, true}, // listen(fd, 0) admits one: full at 1
		{3, 4, false},
		{4, 4, false}, // length == limit still has room for one
		{5, 4, true},  // backlog 4 holds 5
		{6, 4, true},
		{0, 4096, false},
		{math.MaxUint32, math.MaxUint32 - 1, true},
		{math.MaxUint32, math.MaxUint32, false},
	} {
		s := Sample{Inode: 9, Length: tc.length, Limit: tc.limit}
		if got := s.Full(); got != tc.want {
			t.Errorf("Sample{Length: %d, Limit: %d}.Full() = %v, want %v", tc.length, tc.limit, got, tc.want)
		}
	}
}

func TestTrackerPeak(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window time.Duration
		rounds []obs
		query  time.Duration
		want   uint32
	}{
		{
			name:   "steady length",
			rounds: steady(0, 5*time.Second, 3),
			query:  5 * time.Second,
			want:   3,
		},
		{
			name:   "peak is the highest sample, not the latest",
			rounds: []obs{{0, 1, 100}, {time.Second, 9, 100}, {2 * time.Second, 2, 100}},
			query:  2 * time.Second,
			want:   9,
		},
		{
			name:   "several samples in one bucket keep their maximum",
			rounds: []obs{{100 * time.Millisecond, 5, 100}, {500 * time.Millisecond, 7, 100}, {900 * time.Millisecond, 2, 100}},
			query:  900 * time.Millisecond,
			want:   7,
		},
		{
			name:   "burst one bucket short of the window is kept",
			rounds: concat([]obs{{0, 50, 100}}, steady(time.Second, 14*time.Second, 1)),
			query:  14 * time.Second,
			want:   50,
		},
		{
			// The burst is 14.2s old with a 15s window, in the last bucket
			// of the window, and the window does not start on a bucket
			// boundary.
			name:   "burst just inside the window, unaligned",
			rounds: concat([]obs{{900 * time.Millisecond, 50, 100}}, steady(time.Second, 15*time.Second, 1)),
			query:  15*time.Second + 100*time.Millisecond,
			want:   50,
		},
		{
			name:   "burst exactly one window old is kept",
			rounds: concat([]obs{{0, 50, 100}}, steady(time.Second, 15*time.Second, 1)),
			query:  15 * time.Second,
			want:   50,
		},
		{
			// Up to one bucket (window/15) beyond the window may still
			// count; a bucket and a bit more may not.
			name:   "burst older than window plus one bucket is gone",
			rounds: concat([]obs{{0, 50, 100}}, steady(time.Second, 17*time.Second, 1)),
			query:  17 * time.Second,
			want:   1,
		},
		{
			name:   "burst well outside the window is gone",
			rounds: concat([]obs{{0, 50, 100}}, steady(time.Second, 40*time.Second, 2)),
			query:  40 * time.Second,
			want:   2,
		},
		{
			// A bucket slot reused after a full turn must not keep the
			// maximum of the bucket it held before.
			name:   "reused slot is reset",
			rounds: concat([]obs{{0, 50, 100}}, steady(16*time.Second, 32*time.Second, 4)),
			query:  32 * time.Second,
			want:   4,
		},
		{
			name:   "peak decays without new samples",
			rounds: []obs{{0, 50, 100}},
			query:  20 * time.Second,
			want:   0,
		},
		{
			name:   "larger window, 4s buckets",
			window: time.Minute,
			rounds: concat([]obs{{3 * time.Second, 30, 100}}, steady(4*time.Second, 62*time.Second, 1)),
			query:  62 * time.Second, // the burst is 59s old
			want:   30,
		},
		{
			name:   "larger window, burst well outside",
			window: time.Minute,
			rounds: concat([]obs{{3 * time.Second, 30, 100}}, steady(4*time.Second, 70*time.Second, 1)),
			query:  70 * time.Second, // 67s old: more than window + one bucket
			want:   1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			window := tc.window
			if window == 0 {
				window = testWindow
			}
			tr := NewTracker(window, testInterval)
			observeAll(tr, tc.rounds)
			st, ok := tr.Stats(at(tc.query), 1)
			if !ok {
				t.Fatal("Stats: listener unknown")
			}
			if st.Peak != tc.want {
				t.Errorf("peak = %d, want %d", st.Peak, tc.want)
			}
		})
	}
}

// TestTrackerPeakSlidingBurst moves the query time across the window edge
// in small steps for bursts at every phase within a bucket: inside the
// window the burst always counts, beyond window plus one bucket it never
// does.
func TestTrackerPeakSlidingBurst(t *testing.T) {
	const width = testWindow / numBuckets
	for phase := time.Duration(0); phase < width; phase += 100 * time.Millisecond {
		tr := NewTracker(testWindow, testInterval)
		burst := at(10*time.Second + phase)
		tr.Observe(burst, []Sample{{Inode: 1, Length: 77, Limit: 100}})
		for age := time.Duration(0); age <= testWindow+2*width; age += 50 * time.Millisecond {
			st, _ := tr.Stats(burst.Add(age), 1)
			switch {
			case age <= testWindow && st.Peak != 77:
				t.Errorf("phase %v: burst %v old (window %v): peak = %d, want 77", phase, age, testWindow, st.Peak)
				return
			case age > testWindow+width && st.Peak != 0:
				t.Errorf("phase %v: burst %v old (window %v + bucket %v): peak = %d, want 0", phase, age, testWindow, width, st.Peak)
				return
			}
		}
	}
}

// TestTrackerPeakWithinLimit feeds what a kernel can report (a queue never
// holds more than limit+1) for many listeners and rounds: the peak is never
// above limit+1 nor below the latest length, and listeners never mix.
func TestTrackerPeakWithinLimit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const listeners = 200
	limits := make([]uint32, listeners)
	for i := range limits {
		limits[i] = uint32(rng.IntN(600)) // includes listen(fd, 0)
	}
	tr := NewTracker(testWindow, 100*time.Millisecond)
	now := t0
	for round := range 600 {
		now = now.Add(time.Duration(50+rng.IntN(100)) * time.Millisecond)
		samples := make([]Sample, listeners)
		for i := range samples {
			length := uint32(rng.IntN(int(limits[i]) + 2))
			if round%7 == 0 {
				length = limits[i] + 1 // a burst fills every queue
			}
			samples[i] = Sample{Inode: uint64(1000 + i), Length: length, Limit: limits[i]}
		}
		tr.Observe(now, samples)
		for _, s := range samples {
			st, ok := tr.Stats(now, s.Inode)
			if !ok {
				t.Fatalf("round %d: inode %d unknown", round, s.Inode)
			}
			if st.Peak > s.Limit+1 {
				t.Fatalf("round %d: inode %d: peak %d above limit+1 = %d", round, s.Inode, st.Peak, s.Limit+1)
			}
			if st.Peak < s.Length {
				t.Fatalf("round %d: inode %d: peak %d below the length just sampled, %d", round, s.Inode, st.Peak, s.Length)
			}
		}
	}
}

func TestTrackerFullSeconds(t *testing.T) {
	const limit = 4
	full, notFull, atLimit := uint32(limit+1), uint32(limit-1), uint32(limit)
	ms := time.Millisecond
	for _, tc := range []struct {
		name   string
		rounds []obs
		want   float64
	}{
		{"first sample of a new listener credits nothing", []obs{{0, full, limit}}, 0},
		{"two full samples a second apart", []obs{{0, full, limit}, {time.Second, full, limit}}, 1},
		{"time up to a full sample counts", []obs{{0, notFull, limit}, {time.Second, full, limit}}, 1},
		{"time up to a sample with room does not", []obs{{0, full, limit}, {time.Second, notFull, limit}}, 0},
		{"length == limit is not full", []obs{{0, atLimit, limit}, {time.Second, atLimit, limit}, {2 * time.Second, atLimit, limit}}, 0},
		{"never full", steady(0, 10*time.Second, 3), 0},
		{"sub-second gaps add up", []obs{
			{0, full, limit}, {100 * ms, full, limit}, {250 * ms, full, limit}, {300 * ms, notFull, limit}, {700 * ms, full, limit},
		}, 0.1 + 0.15 + 0.4},
		{"gap of 1.5 intervals counts in full", []obs{{0, full, limit}, {1500 * ms, full, limit}}, 1.5},
		{"gap of exactly 2 intervals counts in full", []obs{{0, full, limit}, {2 * time.Second, full, limit}}, 2},
		{"gap longer than 2 intervals is capped", []obs{{0, full, limit}, {5 * time.Second, full, limit}}, 2},
		{"capped gaps add up", []obs{{0, full, limit}, {10 * time.Second, full, limit}, {11 * time.Second, full, limit}, {60 * time.Second, full, limit}}, 2 + 1 + 2},
		{"listen backlog 0 admits one", []obs{{0, 1, 0}, {time.Second, 1, 0}}, 1},
		{"limit raised by a second listen() call", []obs{{0, full, limit}, {time.Second, full, limit}, {2 * time.Second, full, 511}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker(testWindow, testInterval)
			observeAll(tr, tc.rounds)
			last := tc.rounds[len(tc.rounds)-1].at
			st, ok := tr.Stats(at(last), 1)
			if !ok {
				t.Fatal("Stats: listener unknown")
			}
			if math.Abs(st.FullSeconds-tc.want) > 1e-9 {
				t.Errorf("FullSeconds = %v, want %v", st.FullSeconds, tc.want)
			}
		})
	}
}

// TestTrackerFullSecondsPerListener checks that time is credited to each
// listener from its own samples only.
func TestTrackerFullSecondsPerListener(t *testing.T) {
	tr := NewTracker(testWindow, testInterval)
	for i := range 5 {
		tr.Observe(at(time.Duration(i)*time.Second), []Sample{
			{Inode: 1, Length: 5, Limit: 4},               // always full
			{Inode: 2, Length: 1, Limit: 4},               // never full
			{Inode: 3, Length: uint32(4 + i%2), Limit: 4}, // full every other round (i = 1, 3)
		})
	}
	for ino, want := range map[uint64]float64{1: 4, 2: 0, 3: 2} {
		st, ok := tr.Stats(at(4*time.Second), ino)
		if !ok {
			t.Fatalf("inode %d unknown", ino)
		}
		if st.FullSeconds != want {
			t.Errorf("inode %d: FullSeconds = %v, want %v", ino, st.FullSeconds, want)
		}
	}
}

func TestTrackerForgetsAbsentListeners(t *testing.T) {
	tr := NewTracker(testWindow, testInterval)
	if n := tr.Len(); n != 0 {
		t.Fatalf("new tracker holds %d listeners", n)
	}
	if _, ok := tr.Stats(t0, 1); ok {
		t.Error("new tracker knows inode 1")
	}
	full := func(ino uint64) Sample { return Sample{Inode: ino, Length: 9, Limit: 8} }

	tr.Observe(at(0), []Sample{full(1), full(2), full(3)})
	tr.Observe(at(time.Second), []Sample{full(1), full(2), full(3)})
	if n := tr.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
	if st, _ := tr.Stats(at(time.Second), 2); st.FullSeconds != 1 || st.Peak != 9 {
		t.Fatalf("inode 2 before it goes: %+v, want 1 full second and peak 9", st)
	}

	// Inode 2 closes.
	tr.Observe(at(2*time.Second), []Sample{full(1), full(3)})
	if n := tr.Len(); n != 2 {
		t.Errorf("Len = %d after inode 2 went, want 2", n)
	}
	if st, ok := tr.Stats(at(2*time.Second), 2); ok {
		t.Errorf("inode 2 is gone but Stats returned %+v, ok", st)
	}
	for _, ino := range []uint64{1, 3} {
		if st, ok := tr.Stats(at(2*time.Second), ino); !ok || st.FullSeconds != 2 {
			t.Errorf("inode %d: %+v, %v; want 2 full seconds", ino, st, ok)
		}
	}

	// Inode 2 comes back (an inode number reused, or a dump that missed
	// it): it starts fresh, its old peak and full time are not resurrected,
	// and its first sample credits nothing.
	tr.Observe(at(3*time.Second), []Sample{full(1), {Inode: 2, Length: 1, Limit: 0}, full(3)})
	st, ok := tr.Stats(at(3*time.Second), 2)
	if !ok {
		t.Fatal("inode 2 came back but is unknown")
	}
	if st.FullSeconds != 0 || st.Peak != 1 {
		t.Errorf("inode 2 after coming back: %+v, want a fresh start (peak 1, 0 full seconds)", st)
	}
	if n := tr.Len(); n != 3 {
		t.Errorf("Len = %d, want 3", n)
	}

	// An empty round forgets everyone.
	tr.Observe(at(4*time.Second), nil)
	if n := tr.Len(); n != 0 {
		t.Errorf("Len = %d after an empty round, want 0", n)
	}
}

// TestTrackerDuplicateInode: a dump under churn can list a socket twice;
// that must neither double the full time nor forget the socket.
func TestTrackerDuplicateInode(t *testing.T) {
	tr := NewTracker(testWindow, testInterval)
	s := Sample{Inode: 1, Length: 5, Limit: 4}
	tr.Observe(at(0), []Sample{s, s})
	tr.Observe(at(time.Second), []Sample{s, s})
	st, ok := tr.Stats(at(time.Second), 1)
	if !ok || st.FullSeconds != 1 || st.Peak != 5 {
		t.Errorf("Stats = %+v, %v; want 1 full second, peak 5", st, ok)
	}
	if n := tr.Len(); n != 1 {
		t.Errorf("Len = %d, want 1", n)
	}
}

func TestTrackerConcurrentUse(t *testing.T) {
	tr := NewTracker(testWindow, testInterval)
	samples := make([]Sample, 100)
	for i := range samples {
		samples[i] = Sample{Inode: uint64(i), Length: 5, Limit: 4}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 200 {
			tr.Observe(at(time.Duration(i)*time.Second), samples)
		}
	})
	for range 4 {
		wg.Go(func() {
			for i := range 200 {
				tr.Stats(at(time.Duration(i)*time.Second), uint64(i%100))
				tr.Len()
			}
		})
	}
	wg.Wait()
	// Each of the 199 one-second gaps is credited once.
	if st, _ := tr.Stats(at(199*time.Second), 42); st.FullSeconds != 199 {
		t.Errorf("FullSeconds = %v, want 199", st.FullSeconds)
	}
}

func makeSamples(n int) []Sample {
	out := make([]Sample, n)
	for i := range out {
		out[i] = Sample{Inode: uint64(100_000 + i), Length: uint32(i % 7), Limit: 5}
	}
	return out
}

// BenchmarkTrackerObserve is one sampler round over 11,000 listeners (1,000
// TCP + 10,000 unix) in steady state.
func BenchmarkTrackerObserve(b *testing.B) {
	for _, n := range []int{1_000, 11_000} {
		b.Run(fmt.Sprintf("listeners=%d", n), func(b *testing.B) {
			samples := makeSamples(n)
			tr := NewTracker(time.Minute, 100*time.Millisecond)
			now := t0
			tr.Observe(now, samples)
			b.ReportAllocs()
			rounds := 0
			for b.Loop() {
				now = now.Add(100 * time.Millisecond)
				tr.Observe(now, samples)
				rounds++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rounds)/float64(n), "ns/listener")
		})
	}
}

// BenchmarkTrackerStats is what a scrape pays per listener.
func BenchmarkTrackerStats(b *testing.B) {
	samples := makeSamples(11_000)
	tr := NewTracker(time.Minute, 100*time.Millisecond)
	tr.Observe(t0, samples)
	i := 0
	for b.Loop() {
		tr.Stats(t0, samples[i%len(samples)].Inode)
		i++
	}
}

// TestTrackerRetainedBytesPerListener measures the heap a Tracker keeps per
// listener in steady state (after several rounds, so the map is the one a
// round leaves behind), for queues in use and for idle ones, which are
// most listeners of a node and keep no buckets.
func TestTrackerRetainedBytesPerListener(t *testing.T) {
	const n = 10_000
	busy := retainedPerListener(t, makeSamples(n))
	idle := makeSamples(n)
	for i := range idle {
		idle[i].Length = 0
	}
	quiet := retainedPerListener(t, idle)
	t.Logf("retained heap per listener (%d listeners): %.0f bytes with queues in use, %.0f idle", n, busy, quiet)
	// A series is about 200 bytes of buckets plus its map entry; ten times
	// that means state leaks across rounds.
	if busy <= 0 || busy > 2048 {
		t.Errorf("retained %.0f bytes per listener, want between 0 and 2048", busy)
	}
	if quiet <= 0 || quiet > busy/2 {
		t.Errorf("retained %.0f bytes per idle listener, want under half the %.0f of a busy one", quiet, busy)
	}
}

func retainedPerListener(t *testing.T, samples []Sample) float64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tr := NewTracker(time.Minute, 100*time.Millisecond)
	for i := range 5 {
		tr.Observe(at(time.Duration(i)*100*time.Millisecond), samples)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if tr.Len() != len(samples) {
		t.Fatalf("Len = %d, want %d", tr.Len(), len(samples))
	}
	runtime.KeepAlive(tr)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(len(samples))
}

// TestTrackerSetInterval: when the sampler stretches its interval (CPU
// budget), a full sample stands for the longer gap, not two old intervals.
func TestTrackerSetInterval(t *testing.T) {
	tr := NewTracker(time.Minute, 100*time.Millisecond)
	t0 := time.Unix(1000, 0)
	full := []Sample{{Inode: 1, Length: 5, Limit: 4}}
	tr.Observe(t0, full)
	tr.Observe(t0.Add(time.Second), full)
	if st, _ := tr.Stats(t0.Add(time.Second), 1); st.FullSeconds != 0.2 {
		t.Errorf("at a 100ms interval a 1s gap counts %v s, want 0.2 (two intervals)", st.FullSeconds)
	}
	tr.SetInterval(time.Second)
	tr.Observe(t0.Add(2*time.Second), full)
	if st, _ := tr.Stats(t0.Add(2*time.Second), 1); st.FullSeconds != 1.2 {
		t.Errorf("at a 1s interval a 1s gap counts %v s more, want 1 (total 1.2)", st.FullSeconds-0.2)
	}
}

// steppedWall returns t with its wall clock moved by d and its monotonic
// reading kept: what time.Now() returns after an NTP step. The time
// package offers no way to build one, so this edits the representation
// documented in time.Time (wall: hasMonotonic flag, 33 bits of seconds
// since 1885, 30 bits of nanoseconds; ext: monotonic nanoseconds).
func steppedWall(t *testing.T, now time.Time, d time.Duration) time.Time {
	t.Helper()
	type repr struct {
		wall uint64
		ext  int64
		loc  *time.Location
	}
	const hasMonotonic, nsecShift = 1 << 63, 30
	r := (*repr)(unsafe.Pointer(&now))
	if r.wall&hasMonotonic == 0 || d%time.Second != 0 {
		t.Fatal("steppedWall needs a monotonic time and whole seconds")
	}
	secs := int64(r.wall<<1>>(nsecShift+1)) + int64(d/time.Second)
	r.wall = hasMonotonic | uint64(secs)<<nsecShift | r.wall&(1<<nsecShift-1)
	return now
}

// TestTrackerIgnoresWallClockSteps: an NTP step of the wall clock between
// two rounds neither empties the peak nor keeps it past the window; only
// the monotonic clock counts.
func TestTrackerIgnoresWallClockSteps(t *testing.T) {
	t0 := time.Now()
	if got := steppedWall(t, t0, -time.Hour); got.Sub(t0) != 0 || got.UnixNano() != t0.Add(-time.Hour).UnixNano() {
		t.Fatalf("steppedWall: Sub %v, wall %v; the test helper is wrong", got.Sub(t0), got)
	}
	for _, step := range []time.Duration{-time.Hour, time.Hour} {
		tr := NewTracker(time.Minute, time.Second)
		tr.Observe(t0, []Sample{{Inode: 1, Length: 9, Limit: 8}})
		later := steppedWall(t, t0.Add(2*time.Second), step)
		tr.Observe(later, []Sample{{Inode: 1, Length: 0, Limit: 8}})
		if st, _ := tr.Stats(later, 1); st.Peak != 9 {
			t.Errorf("wall clock stepped by %v: peak %d, want 9 (2 s ago by the monotonic clock)", step, st.Peak)
		}
		if st, _ := tr.Stats(steppedWall(t, t0.Add(2*time.Minute), step), 1); st.Peak != 0 {
			t.Errorf("wall clock stepped by %v: peak %d two minutes later, want 0 (out of the window)", step, st.Peak)
		}
	}
}

// TestTrackerFollowsReorderedDumps: a round finds last round's series by
// position when the dump order holds; when sockets come, go or move, each
// sample must still land on its own listener.
func TestTrackerFollowsReorderedDumps(t *testing.T) {
	tr := NewTracker(time.Minute, 100*time.Millisecond)
	rounds := [][]Sample{
		{{Inode: 1, Length: 1, Limit: 5}, {Inode: 2, Length: 2, Limit: 5}, {Inode: 3, Length: 3, Limit: 5}},
		{{Inode: 3, Length: 30, Limit: 5}, {Inode: 1, Length: 10, Limit: 5}},                                // 2 gone, order changed
		{{Inode: 3, Length: 4, Limit: 5}, {Inode: 1, Length: 6, Limit: 5}, {Inode: 2, Length: 7, Limit: 5}}, // 2 is new again
		{{Inode: 3, Length: 9, Limit: 5}, {Inode: 3, Length: 9, Limit: 5}, {Inode: 1, Length: 6, Limit: 5}}, // a duplicate, 2 gone
	}
	for i, samples := range rounds {
		tr.Observe(at(time.Duration(i)*100*time.Millisecond), samples)
	}
	now := at(300 * time.Millisecond)
	for ino, want := range map[uint64]uint32{1: 10, 3: 30} {
		st, ok := tr.Stats(now, ino)
		if !ok || st.Peak != want {
			t.Errorf("inode %d: %+v %v, want peak %d", ino, st, ok, want)
		}
	}
	if _, ok := tr.Stats(now, 2); ok || tr.Len() != 2 {
		t.Errorf("inode 2 went in the last round, yet the tracker holds %d series (2 tracked: %v)", tr.Len(), ok)
	}
	// 3 was full in rounds 2 and 4, the second sample of 4 adding no time:
	// two intervals of 100 ms.
	if st, _ := tr.Stats(now, 3); math.Abs(st.FullSeconds-0.2) > 1e-9 {
		t.Errorf("inode 3 full for %v s, want 0.2", st.FullSeconds)
	}
}
