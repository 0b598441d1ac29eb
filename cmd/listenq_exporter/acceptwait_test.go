package main

import (
	"fmt"
	"math"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/listenq/listenq_exporter/internal/testbin"
	"github.com/listenq/listenq_exporter/internal/testns"
)

// scrapeUntil scrapes url until cond holds of the parsed scrape.
func scrapeUntil(t *testing.T, url, what string, cond func(*testbin.Scrape) (bool, string)) *testbin.Scrape {
	t.Helper()
	var s *testbin.Scrape
	testbin.WaitFor(t, 15*time.Second, what, nil, func() (bool, string) {
		body, err := testbin.Get(http.DefaultClient, url+"/metrics")
		if err != nil {
			return false, err.Error()
		}
		s = testbin.ParseScrape(t, body)
		return cond(s)
	})
	return s
}

func inodeLabels(l *testns.Listener) map[string]string {
	return map[string]string{"inode": strconv.FormatUint(l.Inode, 10)}
}

func hasSeries(s *testbin.Scrape, name string, want map[string]string) (bool, string) {
	if len(s.Find(name, want)) == 1 {
		return true, ""
	}
	return false, fmt.Sprintf("no %s%v", name, want)
}

// Two pods listening on the same port in their own network namespaces:
// each listener's waits are its own.
func TestAcceptWaitPerNamespace(t *testing.T) {
	testns.Require(t)
	testns.EnsureTracefs(t)
	a, b := testns.AddNamedNetns(t, "awa"), testns.AddNamedNetns(t, "awb")
	var la, lb *testns.Listener
	a.Do(t, func() { la = testns.ListenTCP(t, "127.0.0.1:8080", 8, false) })
	b.Do(t, func() { lb = testns.ListenTCP(t, "127.0.0.1:8080", 8, false) })
	url := startExporter(t, "--netns.discovery", "--runtime.disable", "--collector.acceptwait", "--sampler.interval=100ms")
	// Once a scrape lists them, the exporter's reads have given both
	// listeners the cookies their events are keyed by.
	scrapeUntil(t, url, "both listeners", func(s *testbin.Scrape) (bool, string) {
		okA, msg := hasSeries(s, "listenq_accept_wait_seconds_count", inodeLabels(la))
		okB, _ := hasSeries(s, "listenq_accept_wait_seconds_count", inodeLabels(lb))
		return okA && okB, msg
	})

	// Each wait lies between two bounds the test can see: at least from
	// the end of the dialing to the call of accept, at most from before
	// the dialing to accept's return. Under load (other tests, a
	// benchmark) dialing and waking up take longer, and only the bounds
	// move apart.
	start := time.Now()
	a.Do(t, func() { testns.DialTCP(t, la.Addr, 3) })
	dialedA := time.Now()
	b.Do(t, func() { testns.DialTCP(t, lb.Addr, 1) })
	dialedB := time.Now()
	var minA, maxA, minB, maxB float64
	time.Sleep(time.Until(start.Add(300 * time.Millisecond)))
	for range 3 {
		minA += time.Since(dialedA).Seconds()
		la.Accept(t)
		maxA += time.Since(start).Seconds()
	}
	time.Sleep(time.Until(start.Add(600 * time.Millisecond)))
	minB = time.Since(dialedB).Seconds()
	lb.Accept(t)
	maxB = time.Since(start).Seconds()

	for _, c := range []struct {
		ns       *testns.Netns
		l        *testns.Listener
		count    float64
		min, max float64
	}{{a, la, 3, minA, maxA}, {b, lb, 1, minB, maxB}} {
		want := testbin.Labels(inodeLabels(c.l), map[string]string{"netns": c.ns.Name, "port": "8080", "proto": "tcp"})
		s := scrapeUntil(t, url, "the waits of "+c.ns.Name, func(s *testbin.Scrape) (bool, string) {
			got := s.Find("listenq_accept_wait_seconds_count", want)
			if len(got) != 1 || got[0].Value != c.count {
				return false, fmt.Sprintf("count %v, want %v", got, c.count)
			}
			return true, ""
		})
		sum := s.One(t, "listenq_accept_wait_seconds_sum", want).Value
		// 1% for the clocks: the kernel's and the test's are read apart.
		if sum > c.max*1.01 || sum < c.min*0.99 {
			t.Errorf("%s: wait sum %.4f s, want between %.4f and %.4f s", c.ns.Name, sum, c.min, c.max)
		}
		if got := s.One(t, "listenq_accepted_total", want).Value; got != c.count {
			t.Errorf("%s: accepted %v, want %v", c.ns.Name, got, c.count)
		}
		t.Logf("%s: %v accepted, waits sum %.4f s (bounds %.4f to %.4f s)", c.ns.Name, c.count, sum, c.min, c.max)
	}
}

// A queue that fills for 200 ms between two sampler rounds: the events see
// its peak and how long it stayed full.
func TestAcceptWaitSeesABurstBetweenSamples(t *testing.T) {
	testns.Require(t)
	testns.EnsureTracefs(t)
	l := testns.ListenTCP(t, "127.0.0.1:0", 4, false)
	const interval = "3s"
	url := startExporter(t, "--collector.acceptwait", "--sampler.interval="+interval, "--sampler.max-cpu=0")
	// The same sampler, without events, for comparison.
	plain := startExporter(t, "--sampler.interval="+interval, "--sampler.max-cpu=0")
	labels := inodeLabels(l)
	scrapeUntil(t, url, "the listener", func(s *testbin.Scrape) (bool, string) {
		return hasSeries(s, "listenq_queue_peak_length", labels)
	})
	scrapeUntil(t, plain, "the listener, sampled", func(s *testbin.Scrape) (bool, string) {
		return hasSeries(s, "listenq_queue_peak_length", labels)
	})

	// Five connections fill a backlog of 4 (full means length > limit). On
	// loopback each handshake completes within its connect call.
	before := time.Now()
	testns.DialTCP(t, l.Addr, 5)
	full := time.Now()
	time.Sleep(200 * time.Millisecond)
	if e := testns.SS(t, "t", l.Inode); e.RecvQ != 5 {
		t.Fatalf("Recv-Q %d after the burst, want 5", e.RecvQ)
	}
	time.Sleep(time.Until(full.Add(200 * time.Millisecond)))
	l.Accept(t)
	wantFull := time.Since(full).Seconds()
	t.Logf("dialing took %v", full.Sub(before))
	for range 4 {
		l.Accept(t)
	}

	s := scrapeUntil(t, url, "the burst's peak", func(s *testbin.Scrape) (bool, string) {
		got := s.Find("listenq_queue_peak_length", labels)
		return len(got) == 1 && got[0].Value == 5, fmt.Sprintf("peak %v", got)
	})
	gotFull := s.One(t, "listenq_queue_full_seconds_total", labels).Value
	if math.Abs(gotFull-wantFull) > 0.1*wantFull {
		t.Errorf("full for %.4f s, want %.4f s within 10%%", gotFull, wantFull)
	}
	body, err := testbin.Get(http.DefaultClient, plain+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	ps := testbin.ParseScrape(t, body)
	t.Logf("events: peak 5, full %.4f s (measured %.4f s); sampler alone every %s: peak %v, full %v s",
		gotFull, wantFull, interval,
		ps.One(t, "listenq_queue_peak_length", labels).Value, ps.One(t, "listenq_queue_full_seconds_total", labels).Value)
	if strings.Contains(body, "eBPF") {
		t.Errorf("the sampler-only exporter's Help mentions eBPF")
	}
	// The Help says which source is in force.
	body, err = testbin.Get(http.DefaultClient, url+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"listenq_queue_peak_length", "listenq_queue_full_seconds_total"} {
		if !strings.Contains(grepLines(body, "# HELP "+name+" "), "exact, from the acceptwait collector's eBPF events") {
			t.Errorf("%s Help does not name the events as its source:\n%s", name, grepLines(body, "# HELP "+name+" "))
		}
	}
}

// Without the privilege to load BPF programs the collector says so once
// and the exporter serves everything else as before.
func TestAcceptWaitUnsupportedLeavesTheRest(t *testing.T) {
	testns.Require(t)
	setpriv := testbin.RequireTool(t, "setpriv", "util-linux")
	l := testns.ListenTCP(t, "127.0.0.1:0", 3, false)
	addr := "127.0.0.1:" + testbin.FreePort(t)
	// Root without a single capability: bpf() is refused.
	cmd := exec.Command(setpriv, "--inh-caps=-all", "--bounding-set=-all",
		testbin.Exporter(t), "--web.listen-address="+addr, "--no-netns.discovery", "--runtime.disable",
		"--owner.min-scan-interval=0s", "--collector.acceptwait")
	p := testbin.StartCmd(t, cmd)
	var body string
	testbin.WaitFor(t, 10*time.Second, "a scrape with the listener", []*testbin.Proc{p}, func() (bool, string) {
		var err error
		body, err = testbin.Get(http.DefaultClient, "http://"+addr+"/metrics")
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(body, fmt.Sprintf(`inode="%d"`, l.Inode)), "listener not in scrape"
	})
	for i := 0; i < 2; i++ { // a second scrape must not log again
		if _, err := testbin.Get(http.DefaultClient, "http://"+addr+"/metrics"); err != nil {
			t.Fatal(err)
		}
	}
	s := testbin.ParseScrape(t, body)
	for _, name := range []string{"listenq_accept_wait_seconds_count", "listenq_accepted_total", "listenq_accept_wait_method"} {
		if got := s.Find(name, nil); len(got) != 0 {
			t.Errorf("%s exported without the collector: %v", name, got)
		}
	}
	if got := s.Find("listenq_scrape_collector_success", map[string]string{"collector": "tcp"}); len(got) != 1 || got[0].Value != 1 {
		t.Errorf("tcp collector: %v, want success", got)
	}
	if n := strings.Count(p.Output(), "collector left out"); n != 1 {
		t.Errorf("log says the collector is left out %d times, want once:\n%s", n, p.Output())
	}
	if !strings.Contains(p.Output(), "acceptwait") || !strings.Contains(p.Output(), "operation not permitted") {
		t.Errorf("log does not say why acceptwait is left out:\n%s", p.Output())
	}
}
