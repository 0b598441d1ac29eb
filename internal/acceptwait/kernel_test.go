package acceptwait_test

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/listenq/listenq_exporter/internal/acceptwait"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
	"github.com/listenq/listenq_exporter/internal/testns"
)

// startTracer loads the programs with the cheapest method this kernel
// allows. Under CI=true a kernel that refuses them fails the test.
func startTracer(t *testing.T, opts acceptwait.Options) *acceptwait.Tracer {
	t.Helper()
	testns.Require(t)
	testns.EnsureTracefs(t)
	tr, err := acceptwait.Start(opts)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("start: %v (CI=true, so this is a failure, not a skip)", err)
		}
		t.Skipf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	t.Logf("attach method: %s", tr.Method())
	return tr
}

// cookieOf dumps the namespace's TCP listeners, which gives each a
// cookie, as the exporter's reads do, and returns l's.
func cookieOf(t *testing.T, l *testns.Listener) uint64 {
	t.Helper()
	c, err := sockdiag.Dial(false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	socks, err := c.InetSockets(sockdiag.InetRequest{Family: sockdiag.FamilyUnspec, States: 1 << sockdiag.StateListen})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range socks {
		if uint64(s.Inode) == l.Inode {
			if s.Cookie == 0 {
				t.Fatalf("listener %d has no cookie after a dump", l.Inode)
			}
			return s.Cookie
		}
	}
	t.Fatalf("listener %d not in the dump", l.Inode)
	return 0
}

// read reads the tracer and returns l's figures and the counters.
func read(t *testing.T, tr *acceptwait.Tracer, cookie uint64) (acceptwait.Figures, acceptwait.Counters) {
	t.Helper()
	r, err := tr.Read()
	if err != nil {
		t.Fatal(err)
	}
	f, ok := r.Listeners[cookie]
	if !ok {
		t.Fatalf("no figures for cookie %d; have %d listeners", cookie, len(r.Listeners))
	}
	return f, r.Counters
}

// The timing test: the first connection is accepted after 1.0 s,
// then one every 0.2 s; all joined at once.
func TestWaitsMatchAcceptTimes(t *testing.T) {
	tr := startTracer(t, acceptwait.Options{})
	l := testns.ListenTCP(t, "127.0.0.1:0", 16, false)
	cookie := cookieOf(t, l)
	const n = 5
	start := time.Now()
	testns.DialTCP(t, l.Addr, n)
	var want float64
	for i := range n {
		at := time.Second + time.Duration(i)*200*time.Millisecond
		time.Sleep(time.Until(start.Add(at)))
		l.Accept(t)
		want += time.Since(start).Seconds()
	}
	f, c := read(t, tr, cookie)
	t.Logf("counters %+v", c)
	if f.Accepted != n || f.Timed != n {
		t.Fatalf("accepted %d, timed %d; want %d", f.Accepted, f.Timed, n)
	}
	if math.Abs(f.WaitSum-want) > 0.05*want {
		t.Errorf("wait sum %.3f s, want %.3f s within 5%%", f.WaitSum, want)
	}
	// 1.0 s lands in the (0.5, 1] bucket or just above; the rest in (1, 2.5].
	b := tr.Bounds()
	for i, bound := range b {
		wantCum := uint64(0)
		if bound >= 2.5 {
			wantCum = n
		} else if bound >= 1 {
			wantCum = f.Buckets[i] // 1.0 s itself may fall on either side
		}
		if f.Buckets[i] != wantCum {
			t.Errorf("bucket le=%g: %d, want %d (buckets %v)", bound, f.Buckets[i], wantCum, f.Buckets)
		}
	}
	if f.Buckets[len(b)] != n {
		t.Errorf("+Inf bucket %d, want %d", f.Buckets[len(b)], n)
	}
	t.Logf("waits: count %d, sum %.4f s (accept times sum %.4f s), buckets %v", f.Timed, f.WaitSum, want, f.Buckets)
}

func TestUnsupportedMethodIsAnError(t *testing.T) {
	_, err := acceptwait.Start(acceptwait.Options{Method: "kprobe"})
	if !errors.Is(err, acceptwait.ErrUnsupported) {
		t.Fatalf("err = %v, want ErrUnsupported", err)
	}
}

// Connections never accepted leave no record once they close, and a
// closed listener takes its state and its queue's records with it.
func TestNoEntriesLeftBehind(t *testing.T) {
	tr := startTracer(t, acceptwait.Options{})
	l := testns.ListenTCP(t, "127.0.0.1:0", 16, false)
	cookie := cookieOf(t, l)
	clients := testns.NewClients(t)
	clients.DialTCP(l.Addr, 4)
	waitFor(t, func() (bool, string) {
		n := waiting(t, tr, cookie)
		return n == 4, fmt.Sprintf("%d recorded, want 4", n)
	})
	// Two clients give up with a reset: their children close in the queue.
	clients.CloseOne(0, true)
	clients.CloseOne(1, true)
	waitFor(t, func() (bool, string) {
		n := waiting(t, tr, cookie)
		return n == 2, fmt.Sprintf("%d recorded after two resets, want 2", n)
	})
	// A client that closes politely leaves its connection acceptable (it
	// stays queued, CLOSE_WAIT); the listener closing drops it and the rest.
	clients.CloseOne(2, false)
	l.Close()
	waitFor(t, func() (bool, string) {
		n := waiting(t, tr, cookie)
		r, err := tr.Read()
		if err != nil {
			t.Fatal(err)
		}
		_, has := r.Listeners[cookie]
		return n == 0 && !has, fmt.Sprintf("%d children recorded, listener state kept: %v", n, has)
	})
	r, err := tr.Read()
	if err != nil {
		t.Fatal(err)
	}
	if c := r.Counters; c.ChildrenEvicted != 0 || c.ListenersEvicted != 0 {
		t.Errorf("evictions counted without map pressure: %+v", r.Counters)
	}
}

func waiting(t *testing.T, tr *acceptwait.Tracer, cookie uint64) int {
	t.Helper()
	w, err := tr.Waiting()
	if err != nil {
		t.Fatal(err)
	}
	return w[cookie]
}

func waitFor(t *testing.T, cond func() (bool, string)) {
	t.Helper()
	testns.Eventually(t, 5*time.Second, cond)
}

// A map too small for the connections waiting evicts records; the
// accepts are still all counted, the evicted ones untimed, and the
// evictions counted.
func TestEvictionsAreCounted(t *testing.T) {
	tr := startTracer(t, acceptwait.Options{MaxWaiting: 8})
	l := testns.ListenTCP(t, "127.0.0.1:0", 64, false)
	cookie := cookieOf(t, l)
	const n = 40
	testns.DialTCP(t, l.Addr, n)
	for range n {
		l.Accept(t)
	}
	f, c := read(t, tr, cookie)
	t.Logf("figures %+v\ncounters %+v", f, c)
	if f.Accepted != n {
		t.Errorf("accepted %d, want %d", f.Accepted, n)
	}
	if f.Timed >= n || f.Timed > 8*uint64(runtime.NumCPU()) {
		t.Errorf("timed %d of %d through a map of 8", f.Timed, n)
	}
	untimed := n - f.Timed
	if c.ChildrenEvicted < untimed || c.AcceptsUnseen < untimed {
		t.Errorf("%d accepts untimed but %d evictions and %d unseen accepts counted", untimed, c.ChildrenEvicted, c.AcceptsUnseen)
	}
}
