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

// BenchmarkScrape measures a whole /metrics request, handler and encoding
// included, with 1,000 TCP listeners in the test's namespace and default
// flags.
func BenchmarkScrape(b *testing.B) {
	testns.Require(b)
	for range 1000 {
		testns.ListenTCP(b, "127.0.0.1:0", 128, false)
	}
	app := kingpin.New("bench", "")
	cfg := addFlags(app)
	if _, err := app.Parse(nil); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	handler, err := newMetricsHandler(ctx, cfg, promslog.NewNopLogger())
	if err != nil {
		b.Fatal(err)
	}
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
	testns.Require(b)
	for range 1000 {
		testns.ListenTCP(b, "127.0.0.1:0", 128, false)
	}
	app := kingpin.New("bench", "")
	cfg := addFlags(app)
	if _, err := app.Parse(nil); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	handler, err := newMetricsHandler(ctx, cfg, promslog.NewNopLogger())
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(handler)
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
