package collector

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/owner"
	"github.com/listenq/listenq_exporter/internal/testns"
)

// A queue saturated for about 300 ms and drained again between two scrapes
// seconds apart: the gauge at scrape time misses it, the sampler does not.
func TestKernelSamplerCatchesBurstBetweenScrapes(t *testing.T) {
	testns.Require(t)
	const interval = 100 * time.Millisecond
	reg := newSampledRegistry(t, NewSampler(interval, 60*time.Second, 0, discardLogger()))
	l := testns.ListenTCP(t, "127.0.0.1:0", 4, false)
	sel := inodeLabel(l.Inode)

	testns.Eventually(t, 2*time.Second, func() (bool, string) {
		n := len(find(gather(t, reg), "listenq_queue_peak_length", sel))
		return n == 1, "the sampler has not seen the listener yet"
	})
	first := gather(t, reg)
	if v := one(t, first, "listenq_queue_full_seconds_total", sel).value; v != 0 {
		t.Fatalf("full seconds before the burst = %v, want 0", v)
	}

	// The burst: five clients fill the queue (backlog 4 holds 5), held for
	// 300 ms, then every connection is accepted.
	clients := testns.NewClients(t)
	clients.DialTCP(l.Addr, 5)
	testns.Eventually(t, 2*time.Second, func() (bool, string) {
		e := testns.SS(t, "t", l.Inode)
		return e.RecvQ == 5, fmt.Sprintf("ss Recv-Q %d, want 5", e.RecvQ)
	})
	full := time.Now()
	time.Sleep(300 * time.Millisecond)
	drained := l.DrainAccept(t)
	heldFor := time.Since(full)
	clients.Close()
	if drained != 5 {
		t.Fatalf("drained %d connections, want 5", drained)
	}

	time.Sleep(3 * time.Second)
	second := gather(t, reg)
	if v := one(t, second, "listenq_queue_length", sel).value; v != 0 {
		t.Errorf("queue length at the second scrape = %v, want 0 (the burst is over)", v)
	}
	if v := one(t, second, "listenq_queue_peak_length", sel).value; v != 5 {
		t.Errorf("peak length = %v, want 5 (limit+1)", v)
	}
	// Samples every 100 ms see the queue full for about heldFor; allow one
	// interval of error either way, plus slack for a delayed sample on a
	// loaded machine (one sample stands for at most two intervals).
	fullSecs := one(t, second, "listenq_queue_full_seconds_total", sel).value
	lo, hi := heldFor.Seconds()-interval.Seconds()-0.05, heldFor.Seconds()+2*interval.Seconds()+0.05
	t.Logf("held full for %v; the sampler measured %.3fs", heldFor, fullSecs)
	if fullSecs < lo || fullSecs > hi {
		t.Errorf("full seconds = %.3f, want %.3f..%.3f (held full for %v)", fullSecs, lo, hi, heldFor)
	}
}

// Fifty scrapes at once share the kernel reads in flight instead of
// making fifty dumps.
func TestKernelConcurrentScrapesShareReads(t *testing.T) {
	testns.Require(t)
	for range 20 {
		testns.ListenTCP(t, "127.0.0.1:0", 4, false)
	}
	self, err := netns.Self("/proc", "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := newTCPCollector(Deps{
		Logger:     discardLogger(),
		Namespaces: netns.Static{self},
		Listeners:  NewListenerExporter(ListenerFilters{MaxListeners: 100}, owner.NewResolver("/proc", 0)),
	})
	if err != nil {
		t.Fatal(err)
	}
	tc := c.(*tcpCollector)
	// Slow each read down so the scrapes overlap, as they do on a busy
	// host.
	src := tc.out.source(self, "tcp")
	read := src.read
	src.read = func(ns *netns.Handle, known func(uint64) string) ([]Listener, error) {
		time.Sleep(50 * time.Millisecond)
		return read(ns, known)
	}
	const scrapes = 50
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range scrapes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch := make(chan prometheus.Metric, 1000)
			<-start
			s := Scrape{Metrics: ch, handles: []*netns.Handle{self}, reads: &readBatches{}, failures: &nsFailures{}}
			if err := tc.Update(s); err != nil {
				t.Error(err)
			}
			if n := len(s.reads.batches[0].ls); n < 20 {
				t.Errorf("a scrape got %d listeners, want at least 20", n)
			}
		}()
	}
	close(start)
	wg.Wait()
	if src.reads > 3 {
		t.Errorf("%d concurrent scrapes made %d kernel reads, want at most 3", scrapes, src.reads)
	}
	t.Logf("%d concurrent scrapes made %d kernel reads", scrapes, src.reads)
}

// With --sampler.interval=0 there is no sampler and its metrics are absent,
// not zero.
func TestKernelSamplerOffMetricsAbsent(t *testing.T) {
	testns.Require(t)
	l := testns.ListenTCP(t, "127.0.0.1:0", 4, false)
	got := gather(t, newSampledRegistry(t, NewSampler(0, time.Minute, 0, discardLogger())))
	if n := len(find(got, "listenq_queue_length", inodeLabel(l.Inode))); n != 1 {
		t.Fatalf("listener exported %d times, want once", n)
	}
	for _, name := range []string{"listenq_queue_peak_length", "listenq_queue_full_seconds_total"} {
		if n := len(got[name]); n != 0 {
			t.Errorf("sampler off, but %d %s series", n, name)
		}
	}
}
