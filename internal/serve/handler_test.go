package serve

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"
)

// famSnapshot is a Snapshot of fixed families, written with expfmt; the
// collector package holds its own Snapshot to expfmt's bytes.
type famSnapshot []*dto.MetricFamily

func (s famSnapshot) Empty() bool { return len(s) == 0 }

func (s famSnapshot) WriteText(w io.Writer, format expfmt.Format) error {
	enc := expfmt.NewEncoder(w, format)
	var errs []error
	for _, mf := range s {
		errs = append(errs, enc.Encode(mf))
	}
	return errors.Join(errs...)
}

func testFamilies() famSnapshot {
	var out famSnapshot
	for _, name := range []string{"a_first", "listenq_queue_length", "listenq_queue_limit", "zz_last"} {
		mf := &dto.MetricFamily{Name: proto.String(name), Help: proto.String("Help of " + name + " with \\ and\nnewline."), Type: dto.MetricType_GAUGE.Enum()}
		for i, v := range []string{"", `q"uote`, "back\\slash", "new\nline", "日本", "\xff"} {
			mf.Metric = append(mf.Metric, &dto.Metric{
				Label: []*dto.LabelPair{{Name: proto.String("listener"), Value: proto.String(v)}},
				Gauge: &dto.Gauge{Value: proto.Float64(float64(i) * 1.5)},
			})
		}
		out = append(out, mf)
	}
	return out
}

// requestHeaders are what scrapers send: Prometheus 2 and 3, curl, and
// the corners of negotiation.
var requestHeaders = []map[string]string{
	{},
	{"Accept-Encoding": "gzip"},
	{"Accept": "text/plain;version=0.0.4;q=1,*/*;q=0.1", "Accept-Encoding": "gzip"},
	{"Accept": "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2", "Accept-Encoding": "gzip"},
	{"Accept": "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3", "Accept-Encoding": "gzip"},
	{"Accept": "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text"},
	{"Accept": "text/plain;version=0.0.4;escaping=underscores"},
	{"Accept": "text/plain;escaping=allow-utf-8"},
	{"Accept": "*/*", "Accept-Encoding": "deflate, gzip;q=1.0, *;q=0.5"},
	{"Accept-Encoding": "gzip;q=0"},
	{"Accept-Encoding": "identity;q=0, gzip;q=0"},
	{"Accept-Encoding": "zstd"},
	{"Accept-Encoding": "br;q=1.0, gzip;q=0.8, *;q=0.1"},
	{"Accept": "application/json"},
}

// TestHandlerMatchesPromhttp: for every kind of request, Handler answers
// with promhttp's status, headers and bytes; gzipped bodies decode to the
// same bytes (the compression level differs on purpose). A snapshot that
// gzips itself is asked to for every gzipped text answer.
func TestHandlerMatchesPromhttp(t *testing.T) {
	fams := testFamilies()
	ref := promhttp.HandlerFor(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return fams, nil }),
		promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	gz := &gzSnapshot{famSnapshot: fams}
	for _, snap := range []Snapshot{fams, gz} {
		fastCalls := 0
		h := New(func() (Snapshot, error) { fastCalls++; return snap, nil }, ref, Options{})
		for _, target := range []string{"/metrics", "/metrics?name[]=zz_last"} {
			for _, hdr := range requestHeaders {
				want := serveOnce(ref, target, hdr)
				before := gz.calls
				got := serveOnce(h, target, hdr)
				what := fmt.Sprintf("%T %s %s", snap, target, describe(hdr))
				if got.Code != want.Code {
					t.Errorf("%s: status %d, promhttp %d", what, got.Code, want.Code)
				}
				for _, k := range []string{"Content-Type", "Content-Encoding", "Vary"} {
					if g, w := got.Header().Values(k), want.Header().Values(k); !slices.Equal(g, w) {
						t.Errorf("%s: %s %q, promhttp %q", what, k, g, w)
					}
				}
				if g, w := plain(t, got), plain(t, want); g != w || len(g) == 0 {
					t.Errorf("%s: body differs from promhttp's:\n%q\n%q", what, g, w)
				}
				textGzip := target == "/metrics" && got.Header().Get("Content-Encoding") == "gzip" && strings.HasPrefix(got.Header().Get("Content-Type"), "text/plain")
				if asked := gz.calls > before; snap == Snapshot(gz) && asked != textGzip {
					t.Errorf("%s: TryWriteGzip called %v, want %v", what, asked, textGzip)
				}
			}
		}
		if fastCalls == 0 {
			t.Errorf("%T: no request took the text path", snap)
		}
	}
	if gz.calls == 0 {
		t.Error("TryWriteGzip never called")
	}
}

// gzSnapshot gzips famSnapshot's text itself, counting the calls; every
// other call it declines, for the Handler to gzip.
type gzSnapshot struct {
	famSnapshot
	calls int
}

func (s *gzSnapshot) TryWriteGzip(w io.Writer, format expfmt.Format) (bool, error) {
	s.calls++
	if s.calls%2 == 0 {
		return false, nil
	}
	zw := gzip.NewWriter(w)
	return true, errors.Join(s.WriteText(zw, format), zw.Close())
}

// TestHandlerErrors: a partial failure is served, a total one is a 500,
// as with promhttp's ContinueOnError; both are logged.
func TestHandlerErrors(t *testing.T) {
	var logged strings.Builder
	logger := loggerFunc(func(v ...any) {
		logged.WriteString(strings.TrimSpace(strings.Repeat("%v ", len(v))))
		logged.WriteString("\n")
	})
	fams := testFamilies()
	partial := New(func() (Snapshot, error) { return fams, errors.New("one collector failed") }, http.NotFoundHandler(), Options{ErrorLog: logger})
	if rec := serveOnce(partial, "/metrics", nil); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "zz_last") {
		t.Errorf("partial failure: status %d, body %q", rec.Code, rec.Body.String())
	}
	total := New(func() (Snapshot, error) { return nil, errors.New("nothing read") }, http.NotFoundHandler(), Options{ErrorLog: logger})
	rec := serveOnce(total, "/metrics", map[string]string{"Accept-Encoding": "gzip"})
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "nothing read") || rec.Header().Get("Content-Encoding") != "" {
		t.Errorf("total failure: status %d, encoding %q, body %q", rec.Code, rec.Header().Get("Content-Encoding"), rec.Body.String())
	}
	if strings.Count(logged.String(), "\n") != 2 {
		t.Errorf("want two errors logged, got %q", logged.String())
	}
}

// TestHandlerLimit: beyond MaxRequestsInFlight a request gets promhttp's
// 503.
func TestHandlerLimit(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	h := New(func() (Snapshot, error) { close(entered); <-release; return testFamilies(), nil }, http.NotFoundHandler(), Options{MaxRequestsInFlight: 1})
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- serveOnce(h, "/metrics", nil) }()
	<-entered
	rec := serveOnce(h, "/metrics", nil)
	close(release)
	if first := <-done; first.Code != http.StatusOK {
		t.Errorf("first request: %d", first.Code)
	}
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "Limit of concurrent requests reached (1)") {
		t.Errorf("second request: %d %q", rec.Code, rec.Body.String())
	}
}

type loggerFunc func(v ...any)

func (f loggerFunc) Println(v ...any) { f(v...) }

func serveOnce(h http.Handler, target string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func describe(hdr map[string]string) string {
	var parts []string
	for k, v := range hdr {
		parts = append(parts, k+": "+v)
	}
	slices.Sort(parts)
	return "[" + strings.Join(parts, "; ") + "]"
}

// plain is a response body, uncompressed.
func plain(t *testing.T, rec *httptest.ResponseRecorder) string {
	if rec.Header().Get("Content-Encoding") != "gzip" {
		return rec.Body.String()
	}
	zr, err := gzip.NewReader(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestNegotiationsBounded: clients sending ever new headers do not grow
// the remembered negotiations without bound, and are still answered right.
func TestNegotiationsBounded(t *testing.T) {
	fams := testFamilies()
	h := New(func() (Snapshot, error) { return fams, nil }, http.NotFoundHandler(), Options{})
	for i := range 200 {
		rec := serveOnce(h, "/metrics", map[string]string{"Accept": "text/plain;q=0." + strconv.Itoa(i%9+1) + ";x=" + strconv.Itoa(i)})
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
			t.Fatalf("request %d: %d %q", i, rec.Code, rec.Header().Get("Content-Type"))
		}
	}
	if n := len(h.negotiations); n > maxNegotiations {
		t.Errorf("%d negotiations remembered, over %d", n, maxNegotiations)
	}
}

// TestSplitAcceptHeaders: promhttp reads only the first Accept line, so a
// request sending two lines must not share a remembered negotiation (or a
// flight) with one sending the same values on one line.
func TestSplitAcceptHeaders(t *testing.T) {
	fams := testFamilies()
	ref := promhttp.HandlerFor(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return fams, nil }),
		promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	h := Shared(New(func() (Snapshot, error) { return fams, nil }, ref, Options{}))
	const text, proto = "text/plain;version=0.0.4;q=0.5", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
	for _, lines := range [][]string{{text, proto}, {text + "," + proto}, {proto, text}} {
		req := func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			for _, l := range lines {
				r.Header.Add("Accept", l)
			}
			return r
		}
		got, want := httptest.NewRecorder(), httptest.NewRecorder()
		h.ServeHTTP(got, req())
		ref.ServeHTTP(want, req())
		if g, w := got.Header().Get("Content-Type"), want.Header().Get("Content-Type"); g != w || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
			t.Errorf("Accept %q: Content-Type %q, promhttp %q (bodies equal: %v)", lines, g, w, bytes.Equal(got.Body.Bytes(), want.Body.Bytes()))
		}
	}
}
