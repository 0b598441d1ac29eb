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
	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/owner"
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
	e, err := New(Selection{}, Deps{
		Logger: discardLogger(), Namespaces: netns.Static{},
		Listeners: NewListenerExporter(ListenerFilters{MaxListeners: 1}, owner.NewResolver(t.TempDir(), 0)),
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.Snapshot(newReg("first"), newReg("second"))
	if err == nil || !strings.Contains(err.Error(), "listenq_same") {
		t.Errorf("merge of a clash: error %v, want one naming listenq_same", err)
	}
	if mfs := s.Families(); len(mfs) != 1 || mfs[0].GetHelp() != "first" {
		t.Errorf("merge kept %d families (%v), want the first one", len(mfs), mfs)
	}
	if _, err := e.Snapshot(newReg("only")); err != nil {
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

// TestUnixDiagMissingIsUnsupported: on a kernel without unix_diag (the
// dump fails with ENOENT) the unix collector is left out, success metric
// included, and no namespace counts as failed; the others go on.
func TestUnixDiagMissingIsUnsupported(t *testing.T) {
	dial := func() (*sockdiag.Conn, error) {
		return sockdiag.NewConn(nltest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) {
			if reqs[0].Data[0] == sockdiag.FamilyUnix {
				return nil, unix.ENOENT
			}
			return inetDumpReply(t, reqs[0], fakeInet(reqs[0], fakeListeners))
		})), nil
	}
	got := gather(t, newFakeRegistry(t, fixture(t, fixtureNetstat), dial, nil, "tcp", "unix"))
	if s := find(got, "listenq_scrape_collector_success", map[string]string{"collector": "unix"}); len(s) != 0 {
		t.Errorf("unix collector success exported on a kernel without unix_diag: %v", s)
	}
	if v := one(t, got, "listenq_scrape_collector_success", map[string]string{"collector": "tcp"}).value; v != 1 {
		t.Errorf("tcp success = %v, want 1", v)
	}
	if v := one(t, got, "listenq_netns_scrape_success", map[string]string{"netns": ""}).value; v != 1 {
		t.Errorf("netns success = %v, want 1: a kernel without unix_diag is no namespace failure", v)
	}
}

// TestEmptyNetstatIsAFailure: an empty /proc/net/netstat is no success.
func TestEmptyNetstatIsAFailure(t *testing.T) {
	got := gather(t, newFakeRegistry(t, fixture(t, ""), fakeDial(t), nil, "netstat"))
	if v := one(t, got, "listenq_scrape_collector_success", map[string]string{"collector": "netstat"}).value; v != 0 {
		t.Errorf("netstat success with an empty file = %v, want 0", v)
	}
}
