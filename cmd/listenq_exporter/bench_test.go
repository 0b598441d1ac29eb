package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/internal/testns"
)

// benchHandler is the /metrics handler with default flags, over 1,000 TCP
// listeners in the test's namespace.
func benchHandler(b *testing.B) http.Handler { return benchHandlerOver(b, 1000, 0) }

// benchHandlerOver is the /metrics handler with default flags, over tcp
// TCP and unixN unix listeners in the test's namespace.
func benchHandlerOver(b *testing.B, tcp, unixN int) http.Handler {
	b.Helper()
	testns.Require(b)
	raiseFDLimit(b, uint64(tcp+unixN+1000))
	for range tcp {
		testns.ListenTCP(b, "127.0.0.1:0", 128, false)
	}
	dir := b.TempDir()
	for i := range unixN {
		testns.ListenUnix(b, filepath.Join(dir, "app-"+strconv.Itoa(i)+".sock"), unix.SOCK_STREAM, 128)
	}
	app := kingpin.New("bench", "")
	cfg := addFlags(app)
	// One namespace, the test's own, as bench/run.sh measures.
	if _, err := app.Parse([]string{"--no-netns.discovery", "--filter.max-listeners=" + strconv.Itoa(tcp+unixN)}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	handler, err := newMetricsHandler(ctx, cfg, promslog.NewNopLogger())
	if err != nil {
		b.Fatal(err)
	}
	// The first scrape names the owners; a benchmark measures the steady
	// state.
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return handler
}

// BenchmarkScrape measures a whole /metrics request, handler and encoding
// included, plain and gzipped.
func BenchmarkScrape(b *testing.B) {
	benchEncodings(b, benchHandler(b))
}

// BenchmarkScrapeLarge is BenchmarkScrape over 18,000 listeners (15,000
// unix, 3,000 TCP), plain and gzipped: as many as one process may hold
// under a 20,000 descriptor limit. bench/scale.sh measures 25,000 held by
// several processes.
func BenchmarkScrapeLarge(b *testing.B) {
	benchEncodings(b, benchHandlerOver(b, 3000, 15000))
}

// benchEncodings scrapes handler plain and with gzip, as Prometheus asks.
func benchEncodings(b *testing.B, handler http.Handler) {
	for _, enc := range []string{"identity", "gzip"} {
		b.Run(enc, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			req.Header.Set("Accept-Encoding", enc)
			for b.Loop() {
				w := &discardWriter{header: http.Header{}}
				handler.ServeHTTP(w, req)
				if w.n == 0 {
					b.Fatal("empty answer")
				}
				b.SetBytes(int64(w.n))
			}
		})
	}
}

type discardWriter struct {
	header http.Header
	n      int
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) WriteHeader(int)     {}
func (w *discardWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}

func raiseFDLimit(b *testing.B, n uint64) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		b.Fatalf("needs %d descriptors, the hard limit is %d", n, lim.Max)
	}
	old := lim
	lim.Cur = n
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatalf("raising the descriptor limit to %d: %v", n, err)
	}
	b.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &old) }) //nolint:errcheck // best effort
}

// BenchmarkScrapeHTTP is BenchmarkScrape through a loopback HTTP server and
// client, as Prometheus scrapes.
func BenchmarkScrapeHTTP(b *testing.B) {
	srv := httptest.NewServer(benchHandler(b))
	defer srv.Close()
	for b.Loop() {
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}
