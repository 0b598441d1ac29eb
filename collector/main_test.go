package collector

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/owner"
	"github.com/listenq/listenq_exporter/internal/testns"
)

func TestMain(m *testing.M) { os.Exit(testns.Main(m)) }

// newRealRegistry builds the collectors over the real kernel of the test's
// network namespace, with default flags plus args, and no sampler.
func newRealRegistry(t *testing.T, args ...string) prometheus.Gatherer {
	t.Helper()
	return newSampledRegistry(t, nil, args...)
}

// newSampledRegistry is newRealRegistry with a sampler (nil for none); the
// background work runs until the test ends.
func newSampledRegistry(t *testing.T, s *Sampler, args ...string) prometheus.Gatherer {
	t.Helper()
	app := kingpin.New("test", "")
	sel := AddFlags(app)
	ff := AddFilterFlags(app)
	if _, err := app.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	filters, err := ff.Compile()
	if err != nil {
		t.Fatal(err)
	}
	self, err := netns.Self("/proc", "")
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(sel, Deps{
		Logger:     discardLogger(),
		Namespaces: netns.Static{self},
		Listeners:  NewListenerExporter(filters, owner.NewResolver("/proc", 0)),
		Sampler:    s,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e.Start(ctx)
	return checked(e)
}

// checked gathers from g through prometheus.Gatherers, which checks every
// series (types, label names and values, duplicates) the way a registry
// does: production skips those checks for listener series, tests do not.
func checked(g prometheus.Gatherer) prometheus.Gatherer { return prometheus.Gatherers{g} }

// sample is one gathered series.
type sample struct {
	labels map[string]string
	value  float64
}

func gather(t *testing.T, reg prometheus.Gatherer) map[string][]sample {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string][]sample{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			out[mf.GetName()] = append(out[mf.GetName()], sample{labelMap(m), metricValue(m)})
		}
	}
	return out
}

func labelMap(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, lp := range m.GetLabel() {
		l[lp.GetName()] = lp.GetValue()
	}
	return l
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	}
	return m.GetUntyped().GetValue()
}

// find returns the series of metric name whose labels include want.
func find(got map[string][]sample, name string, want map[string]string) []sample {
	var out []sample
	for _, s := range got[name] {
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
				break
			}
		}
		if match {
			out = append(out, s)
		}
	}
	return out
}

// one returns the single series of name matching want, failing otherwise.
func one(t *testing.T, got map[string][]sample, name string, want map[string]string) sample {
	t.Helper()
	s := find(got, name, want)
	if len(s) != 1 {
		t.Fatalf("%s%v: want exactly one series, got %d: %v", name, want, len(s), s)
	}
	return s[0]
}

func inodeLabel(ino uint64) map[string]string {
	return map[string]string{"inode": strconv.FormatUint(ino, 10)}
}
