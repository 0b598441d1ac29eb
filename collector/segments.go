package collector

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/listenq/listenq_exporter/internal/gzipseg"
)

// A gzipped scrape (Prometheus always asks for gzip) spends most of its
// CPU writing and compressing the per-listener series, and at any moment
// nearly all of them are what the last scrape sent: idle listeners' queues
// stay 0, their limits and drop counters still. So a gzipped scrape keeps
// each listener family's series compressed in segments of consecutive
// rows, and a segment whose rows are the same listeners with the same
// values as last time is copied as it was compressed (package gzipseg).
//
// Segment boundaries follow the content, not the position: a segment ends
// after a row whose labels hash to a cut (about one in segmentRows), or
// after maxSegmentRows rows. A listener that comes or goes, or whose value
// changes, thus changes the one segment it is in, and the segments after
// it stay as they were.
//
//	rows (sorted) ──▶ per family: runs of rows ending at a cut
//	                    │ same labelSets and values as the cached run? ──▶ copy its Segment
//	                    └ otherwise: write the lines, compress, cache  ──▶ the new Segment
//
// The decoded body is WriteText's, byte for byte (TestGzipMatchesText).

// segmentRows is the mean rows of a segment: big enough that the deflate
// of each starts well, small enough that a change recompresses little.
const segmentRows = 128

// maxSegmentRows bounds a segment whose rows happen to have no cut.
const maxSegmentRows = 8 * segmentRows

// segmentCut reports whether a segment ends after a row with these labels.
func segmentCut(ls *labelSet) bool {
	// FNV-1a: cheap, and spreads the small differences between the
	// labels of neighbouring rows.
	const prime = 16777619
	h := uint32(2166136261)
	var buf [128]byte // a label set is made once: a longer value may allocate
	for i := range numListenerLabels {
		for _, c := range ls.appendValue(buf[:0], i) {
			h = (h ^ uint32(c)) * prime
		}
		h = (h ^ 0xff) * prime // between values, so a byte moved from one to the next counts
	}
	return h%segmentRows == 0
}

// segmentCache is what the last gzipped scrape compressed.
type segmentCache struct {
	mu      sync.Mutex
	entries map[segmentKey]*segmentEntry
	headers [numListenerMetrics]*headerEntry
	round   uint64
	z       *gzipseg.Writer
	runs    []ordinaryRun
	text    []byte
	// compressed counts the segments compressed, for tests.
	compressed int
}

// segmentKey names a segment by its family and its first row's labels.
type segmentKey struct {
	metric int
	first  *labelSet
}

type segmentEntry struct {
	// n and sum stand for the series the segment holds: how many, and a
	// hash of each one's label set id and value, in order (seriesSum).
	// Kept instead of the series themselves, 16 bytes each, they make a
	// different run of series look the same with a chance of about 2^-64
	// per changed segment.
	n     int
	sum   uint64
	seg   gzipseg.Segment
	round uint64
}

// seriesSum returns the count and hash of metric m's series in rows.
func seriesSum(rows []listenerRow, m int) (n int, sum uint64) {
	for i := range rows {
		r := &rows[i]
		if !r.has[m] {
			continue
		}
		n++
		sum = mix(mix(sum, r.labels.id), math.Float64bits(r.values[m]))
	}
	return n, sum
}

// mix folds v into h as wyhash's multiply-and-fold does: a 128-bit
// product of the two, each offset by a secret of the process, whose halves
// are xored. Cheap (a scrape of 25,000 listeners hashes 100,000 series),
// and no input is simple enough to make it collide on purpose.
func mix(h, v uint64) uint64 {
	hi, lo := bits.Mul64(h^mixSecret[0], v^mixSecret[1])
	return hi ^ lo
}

var mixSecret = [2]uint64{rand.Uint64() | 1, rand.Uint64() | 1}

// TryWriteGzip writes the snapshot as WriteText does, gzipped, reusing the
// compressed segments of the listener families that the last gzipped
// scrape wrote, and reports true. One call at a time uses the cache: while
// another holds it, or without one, it writes nothing and reports false,
// and the caller gzips WriteText's bytes itself, which costs less than
// compressing every segment apart.
func (s *Snapshot) TryWriteGzip(w io.Writer, format expfmt.Format) (bool, error) {
	if format.FormatType() != expfmt.TypeTextPlain {
		return false, fmt.Errorf("TryWriteGzip: %s is not the text format", format)
	}
	c := s.segments
	if c == nil || !c.mu.TryLock() {
		return false, nil
	}
	defer c.mu.Unlock()
	if c.z == nil {
		c.z = gzipseg.NewWriter(nil)
	}
	c.z.Reset(w)
	defer c.z.Reset(nil) // keep no reference to w
	c.round++
	err := c.write(s, format)
	if werr := c.z.Close(); werr != nil {
		// The writer's error is sticky: reported once, and the segments
		// not reached are kept for the next scrape.
		return true, errors.Join(withoutWriteErr(err, werr), werr)
	}
	c.evict()
	return true, err
}

// withoutWriteErr is err (possibly joined) less what is werr.
func withoutWriteErr(err, werr error) error {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var keep []error
	for _, e := range errs {
		if !errors.Is(e, werr) {
			keep = append(keep, e)
		}
	}
	return errors.Join(keep...)
}

// write writes the snapshot to c.z in segments only. The listener
// families' come from the cache; the runs of other families between two of
// them (the Go runtime's, the process's, the sysctls and counters) are
// encoded and compressed afresh: the first (the Go runtime's families, the
// largest) by this goroutine, the others by a helper meanwhile, and while
// this one then copies the listener families'. At 1,000 listeners the two halves take about as long (15 KB
// of fresh text to compress against 50 KB of segments to copy), and the
// second core has nothing else to do then.
func (c *segmentCache) write(s *Snapshot, format expfmt.Format) error {
	runs := s.ordinaryRuns()
	c.runs = slices.Grow(c.runs[:0], len(runs))[:len(runs)]
	compressed := make(chan error, len(runs)) // runs 1 to n, in order
	go func() {
		for k := 1; k < len(runs); k++ {
			compressed <- c.compressRunSafely(&c.runs[k], runs[k], format)
		}
	}()
	// Every run the helper compresses is waited for, also after a write
	// failed or a panic here: it uses c.runs until its last one, and the
	// cache is unlocked when this returns.
	received := 0
	defer func() {
		for ; received < len(runs)-1; received++ {
			<-compressed //nolint:errcheck // reported, or not, by the caller that returns now
		}
	}()
	errs := []error{c.compressRun(&c.runs[0], runs[0], format, c.z.Compress)}
	for k := range runs {
		if k > 0 {
			errs = append(errs, <-compressed)
			received++
		}
		if c.z.Err() != nil {
			continue // said once, by the write that met it
		}
		if r := &c.runs[k]; r.size > 0 {
			errs = append(errs, c.z.WriteSegment(&r.seg))
		}
		if k < len(s.order) && c.z.Err() == nil {
			errs = append(errs, c.writeFamily(c.z, s, s.order[k]))
		}
	}
	return errors.Join(errs...)
}

// ordinaryRun is a run of ordinary families between two listener
// families, compressed.
type ordinaryRun struct {
	seg  gzipseg.Segment
	size int // of its text; 0 for a run of no families
	text bytes.Buffer
}

// compressRunSafely is compressRun with gzipseg.CompressAlone, for the
// helper goroutine: a panic there, out of reach of net/http's recovery,
// would end the process, so it is returned as the run's error.
func (c *segmentCache) compressRunSafely(r *ordinaryRun, fams []*dto.MetricFamily, format expfmt.Format) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.size = 0
			err = fmt.Errorf("encoding metric families: panic: %v", p)
		}
	}()
	return c.compressRun(r, fams, format, gzipseg.CompressAlone)
}

// compressRun sets r to the text of fams, compressed by compress.
func (c *segmentCache) compressRun(r *ordinaryRun, fams []*dto.MetricFamily, format expfmt.Format, compress func(*gzipseg.Segment, []byte)) error {
	r.text.Reset()
	enc := expfmt.NewEncoder(&r.text, format)
	var errs []error
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			errs = append(errs, fmt.Errorf("encoding %s: %w", f.GetName(), err))
		}
	}
	r.size = r.text.Len()
	if r.size > 0 {
		compress(&r.seg, r.text.Bytes())
	}
	return errors.Join(errs...)
}

// writeFamily writes metric m's family header and series in segments to z.
func (c *segmentCache) writeFamily(z *gzipseg.Writer, s *Snapshot, m int) error {
	if err := z.WriteSegment(c.header(s, m)); err != nil {
		return err
	}
	rows := s.rows.rows
	start, n := -1, 0
	for i := range rows {
		r := &rows[i]
		if !r.has[m] {
			continue
		}
		if start < 0 {
			start, n = i, 0
		}
		if n++; r.labels.cut || n == maxSegmentRows {
			if err := z.WriteSegment(c.segment(rows[start:i+1], m)); err != nil {
				return err
			}
			start = -1
		}
	}
	if start >= 0 {
		return z.WriteSegment(c.segment(rows[start:], m))
	}
	return nil
}

// header returns the segment of metric m's HELP and TYPE lines: a fresh
// compression would cost a flush and a reset of the compressor per family.
func (c *segmentCache) header(s *Snapshot, m int) *gzipseg.Segment {
	c.text = s.familyHeader(c.text[:0], m)
	e := c.headers[m]
	if e == nil || e.text != string(c.text) {
		e = &headerEntry{text: string(c.text)}
		c.z.Compress(&e.seg, c.text)
		c.headers[m] = e
	}
	return &e.seg
}

type headerEntry struct {
	text string
	seg  gzipseg.Segment
}

// segment returns the segment of metric m over rows (the first has m),
// from the cache if it holds the same series.
func (c *segmentCache) segment(rows []listenerRow, m int) *gzipseg.Segment {
	key := segmentKey{metric: m, first: rows[0].labels}
	e := c.entries[key]
	if e == nil {
		if c.entries == nil {
			c.entries = map[segmentKey]*segmentEntry{}
		}
		e = &segmentEntry{}
		c.entries[key] = e
	} else if e.round == c.round {
		// Two runs starting at the same labels in one family: only
		// with a listener exported twice. Compress it apart.
		e = &segmentEntry{}
	}
	e.round = c.round
	n, sum := seriesSum(rows, m)
	if e.n == n && e.sum == sum {
		return &e.seg
	}
	e.n, e.sum = n, sum
	def := listenerMetrics[m]
	text := c.text[:0]
	for i := range rows {
		r := &rows[i]
		if r.has[m] {
			text = appendLine(text, def.name, r, m)
		}
	}
	c.text = text
	c.z.Compress(&e.seg, text)
	c.compressed++
	return &e.seg
}

// evict drops the segments this scrape did not write.
func (c *segmentCache) evict() {
	for k, e := range c.entries {
		if e.round != c.round {
			delete(c.entries, k)
		}
	}
}
