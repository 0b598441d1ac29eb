// Package pods tests the exporter against real pods: a containerd with its
// CRI plugin and a dockerd, started by the test in private network
// namespaces, running real containers whose listeners are full.
package pods

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/listenq/listenq_exporter/internal/testbin"
	"github.com/listenq/listenq_exporter/internal/testpods"
)

func TestMain(m *testing.M) { os.Exit(testpods.Wrap(testbin.Wrap(m)).Run()) }

// TestCRIPodsNamed: two pods in two Kubernetes namespaces, each with a
// saturated TCP and unix listener, and an operator's debugging tool
// nsenter'd into one of them. The exporter names namespace, pod and
// container for each listener, agrees with ss run inside each pod, reads
// each pod's own somaxconn, and drops a removed pod's series.
func TestCRIPodsNamed(t *testing.T) {
	c := testpods.StartContainerd(t)
	webApp := testpods.App{TCP: "127.0.0.1:8080", TCPBacklog: 4, Unix: "/tmp/app.sock", UnixBacklog: 2}
	apiApp := testpods.App{TCP: "127.0.0.1:8080", TCPBacklog: 7, Unix: "/tmp/app.sock", UnixBacklog: 3}
	web := c.RunPod(t, "team-a", "web-1", testpods.Container{Name: "app", Command: webApp.Command()})
	api := c.RunPod(t, "team-b", "api-1", testpods.Container{Name: "server", Command: apiApp.Command()})
	// A process in web-1's network namespace but in the host's cgroups.
	tool := testpods.App{TCP: "127.0.0.1:9090", TCPBacklog: 2}
	testpods.StartNsenterProcess(t, web.NetnsPath, append([]string{testpods.AppBinary(t)}, tool.Args()...)...)

	url := startExporter(t, "--runtime.endpoint=unix://"+c.Socket)
	var got *testbin.Scrape
	waitScrape(t, url, func(s *testbin.Scrape) bool {
		got = s
		return len(s.Find("listenq_queue_limit", map[string]string{"pod": "web-1", "listener": "127.0.0.1:9090"})) == 1 &&
			len(s.Find("listenq_queue_limit", map[string]string{"pod": "api-1", "proto": "unix"})) == 1
	})

	for _, p := range []struct {
		pod       *testpods.Pod
		container string
		app       testpods.App
	}{{web, "app", webApp}, {api, "server", apiApp}} {
		ids := map[string]string{"namespace": p.pod.Namespace, "pod": p.pod.Name, "netns": netnsName(p.pod.NetnsPath)}
		ss := testpods.NsenterSS(t, p.pod.NetnsPath, "-ltnx")
		for _, l := range []struct{ proto, addr string }{{"tcp", p.app.TCP}, {"unix", p.app.Unix}} {
			recvQ, sendQ := testpods.ListenQueue(t, ss, l.addr)
			want := testbin.Labels(ids, map[string]string{"container": p.container, "proto": l.proto, "listener": l.addr})
			if v := got.One(t, "listenq_queue_length", want).Value; v != float64(recvQ) || recvQ == 0 {
				t.Errorf("%s/%s %s: length %v, ss Recv-Q %d (want equal, non-zero)", p.pod.Namespace, p.pod.Name, l.addr, v, recvQ)
			}
			if v := got.One(t, "listenq_queue_limit", want).Value; v != float64(sendQ) {
				t.Errorf("%s/%s %s: limit %v, ss Send-Q %d", p.pod.Namespace, p.pod.Name, l.addr, v, sendQ)
			}
		}
		somaxconn := strings.TrimSpace(testpods.Nsenter(t, p.pod.NetnsPath, "cat", "/proc/sys/net/core/somaxconn"))
		if v := got.One(t, "listenq_somaxconn", ids).Value; strconv.FormatFloat(v, 'f', -1, 64) != somaxconn {
			t.Errorf("%s: somaxconn %v, inside the pod %s", p.pod.Name, v, somaxconn)
		}
		got.One(t, "listenq_netns_info", testbin.Labels(ids, map[string]string{"pod_uid": p.pod.UID, "runtime": "containerd"}))
	}
	// The debugging tool's listener is in web-1's namespace, in no container.
	got.One(t, "listenq_queue_limit", map[string]string{"namespace": "team-a", "pod": "web-1", "container": "", "listener": "127.0.0.1:9090"})
	if v := got.One(t, "listenq_runtime_up", map[string]string{"runtime": "containerd"}).Value; v != 1 {
		t.Errorf("runtime_up = %v, want 1", v)
	}

	api.Remove(t)
	waitScrape(t, url, func(s *testbin.Scrape) bool {
		got = s
		return len(s.Find("listenq_netns_info", map[string]string{"pod": "api-1"})) == 0
	})
	for name, series := range got.Series {
		for _, l := range series {
			if l.Labels["pod"] == "api-1" {
				t.Errorf("%s%v still exported after the pod was removed", name, l.Labels)
			}
		}
	}
	got.One(t, "listenq_queue_limit", map[string]string{"pod": "web-1", "container": "app", "proto": "tcp"})
}

// TestDockerContainerNamed: a container started by a real dockerd, with a
// saturated listener in its own network namespace, is named by the Docker
// Engine API.
func TestDockerContainerNamed(t *testing.T) {
	d := testpods.StartDocker(t)
	app := testpods.App{TCP: "127.0.0.1:8080", TCPBacklog: 3, Unix: "/tmp/app.sock", UnixBacklog: 2}
	ctr := d.Run(t, "lq-demo", app.Command()...)
	url := startExporter(t, "--runtime.endpoint=docker://"+d.Socket)
	var got *testbin.Scrape
	waitScrape(t, url, func(s *testbin.Scrape) bool {
		got = s
		return len(s.Find("listenq_queue_limit", map[string]string{"container": "lq-demo", "proto": "unix"})) == 1
	})
	ss := testpods.NsenterSS(t, ctr.NetnsPath, "-ltnx")
	recvQ, sendQ := testpods.ListenQueue(t, ss, app.TCP)
	want := map[string]string{"container": "lq-demo", "namespace": "", "pod": "", "listener": app.TCP}
	if v := got.One(t, "listenq_queue_length", want).Value; v != float64(recvQ) || recvQ != app.TCPBacklog+1 {
		t.Errorf("length %v, ss Recv-Q %d, want both %d", v, recvQ, app.TCPBacklog+1)
	}
	if v := got.One(t, "listenq_queue_limit", want).Value; v != float64(sendQ) {
		t.Errorf("limit %v, ss Send-Q %d", v, sendQ)
	}
	netnsID := got.One(t, "listenq_queue_limit", want).Labels["netns"]
	got.One(t, "listenq_netns_info", map[string]string{"netns": netnsID, "runtime": "docker", "pod": ""})
}

func startExporter(t *testing.T, args ...string) string {
	t.Helper()
	addr := "127.0.0.1:" + testbin.FreePort(t)
	p := testbin.Start(t, testbin.Exporter(t), append([]string{
		"--web.listen-address=" + addr,
		"--netns.refresh-interval=1s",
		"--owner.min-scan-interval=0s",
		"--sampler.interval=100ms",
	}, args...)...)
	testbin.WaitFor(t, 10*time.Second, "the exporter to serve", []*testbin.Proc{p}, func() (bool, string) {
		_, err := testbin.Get(http.DefaultClient, "http://"+addr+"/metrics")
		return err == nil, fmt.Sprint(err)
	})
	return "http://" + addr + "/metrics"
}

// netnsName is the netns label of a namespace bind-mounted in /run/netns.
func netnsName(path string) string {
	return path[strings.LastIndex(path, "/")+1:]
}

// waitScrape scrapes url until ok says the scrape is complete, for at most
// 45 s: a new pod waits up to 30 s for the runtime to name it, and
// discovery runs every second.
func waitScrape(t *testing.T, url string, ok func(*testbin.Scrape) bool) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		body, err := testbin.Get(http.DefaultClient, url)
		if err == nil && ok(testbin.ParseScrape(t, body)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("scrape never complete (last error %v):\n%s", err, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
