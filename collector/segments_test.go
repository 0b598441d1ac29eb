package collector

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// TestGzipMatchesText: over scrapes of listeners that come and go and
// whose values change now and then, as on a node, what TryWriteGzip writes
// decodes to WriteText's bytes, in every text format, while most segments
// are reused from the scrape before.
func TestGzipMatchesText(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	pool := make([]listenerRow, 3000)
	for i := range pool {
		var values [numListenerLabels]string
		for j := range values {
			values[j] = randomLabelValue(rng)
		}
		values[inodeIndex] = strconv.Itoa(rng.IntN(1 << 30))
		pool[i] = listenerRow{labels: labelSetOf(values)}
		for m := range numListenerMetrics {
			if m <= mQueueLimit || rng.IntN(3) > 0 {
				pool[i].set(m, randomValue(rng))
			}
		}
	}
	var cache segmentCache
	order := &orderCache{}
	live := make([]bool, len(pool))
	for i := range live {
		live[i] = rng.IntN(10) > 0
	}
	for round := range 12 {
		if round > 0 {
			churn(rng, pool, live)
		}
		fams := &listenerFamilies{}
		for i := range pool {
			if live[i] {
				fams.add([]listenerRow{pool[i]})
			}
		}
		s := &Snapshot{rows: fams.sorted(order), segments: &cache, families: ordinaryFamilies(rng)}
		if err := s.orderListeners(); err != nil {
			t.Fatal(err)
		}
		compressed := cache.compressed
		format := textFormats[round%len(textFormats)]
		want := writeText(t, s, format)
		if got := gunzip(t, s, format); !bytes.Equal(got, want) {
			t.Fatalf("round %d, %s: TryWriteGzip decodes to other bytes than WriteText\n%s", round, format, firstDiff(got, want))
		}
		written := cache.compressed - compressed
		// Each changed value changes one segment; each listener come or
		// gone, one per family it is in.
		if most := valueChanges + toggles*numListenerMetrics; round > 0 && (written == 0 || written > most) {
			t.Errorf("round %d: %d of %d segments compressed anew after changes that touch at most %d", round, written, len(cache.entries), most)
		}
	}
}

const valueChanges, toggles = 8, 4

// churn changes a few listeners' values and which listeners exist.
func churn(rng *rand.Rand, pool []listenerRow, live []bool) {
	for range valueChanges {
		i := rng.IntN(len(pool))
		m := rng.IntN(numListenerMetrics)
		pool[i].set(m, randomValue(rng))
	}
	for range toggles {
		i := rng.IntN(len(live))
		live[i] = !live[i]
	}
}

// TestGzipConcurrent: of scrapes writing at once, the one holding the
// cache writes, and the others decline, writing nothing.
func TestGzipConcurrent(t *testing.T) {
	s := randomSnapshot(rand.New(rand.NewPCG(9, 10)), 500)
	s.segments = &segmentCache{}
	want := writeText(t, s, expfmt.FmtText)
	var wg sync.WaitGroup
	bodies := make([][]byte, 8)
	wrote := make([]bool, len(bodies))
	for i := range bodies {
		wg.Go(func() {
			var out bytes.Buffer
			ok, err := s.TryWriteGzip(&out, expfmt.FmtText)
			if err != nil {
				t.Error(err)
			}
			bodies[i], wrote[i] = out.Bytes(), ok
		})
	}
	wg.Wait()
	n := 0
	for i, b := range bodies {
		if !wrote[i] {
			if len(b) != 0 {
				t.Errorf("scrape %d declined and wrote %d bytes", i, len(b))
			}
			continue
		}
		n++
		if got := decode(t, b); !bytes.Equal(got, want) {
			t.Fatalf("scrape %d decodes to other bytes than WriteText\n%s", i, firstDiff(got, want))
		}
	}
	if n == 0 {
		t.Error("no scrape wrote")
	}
	var out bytes.Buffer
	if ok, err := (&Snapshot{rows: s.rows, order: s.order}).TryWriteGzip(&out, expfmt.FmtText); ok || err != nil || out.Len() != 0 {
		t.Errorf("without a cache: wrote %v, %d bytes, error %v; want a silent decline", ok, out.Len(), err)
	}
}

// TestGzipWriteError: a writer failing mid-body is reported once, and the
// next scrape still matches WriteText.
func TestGzipWriteError(t *testing.T) {
	s := randomSnapshot(rand.New(rand.NewPCG(11, 12)), 800)
	s.segments = &segmentCache{}
	broken := &failAfter{n: 2000}
	ok, err := s.TryWriteGzip(broken, expfmt.FmtText)
	if !ok || err == nil {
		t.Fatalf("TryWriteGzip to a failing writer: %v, %v; want true and an error", ok, err)
	}
	if n := strings.Count(err.Error(), errBroken.Error()); n != 1 {
		t.Errorf("the write error is reported %d times: %v", n, err)
	}
	if got, want := gunzip(t, s, expfmt.FmtText), writeText(t, s, expfmt.FmtText); !bytes.Equal(got, want) {
		t.Fatalf("after a failed write: other bytes than WriteText\n%s", firstDiff(got, want))
	}
}

// TestGzipWithoutListeners: a snapshot of ordinary families only, and one
// of nothing at all, are one run each, written as WriteText writes them.
func TestGzipWithoutListeners(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, s := range []*Snapshot{{families: ordinaryFamilies(rng)}, {}} {
		s.segments = &segmentCache{}
		if got, want := gunzip(t, s, expfmt.FmtText), writeText(t, s, expfmt.FmtText); !bytes.Equal(got, want) {
			t.Fatalf("%d families: other bytes than WriteText\n%s", len(s.families), firstDiff(got, want))
		}
	}
}

// TestGzipReportsEncodingErrors: a family the encoder rejects, between two
// listener families, is reported, and the rest is written as WriteText
// writes it.
func TestGzipReportsEncodingErrors(t *testing.T) {
	s := randomSnapshot(rand.New(rand.NewPCG(13, 14)), 50)
	bad := gaugeFamily("listenq_queue_lengths_bad", "Has no gauge.", 1)
	bad.Metric[0].Gauge = nil
	s.families = append(s.families, bad)
	slices.SortFunc(s.families, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	s.segments = &segmentCache{}
	var out bytes.Buffer
	ok, err := s.TryWriteGzip(&out, expfmt.FmtText)
	if !ok || err == nil || !strings.Contains(err.Error(), "encoding listenq_queue_lengths_bad") {
		t.Fatalf("TryWriteGzip with a bad family: %v, %v; want true and its encoding error", ok, err)
	}
	var text bytes.Buffer
	if err := s.WriteText(&text, expfmt.FmtText); err == nil {
		t.Fatal("WriteText accepted the bad family")
	}
	if got := decode(t, out.Bytes()); !bytes.Equal(got, text.Bytes()) {
		t.Fatalf("other bytes than WriteText\n%s", firstDiff(got, text.Bytes()))
	}
}

var errBroken = errors.New("connection reset by peer")

type failAfter struct{ n int }

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errBroken
	}
	return len(p), nil
}

func TestWriteGzipRejectsOtherFormats(t *testing.T) {
	s := randomSnapshot(rand.New(rand.NewPCG(3, 4)), 3)
	s.segments = &segmentCache{}
	for _, f := range []expfmt.Format{expfmt.NewFormat(expfmt.TypeProtoDelim), expfmt.NewFormat(expfmt.TypeOpenMetrics)} {
		if _, err := s.TryWriteGzip(&bytes.Buffer{}, f); err == nil {
			t.Errorf("TryWriteGzip(%s) gave no error", f)
		}
	}
}

func writeText(t *testing.T, s *Snapshot, format expfmt.Format) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := s.WriteText(&b, format); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gunzip(t *testing.T, s *Snapshot, format expfmt.Format) []byte {
	t.Helper()
	var b bytes.Buffer
	if ok, err := s.TryWriteGzip(&b, format); !ok || err != nil {
		t.Fatalf("TryWriteGzip: %v, %v", ok, err)
	}
	return decode(t, b.Bytes())
}

func decode(t *testing.T, body []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
