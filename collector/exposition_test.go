package collector

import (
	"bytes"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/owner"
)

// textFormats are the text formats promhttp negotiates: 0.0.4 with each
// escaping scheme a scraper may ask for.
var textFormats = []expfmt.Format{
	expfmt.FmtText,
	expfmt.FmtText + "; escaping=underscores",
	expfmt.FmtText + "; escaping=allow-utf-8",
	expfmt.FmtText + "; escaping=values",
	expfmt.FmtText + "; escaping=dots",
}

// TestTextMatchesExpfmt holds the text fast path to client_golang's encoder:
// the same snapshot, written by WriteText and by expfmt from Families, must
// give the same bytes, over random label values and sample values.
func TestTextMatchesExpfmt(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		s := randomSnapshot(rng, 1+rng.IntN(40))
		for _, format := range textFormats {
			var got bytes.Buffer
			if err := s.WriteText(&got, format); err != nil {
				t.Fatalf("round %d, %s: %v", round, format, err)
			}
			want := expfmtText(t, s.Families(), format)
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("round %d, %s: WriteText differs from expfmt\n%s", round, format, firstDiff(got.Bytes(), want))
			}
		}
	}
}

func TestWriteTextRejectsOtherFormats(t *testing.T) {
	s := randomSnapshot(rand.New(rand.NewPCG(3, 4)), 3)
	for _, f := range []expfmt.Format{expfmt.NewFormat(expfmt.TypeProtoDelim), expfmt.NewFormat(expfmt.TypeOpenMetrics)} {
		if err := s.WriteText(&bytes.Buffer{}, f); err == nil {
			t.Errorf("WriteText(%s) gave no error", f)
		}
	}
}

// TestListenerNameClashDropsTheListenerFamily: a family of another source
// with a listener metric's name wins in both encodings, and it is an error.
func TestListenerNameClashDropsTheListenerFamily(t *testing.T) {
	s := randomSnapshot(rand.New(rand.NewPCG(5, 6)), 5)
	s.families = append(s.families, gaugeFamily(listenerMetrics[mQueueLength].name, "clash", 7))
	slices.SortFunc(s.families, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	s.order = nil
	if err := s.orderListeners(); err == nil || !strings.Contains(err.Error(), "listenq_queue_length") {
		t.Fatalf("orderListeners error = %v, want the clash named", err)
	}
	var got bytes.Buffer
	if err := s.WriteText(&got, textFormats[0]); err != nil {
		t.Fatal(err)
	}
	if want := expfmtText(t, s.Families(), textFormats[0]); !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("with a clash, WriteText differs from expfmt\n%s", firstDiff(got.Bytes(), want))
	}
	if n := strings.Count(got.String(), "# TYPE listenq_queue_length "); n != 1 {
		t.Errorf("listenq_queue_length typed %d times", n)
	}
	if !strings.Contains(got.String(), "# HELP listenq_queue_length clash\n") {
		t.Error("the other source's family was not the one kept")
	}
}

func expfmtText(t *testing.T, mfs []*dto.MetricFamily, format expfmt.Format) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatalf("expfmt: %v", err)
		}
	}
	return b.Bytes()
}

func firstDiff(a, b []byte) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	from := max(0, i-120)
	return "fast:   " + strings.ReplaceAll(string(a[from:min(len(a), i+120)]), "\n", "⏎") +
		"\nexpfmt: " + strings.ReplaceAll(string(b[from:min(len(b), i+120)]), "\n", "⏎")
}

// randomSnapshot builds a snapshot of n listeners with random labels and
// values, around a few ordinary families whose names sort before, between
// and after the listener metrics.
func randomSnapshot(rng *rand.Rand, n int) *Snapshot {
	fams := &listenerFamilies{}
	for range n {
		var values [numListenerLabels]string
		for i := range values {
			values[i] = randomLabelValue(rng)
		}
		values[inodeIndex] = strconv.FormatUint(rng.Uint64()>>rng.IntN(64), 10)
		r := listenerRow{labels: labelSetOf(values)}
		for m := range numListenerMetrics {
			if m <= mQueueLimit || rng.IntN(3) > 0 {
				r.set(m, randomValue(rng))
			}
		}
		fams.add([]listenerRow{r})
	}
	s := &Snapshot{rows: fams.sorted(&orderCache{}), families: ordinaryFamilies(rng)}
	if err := s.orderListeners(); err != nil {
		panic(err)
	}
	return s
}

// ordinaryFamilies are families of other collectors that sort before,
// between and after the listener families, with values drawn from rng.
func ordinaryFamilies(rng *rand.Rand) []*dto.MetricFamily {
	return []*dto.MetricFamily{
		gaugeFamily("go_goroutines", "Number of goroutines.", float64(rng.IntN(20))),
		gaugeFamily("listenq_netns_info", "A \\ help with\nnewline.", 1),
		gaugeFamily("listenq_queue_lengths_other", "Sorts after listenq_queue_length.", math.Inf(1)),
		gaugeFamily("listenq_sysctl_somaxconn", "Sorts between.", randomValue(rng)),
		gaugeFamily("process_open_fds", "Sorts last.", float64(rng.IntN(100))),
	}
}

func gaugeFamily(name, help string, v float64) *dto.MetricFamily {
	return &dto.MetricFamily{
		Name: proto.String(name), Help: proto.String(help), Type: dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{
			Label: []*dto.LabelPair{{Name: proto.String("a"), Value: proto.String("x\"y")}},
			Gauge: &dto.Gauge{Value: proto.Float64(v)},
		}},
	}
}

// randomLabelValue mixes what socket and process names bring: quotes,
// backslashes, newlines, the \xNN escapes of unix names, multi-byte and
// invalid UTF-8, and the empty string.
func randomLabelValue(rng *rand.Rand) string {
	pieces := []string{"", "a", "Z", "0", `"`, `\`, "\n", `\x00`, `\x0a`, "@", "/run/php/php-fpm.sock",
		"é", "日本", "\xff", "\xc3", "\x00", " ", "{", "}", ",", "=", "\t", "\u2028", "[::1]:80"}
	var sb strings.Builder
	for range rng.IntN(6) {
		sb.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return sb.String()
}

func randomValue(rng *rand.Rand) float64 {
	specials := []float64{0, math.Copysign(0, -1), 1, -1, 4096, 999999, 1e6, -999999, -1e6, 1e21, 65535.5, 123456789012, 0.1, 1.5e-7,
		math.NaN(), math.Inf(1), math.Inf(-1), math.MaxFloat64, math.SmallestNonzeroFloat64}
	if rng.IntN(2) == 0 {
		return specials[rng.IntN(len(specials))]
	}
	switch rng.IntN(4) {
	case 0:
		return float64(rng.Uint32())
	case 3:
		return float64(rng.IntN(4_000_000) - 2_000_000)
	case 1:
		return rng.Float64() * 1e6
	}
	return rng.NormFloat64()
}

// realisticSnapshot is n listeners labelled as a pod's unix and TCP
// listeners are, with every metric set.
func realisticSnapshot(n int) *Snapshot {
	fams := &listenerFamilies{}
	for i := range n {
		values := [numListenerLabels]string{"php-fpm", strconv.Itoa(4000000 + i), "/run/php/php8.2-fpm-" + strconv.Itoa(i) + ".sock",
			"shop", "4026532" + strconv.Itoa(i%200), "shop-frontend-7d9c5b-" + strconv.Itoa(i%200), "", "php-fpm8.2", "unix"}
		r := listenerRow{labels: labelSetOf(values)}
		for m := range numListenerMetrics - 1 {
			r.set(m, float64(i%512))
		}
		fams.add([]listenerRow{r})
	}
	s := &Snapshot{rows: fams.sorted(&orderCache{})}
	if err := s.orderListeners(); err != nil {
		panic(err)
	}
	return s
}

// BenchmarkWriteText and BenchmarkExpfmtText encode one snapshot of 25,000
// listeners in the text format, by the fast path and by building families
// for client_golang's encoder, as the scrape did before.
func BenchmarkWriteText(b *testing.B) {
	s := realisticSnapshot(25000)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.WriteText(io.Discard, expfmt.FmtText); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExpfmtText(b *testing.B) {
	s := realisticSnapshot(25000)
	b.ReportAllocs()
	for b.Loop() {
		enc := expfmt.NewEncoder(io.Discard, expfmt.FmtText)
		for _, mf := range s.Families() {
			if err := enc.Encode(mf); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// labelSetOf builds a label set from its values, in the order of
// listenerLabelNames; the inode's must be a number, as the kernel's are.
func labelSetOf(values [numListenerLabels]string) *labelSet {
	ino, err := strconv.ParseUint(values[inodeIndex], 10, 64)
	if err != nil {
		panic("labelSetOf: the inode label must be a number: " + err.Error())
	}
	return finishLabelSet(&labelSet{ns: &listenerNS{namespace: values[3], netns: values[4], pod: values[5]}, inode: ino,
		container: values[0], listener: values[2], port: values[6], process: values[7], proto: values[8]})
}

// TestSameLabelsSeesEveryLabel: a cached label set is reused only while
// every label but the inode (the cache key) is the same.
func TestSameLabelsSeesEveryLabel(t *testing.T) {
	newNS := func() *netns.Handle {
		h := netns.NewFixed("4026531840", "", "", nil)
		h.Identity.Namespace, h.Identity.Pod = "shop", "web-0"
		return h
	}
	src := &source{ns: newNS()}
	l := exported{Listener: &Listener{Inode: 7, Address: "127.0.0.1:80", Port: "80", Proto: "tcp"}, owner: &owner.Owner{Comm: "nginx", Container: "web"}}
	ls := newLabelSet(src.nsLabelSet(), l)
	src.ns = newNS() // the same labels: the set stays good
	if !sameLabels(ls, src.nsLabelSet(), l) {
		t.Fatal("a label set differs from the listener it was made of")
	}
	for name, change := range map[string]func(*exported, *netns.Handle){
		"container": func(e *exported, _ *netns.Handle) { e.owner = &owner.Owner{Comm: e.owner.Comm, Container: "sidecar"} },
		"listener":  func(e *exported, _ *netns.Handle) { e.Address = "127.0.0.1:81" },
		"namespace": func(_ *exported, h *netns.Handle) { h.Identity.Namespace = "other" },
		"netns":     func(_ *exported, h *netns.Handle) { h.ID = "1" },
		"pod":       func(_ *exported, h *netns.Handle) { h.Identity.Pod = "web-1" },
		"port":      func(e *exported, _ *netns.Handle) { e.Port = "81" },
		"process": func(e *exported, _ *netns.Handle) {
			e.owner = &owner.Owner{Comm: "httpd", Container: e.owner.Container}
		},
		"proto": func(e *exported, _ *netns.Handle) { e.Proto = "unix" },
	} {
		e, h := l, newNS()
		listener := *l.Listener
		e.Listener = &listener
		change(&e, h)
		src.ns, src.nsl = h, ls.ns // as the set was made
		if sameLabels(ls, src.nsLabelSet(), e) {
			t.Errorf("a change of %s went unseen", name)
		}
	}
}

// TestOrderCacheSortsLikeAFullSort: rows come in any order, listeners come
// and go, now and then one comes twice; the remembered order must always
// be the sorted one.
func TestOrderCacheSortsLikeAFullSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	var pool []*labelSet
	for i := range 50 {
		pool = append(pool, labelSetOf([numListenerLabels]string{strconv.Itoa(rng.IntN(3)), strconv.Itoa(rng.IntN(1000)*100 + i)}))
	}
	var c orderCache
	live := pool[:30]
	for round := range 300 {
		switch rng.IntN(4) {
		case 0: // one listener replaced by another: same count
			live = slices.Clone(live)
			live[rng.IntN(len(live))] = pool[30+rng.IntN(20)]
			live = slices.CompactFunc(sortedSets(live), func(a, b *labelSet) bool { return a == b })
		case 1: // one more, or one fewer
			if rng.IntN(2) == 0 && len(live) > 1 {
				live = live[1:]
			} else {
				live = slices.CompactFunc(sortedSets(append(slices.Clone(live), pool[rng.IntN(len(pool))])), func(a, b *labelSet) bool { return a == b })
			}
		}
		rows := make([]listenerRow, len(live))
		for i, ls := range live {
			rows[i] = listenerRow{labels: ls}
		}
		if round%7 == 0 && len(rows) > 1 {
			// A label set twice, in place of another: same count, and
			// two rows with one remembered place.
			rows[0].labels = rows[1].labels
		}
		rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
		c.sort(rows)
		if !slices.IsSortedFunc(rows, func(a, b listenerRow) int { return compareLabelSets(a.labels, b.labels) }) {
			t.Fatalf("round %d: rows out of order", round)
		}
	}
	if c.sorts > 200 {
		t.Errorf("%d full sorts in 300 rounds, half of them unchanged", c.sorts)
	}
}

func sortedSets(sets []*labelSet) []*labelSet {
	slices.SortFunc(sets, compareLabelSets)
	return sets
}
