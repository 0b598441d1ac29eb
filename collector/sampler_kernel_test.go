package collector

import (
	"fmt"
	"testing"
	"time"

	"github.com/listenq/listenq_exporter/internal/testns"
)

// A queue saturated for about 300 ms and drained again between two scrapes
// seconds apart: the gauge at scrape time misses it, the sampler does not.
func TestKernelSamplerCatchesBurstBetweenScrapes(t *testing.T) {
	testns.Require(t)
	const interval = 100 * time.Millisecond
	reg := newSampledRegistry(t, NewSampler(interval, 60*time.Second, discardLogger()))
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
	// interval of error either way, plus scheduling slack.
	fullSecs := one(t, second, "listenq_queue_full_seconds_total", sel).value
	lo, hi := heldFor.Seconds()-interval.Seconds()-0.05, heldFor.Seconds()+interval.Seconds()+0.05
	t.Logf("held full for %v; the sampler measured %.3fs", heldFor, fullSecs)
	if fullSecs < lo || fullSecs > hi {
		t.Errorf("full seconds = %.3f, want %.3f..%.3f (held full for %v)", fullSecs, lo, hi, heldFor)
	}
}

// With the sampler on, scrapes are served from its latest round: many
// concurrent scrapes cost no extra kernel dumps.
func TestKernelSamplerServesScrapesFromSnapshot(t *testing.T) {
	testns.Require(t)
	reg := newSampledRegistry(t, NewSampler(time.Hour, time.Hour, discardLogger()))
	// The first sampling round runs at start; with an hour-long interval no
	// other round runs during the test.
	gather(t, reg)
	time.Sleep(200 * time.Millisecond)
	l := testns.ListenTCP(t, "127.0.0.1:0", 4, false)
	if n := len(find(gather(t, reg), "listenq_queue_length", inodeLabel(l.Inode))); n != 0 {
		t.Errorf("a listener newer than the sampler's round was read from the kernel at scrape time (%d series)", n)
	}
}
