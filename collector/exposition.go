package collector

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Snapshot is everything one scrape read: the families of the ordinary
// collectors and registries, and the per-listener series. Per-listener
// series are nearly all of a large scrape, so a Snapshot writes them in the
// text format itself, from label sets kept once per listener, and builds
// client_golang families of them only for the other formats. Both ways give
// the bytes client_golang's encoder gives; TestTextMatchesExpfmt holds them
// to it.
type Snapshot struct {
	// families are sorted by name; none has a listener metric's name.
	families []*dto.MetricFamily
	rows     listenerRows
	// order lists the listener metrics that have series, by name.
	order []int
	// segments is the listener exporter's cache for TryWriteGzip; without
	// one, TryWriteGzip declines.
	segments *segmentCache
}

// Snapshot reads every collector, gathers extra as well, and returns the
// result. The error reports what failed; the Snapshot holds what did not.
func (e *Exporter) Snapshot(extra ...prometheus.Gatherer) (*Snapshot, error) {
	fams := newListenerFamilies()
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectFunc(func(ch chan<- prometheus.Metric) { e.collect(ch, fams) })); err != nil {
		return nil, err
	}
	// The extra registries (the Go runtime's and the process's metrics,
	// which read procfs) are gathered while the kernel dumps run: with a
	// core to spare, a scrape then takes the longer of the two, not the sum.
	// What they hold is read at the scrape's start, not its end.
	extras := make([]gathered, len(extra))
	var wg sync.WaitGroup
	for i, g := range extra {
		wg.Go(func() { extras[i].mfs, extras[i].err = g.Gather() })
	}
	mfs, err := reg.Gather()
	wg.Wait()
	errs := []error{err}
	for _, x := range extras {
		var clash error
		mfs, clash = mergeFamilies(mfs, x.mfs)
		errs = append(errs, x.err, clash)
	}
	s := &Snapshot{families: mfs, rows: fams.sorted(&e.listeners.order), segments: &e.listeners.segments}
	errs = append(errs, s.orderListeners())
	return s, errors.Join(errs...)
}

// gathered is what one Gatherer returned.
type gathered struct {
	mfs []*dto.MetricFamily
	err error
}

// orderListeners sets order, leaving out (as mergeFamilies would) a
// listener metric whose name another family already has.
func (s *Snapshot) orderListeners() error {
	var clashes []string
	for _, m := range listenersByName {
		if s.rows.count(m) == 0 {
			continue
		}
		name := listenerMetrics[m].name
		if _, found := slices.BinarySearchFunc(s.families, name, func(mf *dto.MetricFamily, n string) int {
			return strings.Compare(mf.GetName(), n)
		}); found {
			clashes = append(clashes, name)
			continue
		}
		s.order = append(s.order, m)
	}
	if len(clashes) > 0 {
		return fmt.Errorf("metric families exported twice, the second dropped: %s", strings.Join(clashes, ", "))
	}
	return nil
}

// listenersByName is the listener metrics sorted by name, the order of the
// exposition.
var listenersByName = func() []int {
	order := make([]int, numListenerMetrics)
	for m := range order {
		order[m] = m
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(listenerMetrics[a].name, listenerMetrics[b].name) })
	return order
}()

// Empty reports whether the snapshot has no series at all.
func (s *Snapshot) Empty() bool { return len(s.families) == 0 && len(s.order) == 0 }

// Families returns the whole snapshot as client_golang families, sorted by
// name, for the formats other than text.
func (s *Snapshot) Families() []*dto.MetricFamily {
	var listeners []*dto.MetricFamily
	for _, mf := range s.rows.families() {
		for _, m := range s.order {
			if mf.GetName() == listenerMetrics[m].name {
				listeners = append(listeners, mf)
			}
		}
	}
	out, _ := mergeFamilies(s.families, listeners) // the clash was reported by Snapshot
	return out
}

var textWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// WriteText writes the snapshot in the text exposition format: the
// ordinary families through client_golang's encoder for format, the
// listener families from their rendered labels. An error encoding one
// family is reported, and the others are still written, as promhttp does.
func (s *Snapshot) WriteText(w io.Writer, format expfmt.Format) error {
	if format.FormatType() != expfmt.TypeTextPlain {
		return fmt.Errorf("WriteText: %s is not the text format", format)
	}
	buf := make([]byte, 0, chunk+1024)
	return s.writeTo(w, format, func(bw *bufio.Writer, m int) error {
		var err error
		buf, err = s.writeListenerFamily(bw, m, buf)
		return err
	})
}

// writeTo writes the families in order, the ordinary ones through
// client_golang's encoder and each listener family through listenerFamily.
func (s *Snapshot) writeTo(w io.Writer, format expfmt.Format, listenerFamily func(bw *bufio.Writer, m int) error) error {
	bw := textWriters.Get().(*bufio.Writer)
	bw.Reset(w)
	defer func() {
		bw.Reset(nil)
		textWriters.Put(bw)
	}()
	enc := expfmt.NewEncoder(bw, format)
	var errs []error
	i := 0
	encodeUpTo := func(name string) {
		for ; i < len(s.families) && (name == "" || s.families[i].GetName() < name); i++ {
			if err := enc.Encode(s.families[i]); err != nil {
				errs = append(errs, fmt.Errorf("encoding %s: %w", s.families[i].GetName(), err))
			}
		}
	}
	for _, m := range s.order {
		encodeUpTo(listenerMetrics[m].name)
		if err := listenerFamily(bw, m); err != nil {
			errs = append(errs, err)
		}
	}
	encodeUpTo("")
	errs = append(errs, bw.Flush())
	return errors.Join(errs...)
}

// ordinaryRuns splits the ordinary families as writeTo interleaves them
// with the listener families: run k comes before listener family order[k],
// and the last after every one.
func (s *Snapshot) ordinaryRuns() [][]*dto.MetricFamily {
	runs := make([][]*dto.MetricFamily, 0, len(s.order)+1)
	i := 0
	for _, m := range s.order {
		name := listenerMetrics[m].name
		j := i
		for j < len(s.families) && s.families[j].GetName() < name {
			j++
		}
		runs = append(runs, s.families[i:j])
		i = j
	}
	return append(runs, s.families[i:])
}

// writeListenerFamily writes metric m of every listener that has it, as
// expfmt.MetricFamilyToText writes a family: lines are built in buf and
// written a chunk at a time.
func (s *Snapshot) writeListenerFamily(w io.Writer, m int, buf []byte) ([]byte, error) {
	buf = s.familyHeader(buf[:0], m)
	name := listenerMetrics[m].name
	for i := range s.rows.rows {
		r := &s.rows.rows[i]
		if !r.has[m] {
			continue
		}
		buf = appendLine(buf, name, r, m)
		if len(buf) >= chunk {
			if _, err := w.Write(buf); err != nil {
				return buf, err
			}
			buf = buf[:0]
		}
	}
	_, err := w.Write(buf)
	return buf, err
}

// familyHeader appends the HELP and TYPE lines of metric m.
func (s *Snapshot) familyHeader(buf []byte, m int) []byte {
	def := listenerMetrics[m]
	buf = append(buf, "# HELP "...)
	buf = append(buf, def.name...)
	buf = append(buf, ' ')
	buf = append(buf, helpEscaper.Replace(s.rows.helpOf(m))...)
	buf = append(buf, "\n# TYPE "...)
	buf = append(buf, def.name...)
	if def.typ == dto.MetricType_COUNTER {
		return append(buf, " counter\n"...)
	}
	return append(buf, " gauge\n"...)
}

// appendLine appends the series of metric m, called name, of row r.
func appendLine(buf []byte, name string, r *listenerRow, m int) []byte {
	buf = append(buf, name...)
	buf = r.labels.appendText(buf)
	buf = append(buf, ' ')
	buf = appendFloat(buf, r.values[m])
	return append(buf, '\n')
}

// chunk is how much writeListenerFamily builds before writing.
const chunk = 32 << 10

// helpEscaper is the text format's escaping of HELP: backslash and newline
// (label values also escape the double quote, appendEscaped).
var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

// appendFloat formats a sample value as the text format does.
func appendFloat(b []byte, f float64) []byte {
	switch {
	case f == 0: // and -0, which expfmt writes as 0
		return append(b, '0')
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, +1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	case f == math.Trunc(f) && math.Abs(f) < 1e6:
		// Queue lengths and limits: 'g' writes integers below 1e6 in
		// plain digits, and AppendInt is several times faster.
		return strconv.AppendInt(b, int64(f), 10)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// labelPrefixes are what comes before each label value in the text
// format: the brace or the comma, the name and the opening quote. The names
// are the listener label names, all valid legacy names, which the format
// writes unquoted.
var labelPrefixes = func() [numListenerLabels]string {
	var p [numListenerLabels]string
	for i, name := range listenerLabelNames {
		sep := `",`
		if i == 0 {
			sep = "{"
		}
		p[i] = sep + *name + `="`
	}
	return p
}()

// appendText appends the labels as the text format writes them after the
// metric name, braces included. They are rendered on every use rather than
// kept: kept, the text was nearly half of what a scrape of a big node
// holds between scrapes, and a gzipped scrape renders only the rows of the
// segments that changed.
func (ls *labelSet) appendText(b []byte) []byte {
	for i := range numListenerLabels {
		b = append(b, labelPrefixes[i]...)
		if ls.escape&(1<<i) == 0 {
			b = ls.appendValue(b, i)
		} else {
			b = appendEscaped(b, ls.value(i))
		}
	}
	return append(b, `"}`...)
}

// needsEscape is the text format's escaping of label values: backslash,
// newline and the double quote.
func needsEscape(v string) bool { return strings.ContainsAny(v, "\\\n\"") }

// appendEscaped appends v with the escaping of a label value.
func appendEscaped(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '\n':
			b = append(b, `\n`...)
		case '"':
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}
