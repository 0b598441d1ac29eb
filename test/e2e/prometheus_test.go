// Package e2e runs the whole monitoring chain the way an operator deploys
// it: Debian's Prometheus server scrapes the exporter every second with the
// shipped alerting rules loaded, a real listener in a private network
// namespace is driven into overflow, and the test watches the alerts fire
// and resolve through Prometheus' HTTP API, and runs every query of the
// shipped Grafana dashboard against that Prometheus.
package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/listenq/listenq_exporter/internal/testbin"
	"github.com/listenq/listenq_exporter/internal/testns"
	"github.com/listenq/listenq_exporter/internal/testpods"
)

func TestMain(m *testing.M) {
	// The listening "server" is this test binary run again under another
	// name; see startServer.
	if spec := os.Getenv(envServer); spec != "" {
		os.Exit(runServer(spec))
	}
	os.Exit(testns.Main(testpods.Wrap(testbin.Wrap(m))))
}

const (
	// The alerts under test, as named in alerts/listenq.rules.yml.
	dropAlert = "ListenerDroppingConnections"
	fullAlert = "ListenQueueFull"

	// serverName is the command name of the process owning the listeners,
	// so the process label is known (at most 15 bytes, the kernel's limit).
	serverName = "lq-e2e-server"
	// A full TCP queue holds tcpBacklog+1 connections, a unix one
	// unixBacklog+1.
	tcpBacklog  = 4
	unixBacklog = 2

	// testFor replaces every alert's for: in the test copy of the rules.
	testFor = "5s"
	// shortWindow replaces the recording rules' [5m] after the alerts have
	// fired, so that they can resolve within the test's time; see
	// shortenWindows.
	shortWindow = "20s"

	// Bounds of the phases. ListenQueueFull needs more than 10% of a 5m
	// window (30 s) of full time plus for:, so it fires after ~40 s.
	fireTimeout      = 100 * time.Second
	loadMaxDuration  = 180 * time.Second
	drainTimeout     = 20 * time.Second
	resolveTimeout   = 90 * time.Second
	shippedResolveTO = 8 * time.Minute

	// envShippedWindows=1 keeps the shipped 5m windows to the end: the
	// alerts then resolve only once the overflow has left the 5m windows,
	// about 5 minutes after the drain (run with -timeout 15m).
	envShippedWindows = "LISTENQ_E2E_SHIPPED_WINDOWS"
)

// TestAlertsFireAndResolveInPrometheus drives a listener into overflow and
// waits for ListenerDroppingConnections and ListenQueueFull to fire in a
// real Prometheus with the right listener and process, runs the dashboard's
// queries while the load is on, then drains the queue and waits for both
// alerts to resolve.
func TestAlertsFireAndResolveInPrometheus(t *testing.T) {
	testns.Require(t)
	promBin := testbin.RequireTool(t, "prometheus", "prometheus")
	shippedWindows := os.Getenv(envShippedWindows) == "1"

	began := time.Now()
	phase := began
	logPhase := func(what string) {
		now := time.Now()
		t.Logf("phase %-40s %6.1fs (total %6.1fs)", what, now.Sub(phase).Seconds(), now.Sub(began).Seconds())
		phase = now
	}

	exporterBin := testbin.Exporter(t)
	logPhase("build exporter")

	dir := testbin.ShortTempDir(t)
	unixPath := dir + "/srv.sock"
	srv := startServer(t, dir, unixPath)
	tcpListener := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), srv.port)
	listener := tcpListener.String()
	port := strconv.Itoa(int(srv.port))

	exporterAddr := "127.0.0.1:" + testbin.FreePort(t)
	exp := testbin.Start(t, exporterBin,
		"--web.listen-address="+exporterAddr,
		"--sampler.interval=50ms",
		"--collector.tcp.syn-queue",
		// The test's private namespace is its world, labelled netns="".
		"--no-netns.discovery",
	)
	procs := []*testbin.Proc{srv.proc, exp}
	testbin.WaitFor(t, 20*time.Second, "the exporter to report the server's listeners", procs, func() (bool, string) {
		body, err := testbin.Get(httpClient, "http://"+exporterAddr+"/metrics")
		if err != nil {
			return false, err.Error()
		}
		for _, want := range []string{
			fmt.Sprintf(`listener=%q,namespace="",netns="",pod="",port=%q,process=%q,proto="tcp"`, listener, port, serverName),
			fmt.Sprintf(`listener=%q,namespace="",netns="",pod="",port="",process=%q,proto="unix"`, unixPath, serverName),
		} {
			if !strings.Contains(body, want) {
				return false, "no series with " + want
			}
		}
		return true, ""
	})
	logPhase("start server and exporter")

	shipped := loadRules(t, "../../alerts/listenq.rules.yml")
	for _, name := range []string{dropAlert, fullAlert} {
		if _, ok := shipped.alert(name); !ok {
			t.Fatalf("alerts/listenq.rules.yml has no alert %s", name)
		}
	}
	rulesPath := dir + "/rules.yml"
	writeFile(t, rulesPath, testRules(t, shipped, false))
	prom := startPrometheus(t, promBin, dir, rulesPath, exporterAddr)
	procs = append(procs, prom.proc)
	api := prom.api
	testbin.WaitFor(t, 30*time.Second, "Prometheus to scrape the server's listener", procs, func() (bool, string) {
		q := fmt.Sprintf(`listenq_queue_limit{job="listenq",instance=%q,listener=%q,port=%q,process=%q} == %d`,
			exporterAddr, listener, port, serverName, tcpBacklog)
		v, err := api.query(q)
		if err != nil {
			return false, err.Error()
		}
		return len(v) == 1, fmt.Sprintf("%s returned %d series", q, len(v))
	})
	logPhase("start Prometheus, first scrapes")

	// --- overflow --------------------------------------------------------
	load := startLoad(t, tcpListener, unixPath, loadMaxDuration)
	loadStart := time.Now()
	firedAt := map[string]time.Duration{}
	var firing map[string]promAlert
	testbin.WaitFor(t, fireTimeout, dropAlert+" and "+fullAlert+" to fire for "+listener, procs, func() (bool, string) {
		if err := load.error(); err != nil {
			t.Fatalf("load: %v", err)
		}
		alerts, err := api.alerts()
		if err != nil {
			return false, err.Error()
		}
		firing = map[string]promAlert{}
		var missing []string
		for _, name := range []string{dropAlert, fullAlert} {
			if a, ok := findAlert(alerts, name, listener, "firing"); ok {
				firing[name] = a
				if _, seen := firedAt[name]; !seen {
					firedAt[name] = time.Since(loadStart)
				}
			} else {
				missing = append(missing, name)
			}
		}
		return len(missing) == 0, fmt.Sprintf("not firing yet: %v; alerts: %s", missing, summarize(alerts))
	})
	logPhase("overflow until both alerts fire")
	for _, name := range []string{dropAlert, fullAlert} {
		t.Logf("%s firing %.1fs after the load started", name, firedAt[name].Seconds())
		rule, _ := shipped.alert(name)
		checkAlert(t, firing[name], rule, map[string]string{
			"listener": listener,
			"port":     port,
			"process":  serverName,
			"proto":    "tcp",
			"job":      "listenq",
			"instance": exporterAddr,
		})
	}
	if all, err := api.alerts(); err == nil {
		t.Logf("alerts under load: %s", summarize(all))
	}

	// --- dashboard, while the load is on --------------------------------
	checkDashboard(t, api, "../../dashboards/listenq.json", map[string]string{
		"job":       "listenq",
		"instance":  exporterAddr,
		"namespace": ".*",
		"pod":       ".*",
		"listener":  listener,
	}, map[string]string{
		"Network namespaces discovered": "discovery is off here; TestPodAlertsAndScrapeRelabelling checks it",
		"SYN-flood signs":               "shows only namespaces with SYN-flood signs (> 0); there is no flood here",
		"Listeners omitted":             "shows only what is omitted (> 0); nothing is here",
		"Container runtime API":         "no runtime here; TestPodAlertsAndScrapeRelabelling checks it",
	})
	logPhase("dashboard queries")

	// --- shorter windows for the resolution ----------------------------
	if !shippedWindows {
		shortenWindows(t, prom, rulesPath, shipped, procs, listener)
		logPhase("reload with " + shortWindow + " recording windows")
	}

	// --- stop the load and drain ----------------------------------------
	load.stop()
	if err := load.error(); err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Logf("load ran %.1fs: %s", time.Since(loadStart).Seconds(), load.stats())
	srv.drain(t)
	drainStart := time.Now()
	testbin.WaitFor(t, drainTimeout, "the queues to drain", procs, func() (bool, string) {
		q := fmt.Sprintf(`listenq_queue_length{job="listenq",process=%q}`, serverName)
		v, err := api.query(q)
		if err != nil {
			return false, err.Error()
		}
		if len(v) != 2 {
			return false, fmt.Sprintf("%s returned %d series, want the tcp and the unix listener", q, len(v))
		}
		for _, s := range v {
			if s.value != 0 {
				return false, fmt.Sprintf("%s: length %v", s.metric["listener"], s.value)
			}
		}
		return true, ""
	})
	logPhase("stop load, drain queues")

	timeout := resolveTimeout
	if shippedWindows {
		timeout = shippedResolveTO
	}
	testbin.WaitFor(t, timeout, dropAlert+" and "+fullAlert+" to resolve", procs, func() (bool, string) {
		alerts, err := api.alerts()
		if err != nil {
			return false, err.Error()
		}
		var left []string
		for _, l := range []string{listener, unixPath} {
			for _, name := range []string{dropAlert, fullAlert} {
				for _, state := range []string{"firing", "pending"} {
					if _, ok := findAlert(alerts, name, l, state); ok {
						left = append(left, fmt.Sprintf("%s{listener=%q} %s", name, l, state))
					}
				}
			}
		}
		return len(left) == 0, fmt.Sprintf("still active: %v", left)
	})
	t.Logf("both alerts resolved %.1fs after the queues drained", time.Since(drainStart).Seconds())
	logPhase("resolve")
}

// checkAlert compares a firing alert with its rule and the labels it must
// carry, and checks its annotations name the listener and the process.
func checkAlert(t *testing.T, a promAlert, r rule, want map[string]string) {
	t.Helper()
	name := a.Labels["alertname"]
	for k, v := range r.Labels {
		want[k] = v
	}
	for k, v := range want {
		if got := a.Labels[k]; got != v {
			t.Errorf("%s: label %s = %q, want %q (labels %v)", name, k, got, v, a.Labels)
		}
	}
	if _, ok := a.Labels["inode"]; ok {
		t.Errorf("%s carries an inode label; alerts are per listener: %v", name, a.Labels)
	}
	for _, k := range []string{"summary", "description"} {
		text := a.Annotations[k]
		for _, part := range []string{want["listener"], want["process"], want["instance"]} {
			if !strings.Contains(text, part) {
				t.Errorf("%s: annotation %s does not mention %q: %q", name, k, part, text)
			}
		}
	}
	if got, want := a.Annotations["runbook_url"], r.Annotations["runbook_url"]; got != want {
		t.Errorf("%s: runbook_url %q, want %q", name, got, want)
	}
	t.Logf("%s: %s", name, a.Annotations["summary"])
}
