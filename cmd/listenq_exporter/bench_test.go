package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"

	"github.com/listenq/listenq_exporter/internal/testns"
)

// benchHandler is the /metrics handler with default flags, over 1,000 TCP
// listeners in the test's namespace.
func benchHandler(b *testing.B) http.Handler {
	b.Helper()
	testns.Require(b)
	for range 1000 {
		testns.ListenTCP(b, "127.0.0.1:0", 128, false)
	}
	app := kingpin.New("bench", "")
	cfg := addFlags(app)
	// One namespace, the test's own, as bench/run.sh measures.
	if _, err := app.Parse([]string{"--no-netns.discovery"}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	handler, err := newMetricsHandler(ctx, cfg, promslog.NewNopLogger())
	if err != nil {
		b.Fatal(err)
	}
	return handler
}

// BenchmarkScrape measures a whole /metrics request, handler and encoding
// included.
func BenchmarkScrape(b *testing.B) {
	handler := benchHandler(b)
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	for b.Loop() {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
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
