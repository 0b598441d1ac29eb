package testbin

import (
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Series is one series of a scrape.
type Series struct {
	Labels map[string]string
	Value  float64
}

// Scrape is a text exposition, parsed, by metric name.
type Scrape struct{ Series map[string][]Series }

// ParseScrape parses a text exposition, failing the test if it does not
// parse.
func ParseScrape(t testing.TB, body string) *Scrape {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	s := &Scrape{Series: map[string][]Series{}}
	for name, mf := range fams {
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if h := m.GetHistogram(); h != nil {
				s.addHistogram(name, l, h)
				continue
			}
			s.Series[name] = append(s.Series[name], Series{l, value(m)})
		}
	}
	return s
}

// addHistogram files a histogram as the series the text format shows:
// name_bucket{le}, name_sum and name_count.
func (s *Scrape) addHistogram(name string, l map[string]string, h *dto.Histogram) {
	s.Series[name+"_sum"] = append(s.Series[name+"_sum"], Series{l, h.GetSampleSum()})
	s.Series[name+"_count"] = append(s.Series[name+"_count"], Series{l, float64(h.GetSampleCount())})
	for _, b := range h.GetBucket() {
		le := Labels(l, map[string]string{"le": strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)})
		s.Series[name+"_bucket"] = append(s.Series[name+"_bucket"], Series{le, float64(b.GetCumulativeCount())})
	}
	inf := Labels(l, map[string]string{"le": "+Inf"})
	s.Series[name+"_bucket"] = append(s.Series[name+"_bucket"], Series{inf, float64(h.GetSampleCount())})
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	}
	return m.GetUntyped().GetValue()
}

// Find returns the series of name that carry every label of want.
func (s *Scrape) Find(name string, want map[string]string) []Series {
	var out []Series
next:
	for _, x := range s.Series[name] {
		for k, v := range want {
			if x.Labels[k] != v {
				continue next
			}
		}
		out = append(out, x)
	}
	return out
}

// One returns the one series of name that carries want, failing the test
// if there is not exactly one.
func (s *Scrape) One(t testing.TB, name string, want map[string]string) Series {
	t.Helper()
	found := s.Find(name, want)
	if len(found) != 1 {
		t.Fatalf("%s%v: want one series, got %d: %v", name, want, len(found), found)
	}
	return found[0]
}

// Labels merges label sets, later ones winning.
func Labels(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
