package collector

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/sampler"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

// blockingRead is a source read that counts its calls and blocks until
// release is closed. Each call returns a fresh slice whose inode is the
// call's number, so callers that got the same backing array shared a read.
func blockingRead(calls *atomic.Int32, release <-chan struct{}, err error) readFunc {
	return func(*netns.Handle, func(uint64) string) ([]Listener, error) {
		n := calls.Add(1)
		<-release
		if err != nil {
			return nil, err
		}
		return []Listener{{Proto: "tcp", Address: "0.0.0.0:80", Port: "80", Inode: uint64(n), Length: 1, Limit: 511}}, nil
	}
}

// noQueues fails the test if a scrape path reaches for the sampler's
// queue-only dump.
func noQueues(t *testing.T) func(*netns.Handle, []sockdiag.Queue) ([]sockdiag.Queue, error) {
	return func(*netns.Handle, []sockdiag.Queue) ([]sockdiag.Queue, error) {
		t.Error("queue-only dump used outside a sampler round")
		return nil, errors.New("unexpected")
	}
}

// TestSourceListenersCoalesces: 50 scrapes arriving while a read is in
// flight all wait for it; the kernel is asked once, and its result or its
// error reaches every caller. synctest.Wait makes "all 50 are waiting"
// exact instead of a sleep.
func TestSourceListenersCoalesces(t *testing.T) {
	boom := errors.New("netlink: operation not permitted")
	for _, tc := range []struct {
		name    string
		sampler bool
		readErr error
	}{
		{"result shared", false, nil},
		{"error shared", false, boom},
		{"result shared with the sampler on", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var calls atomic.Int32
				release := make(chan struct{})
				src := &source{proto: "tcp", read: blockingRead(&calls, release, tc.readErr), queues: noQueues(t)}
				if tc.sampler {
					src.tracker = sampler.NewTracker(time.Minute, 100*time.Millisecond)
				}

				const callers = 50
				results := make([][]Listener, callers)
				errs := make([]error, callers)
				var wg sync.WaitGroup
				for i := range callers {
					wg.Go(func() { results[i], errs[i] = src.Listeners() })
				}
				synctest.Wait() // every caller is in the read or waiting for it
				if n := calls.Load(); n != 1 {
					t.Fatalf("%d reads in flight for %d concurrent callers, want 1", n, callers)
				}
				close(release)
				wg.Wait()

				if n := calls.Load(); n != 1 {
					t.Errorf("read ran %d times, want 1", n)
				}
				for i := range callers {
					if !errors.Is(errs[i], tc.readErr) {
						t.Errorf("caller %d: err = %v, want %v", i, errs[i], tc.readErr)
					}
					if tc.readErr != nil {
						if results[i] != nil {
							t.Errorf("caller %d: listeners %v with an error", i, results[i])
						}
						continue
					}
					// The one read's result, in a slice of the caller's
					// own: withStats changes it in place.
					if !slices.Equal(results[i], results[0]) || len(results[i]) != 1 {
						t.Errorf("caller %d got %v, want the shared result %v", i, results[i], results[0])
					} else if i > 0 && &results[i][0] == &results[0][0] {
						t.Errorf("caller %d shares caller 0's slice", i)
					}
				}

				// The read is over: the next scrape reads afresh rather
				// than getting the old result (or the old error).
				ls, err := src.Listeners()
				if err != nil && tc.readErr == nil {
					t.Errorf("next scrape: %v", err)
				}
				if n := calls.Load(); n != 2 {
					t.Errorf("a scrape after the shared read made %d reads in all, want 2", n)
				}
				if tc.readErr == nil && (len(ls) != 1 || ls[0].Inode != 2) {
					t.Errorf("next scrape got %v, want the result of read 2", ls)
				}
			})
		})
	}
}

// TestSourceSequentialScrapesRead: scrapes that do not overlap each read
// the kernel; nothing is cached between them, sampler or not.
func TestSourceSequentialScrapesRead(t *testing.T) {
	for _, withSampler := range []bool{false, true} {
		var calls atomic.Int32
		release := make(chan struct{})
		close(release)
		src := &source{proto: "unix", read: blockingRead(&calls, release, nil), queues: noQueues(t)}
		if withSampler {
			src.tracker = sampler.NewTracker(time.Minute, 100*time.Millisecond)
		}
		for want := range 3 {
			ls, err := src.Listeners()
			if err != nil {
				t.Fatal(err)
			}
			if ls[0].Inode != uint64(want+1) {
				t.Errorf("sampler %v: scrape %d got the result of read %d", withSampler, want+1, ls[0].Inode)
			}
		}
		if n := calls.Load(); n != 3 {
			t.Errorf("sampler %v: 3 sequential scrapes made %d reads, want 3", withSampler, n)
		}
	}
}

// TestSourceSample: a sampler round uses the cheap queue-only dump, never
// the scrape's full read, feeds every queue to the tracker, and a failed
// round leaves the tracker as it was.
func TestSourceSample(t *testing.T) {
	rounds := [][]sockdiag.Queue{
		{{Inode: 1, Length: 5, Limit: 4}, {Inode: 2, Length: 0, Limit: 4}},
		{{Inode: 1, Length: 3, Limit: 4}, {Inode: 2, Length: 1, Limit: 4}, {Inode: 3, Length: 9, Limit: 128}},
		{{Inode: 1, Length: 5, Limit: 4}}, // 2 and 3 closed
	}
	round := 0
	var failing bool
	src := &source{
		proto:   "tcp",
		tracker: sampler.NewTracker(time.Minute, time.Second),
		read: func(*netns.Handle, func(uint64) string) ([]Listener, error) {
			t.Error("a sampler round made a full read")
			return nil, nil
		},
		queues: func(_ *netns.Handle, dst []sockdiag.Queue) ([]sockdiag.Queue, error) {
			if len(dst) != 0 {
				t.Errorf("round %d: queues called with %d stale entries in dst", round, len(dst))
			}
			if failing {
				return dst, errors.New("dump failed")
			}
			return append(dst, rounds[round]...), nil
		},
	}
	wantLen := []int{2, 3, 1}
	for round = range rounds {
		if err := src.sample(nil); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if n := src.tracker.Len(); n != wantLen[round] {
			t.Errorf("round %d: tracker holds %d listeners, want %d", round, n, wantLen[round])
		}
		for _, q := range rounds[round] {
			st, ok := src.tracker.Stats(time.Now(), uint64(q.Inode))
			if !ok || st.Peak < q.Length {
				t.Errorf("round %d: inode %d: stats %+v, %v; want a peak of at least %d", round, q.Inode, st, ok, q.Length)
			}
		}
	}

	failing = true
	if err := src.sample(nil); err == nil {
		t.Error("a failing round returned no error")
	}
	if n := src.tracker.Len(); n != 1 {
		t.Errorf("tracker holds %d listeners after a failed round, want 1 (kept)", n)
	}
}

func TestSourceWithStats(t *testing.T) {
	tr := sampler.NewTracker(time.Minute, time.Second)
	now := time.Now()
	tr.Observe(now.Add(-2*time.Second), []sampler.Sample{{Inode: 1, Length: 9, Limit: 8}, {Inode: 2, Length: 1, Limit: 8}})
	tr.Observe(now.Add(-time.Second), []sampler.Sample{{Inode: 1, Length: 2, Limit: 8}, {Inode: 2, Length: 1, Limit: 8}})
	in := []Listener{
		{Inode: 1, Length: 0, Limit: 8}, // burst between scrapes: peak 9
		{Inode: 2, Length: 6, Limit: 8}, // the scrape's own reading is the highest
		{Inode: 3, Length: 4, Limit: 8}, // newer than the last round: no stats
	}
	before := slices.Clone(in)

	for _, tc := range []struct {
		name     string
		tracker  *sampler.Tracker
		has      []bool
		peak     []uint32
		fullSecs []float64
	}{
		{"sampler off", nil, []bool{false, false, false}, []uint32{0, 0, 0}, []float64{0, 0, 0}},
		{"sampler on", tr, []bool{true, true, false}, []uint32{9, 6, 0}, []float64{0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &source{proto: "tcp", tracker: tc.tracker}
			got := src.withStats(slices.Clone(in))
			if len(got) != len(in) {
				t.Fatalf("got %d listeners, want %d", len(got), len(in))
			}
			for i, l := range got {
				if l.HasStats != tc.has[i] || l.Peak != tc.peak[i] || l.FullSeconds != tc.fullSecs[i] {
					t.Errorf("inode %d: HasStats %v, Peak %d, FullSeconds %v; want %v, %d, %v",
						l.Inode, l.HasStats, l.Peak, l.FullSeconds, tc.has[i], tc.peak[i], tc.fullSecs[i])
				}
				if l.Inode != in[i].Inode || l.Length != in[i].Length || l.Limit != in[i].Limit {
					t.Errorf("listener %d changed: %+v, was %+v", i, l, in[i])
				}
			}
			if !slices.Equal(in, before) {
				t.Fatal("the test changed its own input")
			}
		})
	}
}

// TestSamplerRoundThroughUnixCollector runs one sampler round through the
// whole unix collector over the fake kernel: the round makes one
// queue-only dump, and scrapes afterwards (one full dump each) carry its
// peak and full time.
func TestSamplerRoundThroughUnixCollector(t *testing.T) {
	var dumps unixDumps
	s := NewSampler(100*time.Millisecond, time.Minute, 0, discardLogger())
	reg := newFakeRegistry(t, fixture(t, fixtureNetstat), fakeUnixDial(t, fakeUnixListeners, &dumps), s, "unix")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Run(ctx) // exactly one round with a cancelled context
	if full, q := dumps.full.Load(), dumps.queuesOnly.Load(); full != 0 || q != 1 {
		t.Fatalf("one sampler round made %d full and %d queue-only dumps, want 0 and 1", full, q)
	}
	const scrapes = 3
	for range scrapes {
		got := gather(t, reg)
		seq := map[string]string{"proto": "unix", "listener": "@listenq-seq", "inode": "5002"}
		if v := one(t, got, "listenq_queue_peak_length", seq).value; v != 2 {
			t.Errorf("peak = %v, want 2", v)
		}
		if v := one(t, got, "listenq_queue_full_seconds_total", seq).value; v != 0 {
			t.Errorf("full seconds after the first sample = %v, want 0", v)
		}
		fpm := map[string]string{"listener": "/run/php/fpm.sock", "process": "nginx"}
		if v := one(t, got, "listenq_queue_peak_length", fpm).value; v != 3 {
			t.Errorf("fpm.sock peak = %v, want 3", v)
		}
		if n := len(got["listenq_queue_peak_length"]); n != 2 {
			t.Errorf("%d peak series, want 2 (dgram and unnamed sockets are not sampled into metrics)", n)
		}
	}
	if full, q := dumps.full.Load(), dumps.queuesOnly.Load(); full != scrapes || q != 1 {
		t.Errorf("%d scrapes made %d full and %d more queue-only dumps, want %d and 0", scrapes, full, q-1, scrapes)
	}
}

// TestSamplerBudget: a round that costs more than --sampler.max-cpu
// allows at --sampler.interval stretches the interval in proportion;
// a cheap round, or no limit, keeps the interval.
func TestSamplerBudget(t *testing.T) {
	s := NewSampler(500*time.Millisecond, time.Minute, 0.01, discardLogger())
	for _, c := range []struct {
		cost, want time.Duration
	}{
		{time.Millisecond, 500 * time.Millisecond},     // 0.2% of a core
		{5 * time.Millisecond, 500 * time.Millisecond}, // exactly 1%
		{40 * time.Millisecond, 4 * time.Second},       // 200 namespaces
		{time.Second, 100 * time.Second},               // pathological
	} {
		if got := s.budget(c.cost); got != c.want {
			t.Errorf("round costing %v: interval %v, want %v", c.cost, got, c.want)
		}
	}
	if got := NewSampler(time.Second, time.Minute, 0, discardLogger()).budget(time.Hour); got != time.Second {
		t.Errorf("no limit: interval %v, want the configured 1s", got)
	}
}
