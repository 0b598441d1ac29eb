package main

import (
	"bytes"
	"errors"
	"fmt"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// expectation is what a scrape must show before it is timed: every
// namespace the benchmark built, with all its listeners and their queues,
// and nothing failing or pending.
type expectation struct {
	netns       map[string]int // netns label -> namespace index
	tcp, unix   int            // listeners per namespace
	port        int            // first TCP port in each namespace
	tcpQueue    float64        // queue length of the first TCP listener
	unixQueue   float64        // and of the first unix listener
	dir         string         // of the unix sockets
	metricsPort int            // the exporter's own listener, in the host's namespace
}

// scrapeSummary is what verify counted.
type scrapeSummary struct {
	namespaces int // netns label values with listeners, the host's included
	listeners  int // in the benchmark's namespaces
	series     int
}

func labels(m *dto.Metric) map[string]string {
	l := make(map[string]string, len(m.GetLabel()))
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// verify checks a scrape body against x; nil when it shows everything.
func (x expectation) verify(body []byte) (scrapeSummary, error) {
	var sum scrapeSummary
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return sum, fmt.Errorf("parse scrape: %w", err)
	}
	for _, f := range fams {
		sum.series += len(f.GetMetric())
	}
	var errs []error
	bad := func(format string, a ...any) {
		if len(errs) < 5 {
			errs = append(errs, fmt.Errorf(format, a...))
		}
	}
	// Listeners per netns label and protocol.
	type key struct{ netns, proto string }
	count := map[key]int{}
	hostOwn := false
	for _, m := range fams["listenq_queue_limit"].GetMetric() {
		l := labels(m)
		ns := l["netns"]
		if _, ok := x.netns[ns]; !ok && ns != "" {
			bad("listeners in netns %q, which the benchmark did not build (does the exporter see namespaces outside the benchmark?)", ns)
			continue
		}
		count[key{ns, l["proto"]}]++
		if ns == "" && l["listener"] == fmt.Sprintf("127.0.0.1:%d", x.metricsPort) {
			hostOwn = true
		}
		if ns != "" && l["process"] == "" {
			bad("netns %s: listener %s has no process label", ns, l["listener"])
		}
	}
	if !hostOwn {
		bad("the host's namespace (netns=\"\") does not show the exporter's own listener 127.0.0.1:%d", x.metricsPort)
	}
	seen := map[string]bool{"": hostOwn}
	for ns := range x.netns {
		t, u := count[key{ns, "tcp"}], count[key{ns, "unix"}]
		if t != x.tcp || u != x.unix {
			bad("netns %s: %d TCP and %d unix listeners, want %d and %d", ns, t, u, x.tcp, x.unix)
		}
		sum.listeners += t + u
		if t+u > 0 {
			seen[ns] = true
		}
	}
	sum.namespaces = len(seen)
	// The queues the holders filled, so a namespace read through the wrong
	// handle would show.
	for _, m := range fams["listenq_queue_length"].GetMetric() {
		l := labels(m)
		i, ok := x.netns[l["netns"]]
		if !ok {
			continue
		}
		want := -1.0
		switch l["listener"] {
		case fmt.Sprintf("127.0.0.1:%d", x.port):
			want = x.tcpQueue
		case unixPath(x.dir, i, 0):
			want = x.unixQueue
		}
		if want >= 0 && value(m) != want {
			bad("netns %s: listener %s queue length %v, want %v", l["netns"], l["listener"], value(m), want)
		}
	}
	wantState := map[string]float64{"read": float64(len(x.netns) + 1), "pending": 0, "failed": 0, "denied": 0, "filtered": 0}
	states := fams["listenq_netns_discovered"].GetMetric()
	if len(states) == 0 {
		bad("no listenq_netns_discovered: is --netns.discovery on?")
	}
	for _, m := range states {
		st := labels(m)["state"]
		if want, ok := wantState[st]; ok && value(m) != want {
			bad("listenq_netns_discovered{state=%q} is %v, want %v", st, value(m), want)
		}
	}
	for _, name := range []string{"listenq_scrape_collector_success", "listenq_netns_scrape_success"} {
		for _, m := range fams[name].GetMetric() {
			if value(m) != 1 {
				bad("%s%v is %v", name, labels(m), value(m))
			}
		}
	}
	for _, m := range fams["listenq_listeners_omitted"].GetMetric() {
		if value(m) != 0 {
			bad("listenq_listeners_omitted%v is %v", labels(m), value(m))
		}
	}
	return sum, errors.Join(errs...)
}
