package serve

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gate is the handler behind a shared one. Every call blocks until as
// many requests as wanted are in the shared handler, each leading a flight
// or joined to one, so that a test knows they overlapped. After 10 s it
// goes on regardless, and the test's counts fail rather than hang.
type gate struct {
	sh    *shared
	want  int
	open  atomic.Bool // once want were in at once, calls go through
	calls atomic.Int32
	body  func(n int32) []byte
}

// expect sets how many requests the next calls wait for.
func (g *gate) expect(n int) {
	g.want = n
	g.open.Store(false)
}

// newGate returns a gate and the shared handler in front of it.
func newGate(body func(n int32) []byte) (*gate, http.Handler) {
	g := &gate{body: body}
	h := Shared(g)
	g.sh = h.(*shared)
	return g, h
}

// inFlight counts the requests in the shared handler.
func (g *gate) inFlight() int {
	g.sh.mu.Lock()
	defer g.sh.mu.Unlock()
	n := len(g.sh.flights)
	for _, f := range g.sh.flights {
		n += f.joined
	}
	return n
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := g.calls.Add(1)
	deadline := time.Now().Add(10 * time.Second)
	for !g.open.Load() && time.Now().Before(deadline) {
		if g.inFlight() >= g.want {
			g.open.Store(true)
		}
		time.Sleep(time.Millisecond)
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write(g.body(n)) //nolint:errcheck // a recorder
}

func concurrently(h http.Handler, n int, hdr func(i int) map[string]string) []*httptest.ResponseRecorder {
	recs := make([]*httptest.ResponseRecorder, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { recs[i] = serveOnce(h, "/metrics", hdr(i)) })
	}
	wg.Wait()
	return recs
}

// TestSharedConcurrentScrapesCostOne: twenty scrapes in flight together
// make one call and all get its answer; the next scrape makes a new call.
func TestSharedConcurrentScrapesCostOne(t *testing.T) {
	g, h := newGate(func(n int32) []byte { return []byte{byte('0' + n)} })
	g.expect(20)
	recs := concurrently(h, 20, func(int) map[string]string { return map[string]string{"Accept-Encoding": "gzip"} })
	if c := g.calls.Load(); c != 1 {
		t.Fatalf("20 concurrent scrapes made %d calls, want 1", c)
	}
	for i, rec := range recs {
		if rec.Code != http.StatusOK || rec.Body.String() != "1" || rec.Header().Get("Content-Type") != "text/plain" {
			t.Errorf("scrape %d: %d %q %q", i, rec.Code, rec.Header(), rec.Body.String())
		}
	}
	g.expect(1)
	if rec := serveOnce(h, "/metrics", nil); rec.Body.String() != "2" || g.calls.Load() != 2 {
		t.Errorf("a later scrape got %q after %d calls; want a fresh call", rec.Body.String(), g.calls.Load())
	}
}

// TestSharedKeepsRequestsApart: requests that would get different answers
// (encoding, format, query, method) do not share one.
func TestSharedKeepsRequestsApart(t *testing.T) {
	g, h := newGate(func(n int32) []byte { return []byte{byte('0' + n)} })
	g.expect(4)
	hdrs := []map[string]string{
		{"Accept-Encoding": "gzip"},
		{},
		{"Accept": "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"},
		{"Accept-Encoding": "gzip", "Accept": "text/plain"},
	}
	recs := concurrently(h, 4, func(i int) map[string]string { return hdrs[i] })
	if c := g.calls.Load(); c != 4 {
		t.Errorf("4 different requests made %d calls, want 4", c)
	}
	seen := map[string]bool{}
	for _, rec := range recs {
		seen[rec.Body.String()] = true
	}
	if len(seen) != 4 {
		t.Errorf("bodies %v, want 4 different ones", seen)
	}
	if keyOf(httptest.NewRequest(http.MethodHead, "/metrics", nil)) == keyOf(httptest.NewRequest(http.MethodGet, "/metrics", nil)) ||
		keyOf(httptest.NewRequest(http.MethodGet, "/metrics?name[]=a", nil)) == keyOf(httptest.NewRequest(http.MethodGet, "/metrics", nil)) {
		t.Error("HEAD and GET, or two queries, share a key")
	}
}

// TestSharedSurvivesAPanic: a flight whose call panics ends, its joiners
// get a 500, and the next request starts afresh.
func TestSharedSurvivesAPanic(t *testing.T) {
	var calls atomic.Int32
	h := Shared(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			panic(http.ErrAbortHandler)
		}
		w.Write([]byte("ok")) //nolint:errcheck // a recorder
	}))
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic did not reach the server")
			}
		}()
		serveOnce(h, "/metrics", nil)
	}()
	if rec := serveOnce(h, "/metrics", nil); rec.Body.String() != "ok" {
		t.Errorf("after a panic: %d %q", rec.Code, rec.Body.String())
	}
	f := &flight{}
	rec := httptest.NewRecorder()
	f.answer(rec)
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("a joiner of a panicked flight got %d", rec.Code)
	}
}

// TestSharedJoinerLeaves: a joiner whose client goes away stops waiting.
func TestSharedJoinerLeaves(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	h := Shared(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	go serveOnce(h, "/metrics", nil)
	sh := h.(*shared)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		sh.mu.Lock()
		n := len(sh.flights)
		sh.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first request never started its flight")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil).WithContext(ctx))
	if rec.Body.Len() != 0 {
		t.Errorf("a joiner that left was answered: %q", rec.Body.String())
	}
}

// TestSharedMemoryUnderConcurrency: the memory twenty concurrent scrapes
// allocate is about one scrape's, not twenty times it. The call stands for
// a gather and an encoding: it allocates 4 MiB and answers 1 MiB.
func TestSharedMemoryUnderConcurrency(t *testing.T) {
	const work, answer = 4 << 20, 1 << 20
	g, h := newGate(func(int32) []byte {
		scratch := make([]byte, work)
		scratch[work-1] = 1
		return bytes.Repeat([]byte{'x'}, answer)
	})
	allocs := func(n int) uint64 {
		g.expect(n)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		// Writers that count and drop, as a socket keeps no copy.
		ws := make([]countingWriter, n)
		var wg sync.WaitGroup
		for i := range ws {
			ws[i].header = http.Header{}
			wg.Go(func() { h.ServeHTTP(&ws[i], httptest.NewRequest(http.MethodGet, "/metrics", nil)) })
		}
		wg.Wait()
		runtime.ReadMemStats(&after)
		for _, w := range ws {
			if w.n != answer {
				t.Fatalf("a scrape got %d bytes", w.n)
			}
		}
		return after.TotalAlloc - before.TotalAlloc
	}
	one := allocs(1)
	twenty := allocs(20)
	t.Logf("allocated by 1 scrape: %.1f MiB; by 20 concurrent: %.1f MiB", float64(one)/(1<<20), float64(twenty)/(1<<20))
	if float64(twenty) > 1.5*float64(one) {
		t.Errorf("20 concurrent scrapes allocated %d bytes, more than 1.5 x one scrape's %d", twenty, one)
	}
}

type countingWriter struct {
	header http.Header
	n      int
}

func (w *countingWriter) Header() http.Header { return w.header }
func (w *countingWriter) WriteHeader(int)     {}
func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}

// TestRecorderKeepsEveryByte: writes of every size, across chunk
// boundaries, come back whole and in order.
func TestRecorderKeepsEveryByte(t *testing.T) {
	var want bytes.Buffer
	rec := &recorder{header: http.Header{}}
	for i, size := range []int{1, 4 << 10, chunkSize - 1, chunkSize, 3*chunkSize + 7, 0, 100} {
		p := bytes.Repeat([]byte{byte('a' + i)}, size)
		if n, err := rec.Write(p); n != size || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", size, n, err)
		}
		want.Write(p)
	}
	f := &flight{status: rec.status, header: rec.header, body: rec.chunks}
	out := httptest.NewRecorder()
	f.answer(out)
	if !bytes.Equal(out.Body.Bytes(), want.Bytes()) {
		t.Errorf("answered %d bytes, want the %d written", out.Body.Len(), want.Len())
	}
	for i, c := range rec.chunks {
		if cap(c) > chunkSize {
			t.Errorf("chunk %d holds %d bytes, over %d", i, cap(c), chunkSize)
		}
	}
}

// TestSharedSendsLengthInOnePiece: an answer carries its Content-Length,
// so net/http sends it without chunked framing, and once a body's size is
// known the next one of the same encoding is recorded in one chunk.
func TestSharedSendsLengthInOnePiece(t *testing.T) {
	body := bytes.Repeat([]byte("listenq_queue_length 0\n"), 3000) // 69 KB
	_, h := newGate(func(int32) []byte { return body })
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for i := range 2 {
		resp, err := client.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("scrape %d: %d bytes (%v), want %d", i, len(got), err, len(body))
		}
		if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
			t.Errorf("scrape %d: Content-Length %d, Transfer-Encoding %v; want %d and none", i, resp.ContentLength, resp.TransferEncoding, len(body))
		}
	}
	// HEAD: the length a GET would have, and no body.
	resp, err := client.Head(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ContentLength != int64(len(body)) || len(got) != 0 {
		t.Errorf("HEAD: Content-Length %d and %d bytes of body, want %d and none", resp.ContentLength, len(got), len(body))
	}
	sh := h.(*shared)
	rec := &recorder{header: http.Header{}, hint: int(sh.sizes[0].Load())}
	rec.Write(body[:100]) //nolint:errcheck // a recorder
	rec.Write(body[100:]) //nolint:errcheck // a recorder
	if len(rec.chunks) != 1 {
		t.Errorf("with the last size as a hint, %d bytes took %d chunks, want 1", len(body), len(rec.chunks))
	}
	// No body, no length: a 304 carries none.
	out := httptest.NewRecorder()
	(&flight{status: http.StatusNotModified, header: http.Header{}}).answer(out)
	if cl := out.Header().Get("Content-Length"); cl != "" {
		t.Errorf("a 304 answered with Content-Length %q", cl)
	}
}
