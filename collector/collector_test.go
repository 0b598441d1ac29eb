package collector

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

// TestMergeClashIsAnError: two sources exporting one family name would
// make an invalid exposition; the second is dropped and the clash reported.
func TestMergeClashIsAnError(t *testing.T) {
	newReg := func(help string) prometheus.Gatherer {
		reg := prometheus.NewRegistry()
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "listenq_same", Help: help})
		reg.MustRegister(g)
		return reg
	}
	mfs, err := Merge(newReg("first"), newReg("second")).Gather()
	if err == nil || !strings.Contains(err.Error(), "listenq_same") {
		t.Errorf("merge of a clash: error %v, want one naming listenq_same", err)
	}
	if len(mfs) != 1 || mfs[0].GetHelp() != "first" {
		t.Errorf("merge kept %d families (%v), want the first one", len(mfs), mfs)
	}
	if _, err := Merge(newReg("only")).Gather(); err != nil {
		t.Errorf("merge without a clash: %v", err)
	}
}

// TestSamplerHealthMetrics: a sampler whose reads fail is visible: its
// rounds rise, its errors are counted per namespace and protocol, and its
// last success stays where it was.
func TestSamplerHealthMetrics(t *testing.T) {
	s := NewSampler(time.Hour, time.Minute, 0, discardLogger())
	failing := false
	dial := func() (*sockdiag.Conn, error) {
		return sockdiag.NewConn(nltest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) {
			if failing {
				return nil, errors.New("netlink: permission denied")
			}
			return unixDumpReply(t, reqs[0], fakeUnixListeners, nil)
		})), nil
	}
	reg := newFakeRegistry(t, fixture(t, fixtureNetstat), dial, s, "unix")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Run(ctx) // one round
	got := gather(t, reg)
	if v := one(t, got, "listenq_sampler_rounds_total", nil).value; v != 1 {
		t.Errorf("rounds = %v, want 1", v)
	}
	if v := one(t, got, "listenq_sampler_errors_total", map[string]string{"proto": "unix", "netns": ""}).value; v != 0 {
		t.Errorf("errors after a good round = %v, want 0", v)
	}
	success := one(t, got, "listenq_sampler_last_success_timestamp_seconds", nil).value
	failing = true
	s.Run(ctx)
	s.Run(ctx)
	got = gather(t, reg)
	if v := one(t, got, "listenq_sampler_rounds_total", nil).value; v != 3 {
		t.Errorf("rounds = %v, want 3", v)
	}
	if v := one(t, got, "listenq_sampler_errors_total", map[string]string{"proto": "unix", "netns": ""}).value; v != 2 {
		t.Errorf("errors after two failed rounds = %v, want 2", v)
	}
	if v := one(t, got, "listenq_sampler_last_success_timestamp_seconds", nil).value; v != success {
		t.Errorf("last success moved to %v after failed rounds, want %v", v, success)
	}
}
