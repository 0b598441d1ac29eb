package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"
	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/internal/testbin"
	"github.com/listenq/listenq_exporter/internal/testns"
	"github.com/listenq/listenq_exporter/internal/testpods"
)

// The exporter pod's own identity, as Kubernetes service discovery would
// attach it to the scrape target.
var exporterPodLabels = map[string]string{
	"namespace": "monitoring",
	"pod":       "listenq-exporter-x7k2p",
	"container": "listenq-exporter",
}

// TestPodAlertsAndScrapeRelabelling: a real CRI pod's listener overflows;
// in a real Prometheus, with the shipped rules, the per-listener alerts fire
// naming its namespace, pod and container, and every dashboard query with
// that pod selected returns data. The target carries the exporter pod's
// own namespace/pod/container labels, as Kubernetes discovery attaches
// them: with the shipped scrape config the node's series stay without
// them, while a naive job (the same target, as a generic pods job scrapes
// it) stamps the node's series with the exporter's pod and renames the
// pods' own labels to exported_*.
func TestPodAlertsAndScrapeRelabelling(t *testing.T) {
	testns.Require(t)
	promBin := testbin.RequireTool(t, "prometheus", "prometheus")
	c := testpods.StartContainerd(t)
	app := testpods.App{TCP: "127.0.0.1:8080", TCPBacklog: 4, Unix: "/tmp/app.sock", UnixBacklog: 2}
	pod := c.RunPod(t, "team-a", "web-1", testpods.Container{Name: "app", Command: app.Command()})

	addr := "127.0.0.1:" + testbin.FreePort(t)
	exp := testbin.Start(t, testbin.Exporter(t),
		"--web.listen-address="+addr,
		"--runtime.endpoint=unix://"+c.Socket,
		"--netns.refresh-interval=1s",
		"--owner.min-scan-interval=0s",
		"--sampler.interval=50ms",
		"--collector.tcp.syn-queue",
		"--collector.tcp.syn-queue.interval=1s",
		// The pod and the exporter's own namespace (which stands for the
		// node's here); the machine's other namespaces are not the test's.
		"--netns.pod-include=web-1",
	)
	dir := testbin.ShortTempDir(t)
	shipped := loadRules(t, "../../alerts/listenq.rules.yml")
	rulesPath := filepath.Join(dir, "rules.yml")
	writeFile(t, rulesPath, testRules(t, shipped, true))
	prom := startPrometheusJobs(t, promBin, dir, rulesPath, scrapeJobs(t, addr))
	procs := []*testbin.Proc{exp, prom.proc}
	api := prom.api

	stop := overflowInPod(t, pod.NetnsPath, netip.MustParseAddrPort(app.TCP), 150*time.Second)
	defer stop()

	ids := map[string]string{"namespace": "team-a", "pod": "web-1", "container": "app", "listener": app.TCP}
	testbin.WaitFor(t, 90*time.Second, "the per-listener alerts to fire for the pod", procs, func() (bool, string) {
		alerts, err := api.alerts()
		if err != nil {
			return false, err.Error()
		}
		var missing []string
		for _, name := range []string{dropAlert, fullAlert} {
			a, ok := findAlert(alerts, name, app.TCP, "firing")
			if !ok || a.Labels["job"] != "listenq" {
				missing = append(missing, name)
				continue
			}
			for k, v := range ids {
				if a.Labels[k] != v {
					t.Fatalf("%s fired with %s=%q, want %q: %v", name, k, a.Labels[k], v, a.Labels)
				}
			}
			if text := a.Annotations["summary"] + a.Annotations["description"]; !strings.Contains(text, "team-a/web-1") {
				t.Errorf("%s annotations do not name the pod: %v", name, a.Annotations)
			}
		}
		return len(missing) == 0, fmt.Sprintf("not firing yet: %v; alerts: %s", missing, summarize(alerts))
	})

	// The node's own series (here the exporter's own namespace's) keep no
	// pod labels with the shipped job, and the exporter's identity stays
	// readable under exporter_*.
	checkSeries(t, api, `listenq_somaxconn{job="listenq",pod=""}`, map[string]string{
		"namespace": "", "pod": "", "container": "",
		"exporter_namespace": "monitoring", "exporter_pod": "listenq-exporter-x7k2p", "node": "node-1",
	})
	checkSeries(t, api, `listenq_queue_limit{job="listenq",listener="`+addr+`"}`, map[string]string{"namespace": "", "pod": "", "container": ""})
	checkSeries(t, api, `listenq_somaxconn{job="listenq",pod="web-1"}`, map[string]string{"namespace": "team-a", "exporter_pod": "listenq-exporter-x7k2p"})
	// Without the shipped job, the trap it avoids: the node's series get the
	// exporter's pod, and the pod's own labels are pushed aside.
	checkSeries(t, api, `listenq_somaxconn{job="naive",exported_pod=""}`, map[string]string{"namespace": "monitoring", "pod": "listenq-exporter-x7k2p"})
	checkSeries(t, api, `listenq_somaxconn{job="naive",exported_pod="web-1"}`, map[string]string{"pod": "listenq-exporter-x7k2p", "exported_namespace": "team-a"})
	// honor_labels alone is not enough either: series without a container
	// label (per-namespace ones) still get the exporter's.
	checkSeries(t, api, `listenq_somaxconn{job="listenq",pod="web-1"}`, map[string]string{"container": ""})

	checkDashboard(t, api, "../../dashboards/listenq.json", map[string]string{
		"job":       "listenq",
		"instance":  addr,
		"namespace": "team-a",
		"pod":       "web-1",
		"listener":  app.TCP,
	}, map[string]string{
		"SYN-flood signs":   "shows only namespaces with SYN-flood signs (> 0); there is no flood here",
		"Listeners omitted": "shows only what is omitted (> 0); nothing is here",
	})
}

// scrapeJobs is the shipped job of deploy/prometheus/scrape-config.yml,
// with its Kubernetes discovery replaced by a static target carrying the
// labels that discovery would give the exporter pod, plus a naive job that
// attaches the exporter pod's labels without the shipped relabelling.
func scrapeJobs(t *testing.T, target string) string {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/prometheus/scrape-config.yml")
	if err != nil {
		t.Fatal(err)
	}
	var shipped struct {
		ScrapeConfigs []yaml.MapSlice `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(raw, &shipped); err != nil || len(shipped.ScrapeConfigs) != 1 {
		t.Fatalf("deploy/prometheus/scrape-config.yml: want one job: %v", err)
	}
	discovered := map[string]string{
		"__meta_kubernetes_namespace":                        exporterPodLabels["namespace"],
		"__meta_kubernetes_pod_name":                         exporterPodLabels["pod"],
		"__meta_kubernetes_pod_label_app_kubernetes_io_name": "listenq-exporter",
		"__meta_kubernetes_pod_container_port_name":          "metrics",
		"__meta_kubernetes_pod_node_name":                    "node-1",
	}
	for k, v := range exporterPodLabels {
		discovered[k] = v
	}
	static := []map[string]any{{"targets": []string{target}, "labels": discovered}}
	job := shipped.ScrapeConfigs[0]
	var out yaml.MapSlice
	for _, kv := range job {
		switch kv.Key {
		case "job_name":
			out = append(out, yaml.MapItem{Key: "job_name", Value: "listenq"})
		case "kubernetes_sd_configs":
			out = append(out, yaml.MapItem{Key: "static_configs", Value: static})
		default:
			out = append(out, kv)
		}
	}
	naive := yaml.MapSlice{
		{Key: "job_name", Value: "naive"},
		{Key: "static_configs", Value: []map[string]any{{"targets": []string{target}, "labels": exporterPodLabels}}},
	}
	b, err := yaml.Marshal([]yaml.MapSlice{out, naive})
	if err != nil {
		t.Fatal(err)
	}
	return "\n" + indent(string(b), "  ")
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// checkSeries waits for q to return exactly one series, and checks its
// labels ("" means the label is absent).
func checkSeries(t *testing.T, api promAPI, q string, want map[string]string) {
	t.Helper()
	var res []sample
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		res, err = api.query(q)
		if err == nil && len(res) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: want one series, got %v (err %v)", q, res, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for k, v := range want {
		if got := res[0].metric[k]; got != v {
			t.Errorf("%s: label %s=%q, want %q (series %v)", q, k, got, v, res[0].metric)
		}
	}
}

// overflowInPod keeps the pod's TCP listener overflowing: from inside the
// pod's network namespace, over its loopback, it opens a few clients every
// 250ms (never accepted, so their SYNs are dropped) and closes those older
// than 3s. It stops by itself after maxDuration, or when stop is called.
func overflowInPod(t *testing.T, netnsPath string, addr netip.AddrPort, maxDuration time.Duration) (stop func()) {
	ns := &testns.Netns{Path: netnsPath}
	type client struct {
		fd   int
		born time.Time
	}
	var clients []client
	end := time.Now().Add(maxDuration)
	done := make(chan struct{})
	finished := make(chan struct{})
	sa := &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
	go func() {
		defer close(finished)
		defer func() {
			for _, c := range clients {
				unix.Close(c.fd)
			}
		}()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for time.Now().Before(end) {
			ns.Do(t, func() {
				for range 5 {
					fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
					if err != nil {
						return
					}
					_ = unix.Connect(fd, sa)
					clients = append(clients, client{fd, time.Now()})
				}
			})
			for len(clients) > 0 && time.Since(clients[0].born) > 3*time.Second {
				unix.Close(clients[0].fd)
				clients = clients[1:]
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}
