package selfproc

import (
	"math"
	"os"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

func gather(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func value(mf *dto.MetricFamily) float64 {
	m := mf.GetMetric()[0]
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// TestMatchesClientGolang gathers client_golang's process collector and
// then this one, in the same process: the same families with the same help
// and types, and the same values where they cannot have moved in between.
func TestMatchesClientGolang(t *testing.T) {
	c, err := New("/proc")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := gather(t, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	got := gather(t, c)
	if len(want) != numberOfNames || len(got) != len(want) {
		t.Fatalf("client_golang gave %d families, this collector %d; want %d each", len(want), len(got), numberOfNames)
	}
	for name, w := range want {
		g := got[name]
		if g == nil {
			t.Errorf("%s: missing", name)
			continue
		}
		if g.GetHelp() != w.GetHelp() || g.GetType() != w.GetType() || len(g.GetMetric()) != 1 || len(g.GetMetric()[0].GetLabel()) != 0 {
			t.Errorf("%s: got help %q type %v, %d series; want %q, %v, one series without labels",
				name, g.GetHelp(), g.GetType(), len(g.GetMetric()), w.GetHelp(), w.GetType())
			continue
		}
		wv, gv := value(w), value(g)
		ok := true
		switch name {
		case startName, maxFDsName, maxVsizeName:
			ok = gv == wv
		case cpuName:
			ok = gv >= wv && gv-wv < 1
		case openFDsName:
			ok = math.Abs(gv-wv) <= 2
		case vsizeName, rssName:
			ok = gv > 0 && math.Abs(gv-wv) <= 64<<20
		case inBytesName, outBytesName:
			ok = gv >= wv && gv-wv < 1<<30
		}
		if !ok {
			t.Errorf("%s: got %v, client_golang %v", name, gv, wv)
		}
	}
}

// TestListingCountsAsStat checks the pre-6.2 way of counting descriptors
// (listing the fd directory) against the fd directory's size.
func TestListingCountsAsStat(t *testing.T) {
	c, err := New("/proc")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fi, err := c.fdDir.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() == 0 {
		t.Skip("this kernel's fd directory has no size (before Linux 6.2); the listing is all there is")
	}
	for range 2 { // twice: the listing must start again from the top
		n, err := c.listFDs()
		if err != nil {
			t.Fatal(err)
		}
		if int64(n) != fi.Size() {
			t.Fatalf("listing counts %d descriptors, the directory's size says %d", n, fi.Size())
		}
	}
	// A new descriptor shows in both.
	f, err := os.Open("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := c.listFDs()
	if err != nil {
		t.Fatal(err)
	}
	if m, err := c.openFDs(); err != nil || n != m || int64(n) != fi.Size()+1 {
		t.Fatalf("after one more open: listing %d, openFDs %d (%v), want %d", n, m, err, fi.Size()+1)
	}
}

func TestConcurrentCollect(t *testing.T) {
	c, err := New("/proc")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				if n := len(gather(t, c)); n != numberOfNames {
					t.Errorf("%d families, want %d", n, numberOfNames)
				}
			}
		})
	}
	wg.Wait()
}

func TestNewFailsWithoutProcfs(t *testing.T) {
	if _, err := New(t.TempDir()); err == nil {
		t.Fatal("New over an empty directory succeeded")
	}
}

func TestParseStat(t *testing.T) {
	// Fields 3-24 of proc(5), after a command name with spaces and both
	// parentheses.
	line := "4242 (a) (b c)) S 1 2 3 4 5 6 7 8 9 10 1234 567 11 12 13 14 15 16 98765 1048576 300 18446744073709551615 17\n"
	st, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if want := (procStat{utime: 1234, stime: 567, starttime: 98765, vsize: 1048576, rss: 300}); st != want {
		t.Fatalf("got %+v, want %+v", st, want)
	}
	for _, bad := range []string{
		"",
		"4242 no parentheses S 1 2 3",
		"4242 (short) S 1 2 3 4 5 6 7 8 9 10 1234 567",
		"4242 (nan) S 1 2 3 4 5 6 7 8 9 10 x 567 11 12 13 14 15 16 98765 1048576 300",
	} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) succeeded", bad)
		}
	}
}

func TestIPOctets(t *testing.T) {
	for _, tc := range []struct {
		in      string
		inB, ou float64
		ok      bool
	}{
		{"TcpExt: A B\nTcpExt: 1 2\nIpExt: InNoRoutes InOctets OutOctets\nIpExt: 0 1500 2500\n", 1500, 2500, true},
		{"IpExt: OutOctets InOctets\nIpExt: 7 9\n", 9, 7, true},
		{"IpExt: InOctets InNoRoutes\nIpExt: 4 1\n", 4, 0, true}, // no OutOctets: 0
		{"TcpExt: InOctets\nTcpExt: 5\n", 0, 0, false},
		{"IpExt: InOctets OutOctets\nIpExt: 3\n", 0, 0, false},
		{"IpExt: InOctets OutOctets\n", 0, 0, false},
		{"", 0, 0, false},
	} {
		in, out, ok := ipOctets([]byte(tc.in))
		if ok != tc.ok || (ok && (in != tc.inB || out != tc.ou)) {
			t.Errorf("ipOctets(%q) = %v, %v, %v; want %v, %v, %v", tc.in, in, out, ok, tc.inB, tc.ou, tc.ok)
		}
	}
}

func TestBootTime(t *testing.T) {
	if b, err := bootTime([]byte("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n")); err != nil || b != 1700000000 {
		t.Fatalf("got %d, %v", b, err)
	}
	if _, err := bootTime([]byte("cpu 1 2 3\n")); err == nil {
		t.Fatal("no btime line, no error")
	}
}

func TestCountNames(t *testing.T) {
	if n := countNames(nil); n != 0 {
		t.Fatalf("empty buffer: %d", n)
	}
	// A record whose reclen runs past the buffer ends the count.
	b := make([]byte, 24)
	b[16] = 200
	if n := countNames(b); n != 0 {
		t.Fatalf("broken record counted: %d", n)
	}
}
