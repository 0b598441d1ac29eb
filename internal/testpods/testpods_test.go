package testpods_test

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/listenq/listenq_exporter/internal/testpods"
)

func TestMain(m *testing.M) { os.Exit(testpods.Wrap(m).Run()) }

// checkFull checks that the app's listeners of a are full in the ss -ltnx
// output: Recv-Q is backlog+1 (the kernel admits one past the backlog).
func checkFull(t *testing.T, where, ss string, a testpods.App) {
	t.Helper()
	if r, s := testpods.ListenQueue(t, ss, a.TCP); s != a.TCPBacklog || r != a.TCPBacklog+1 {
		t.Errorf("%s: TCP %s: Recv-Q %d Send-Q %d, want %d and %d", where, a.TCP, r, s, a.TCPBacklog+1, a.TCPBacklog)
	}
	if r, s := testpods.ListenQueue(t, ss, a.Unix); s != a.UnixBacklog || r != a.UnixBacklog+1 {
		t.Errorf("%s: unix %s: Recv-Q %d Send-Q %d, want %d and %d", where, a.Unix, r, s, a.UnixBacklog+1, a.UnixBacklog)
	}
}

func readCgroup(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func netnsInode(t *testing.T, pid int) string {
	t.Helper()
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		t.Fatal(err)
	}
	return link
}

func TestContainerdPods(t *testing.T) {
	t0 := time.Now()
	c := testpods.StartContainerd(t)
	tStarted := time.Now()

	pods := []struct {
		namespace, name string
		app             testpods.App
	}{
		{"team-a", "web-1", testpods.App{TCP: "127.0.0.1:8080", TCPBacklog: 4, Unix: "/tmp/app.sock", UnixBacklog: 2}},
		{"team-b", "api-1", testpods.App{TCP: "127.0.0.1:9090", TCPBacklog: 7, Unix: "/tmp/api.sock", UnixBacklog: 3}},
	}
	var running []*testpods.Pod
	for _, pd := range pods {
		p := c.RunPod(t, pd.namespace, pd.name, testpods.Container{Name: "app", Command: pd.app.Command()})
		running = append(running, p)
	}
	tPods := time.Now()

	hostNetns := netnsInode(t, os.Getpid())
	for i, p := range running {
		where := p.Namespace + "/" + p.Name
		if p.Namespace != pods[i].namespace || p.Name != pods[i].name || p.UID == "" || p.SandboxID == "" {
			t.Errorf("%s: pod %+v", where, p)
		}
		if !strings.HasPrefix(p.NetnsPath, "/var/run/netns/cni-") && !strings.HasPrefix(p.NetnsPath, "/run/netns/cni-") {
			t.Errorf("%s: netns path %s, want /var/run/netns/cni-*", where, p.NetnsPath)
		}
		checkFull(t, where, testpods.NsenterSS(t, p.NetnsPath, "-ltnx"), pods[i].app)

		id, pid := p.ContainerIDs["app"], p.PIDs["app"]
		if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) || pid <= 0 {
			t.Fatalf("%s: container ID %q, PID %d", where, id, pid)
		}
		cg := readCgroup(t, pid)
		want := "/kubepods/besteffort/pod" + p.UID + "/" + id
		if !strings.Contains(cg, want) {
			t.Errorf("%s: /proc/%d/cgroup has no %s:\n%s", where, pid, want, cg)
		}
		// The app runs in the pod's network namespace, not the test's.
		if got := netnsInode(t, pid); got == hostNetns || got != netnsInode(t, p.SandboxPID) {
			t.Errorf("%s: app netns %s, sandbox %s, test %s", where, got, netnsInode(t, p.SandboxPID), hostNetns)
		}
	}
	if a, b := netnsInode(t, running[0].PIDs["app"]), netnsInode(t, running[1].PIDs["app"]); a == b {
		t.Errorf("both pods share network namespace %s", a)
	}

	// An operator's tool entered into team-a's namespace from the host:
	// its listener is in the pod's namespace, its process in no pod cgroup.
	tool := testpods.App{TCP: "127.0.0.1:7070", TCPBacklog: 1, Unix: "/tmp/lqapp-debug.sock", UnixBacklog: 1}
	web := running[0]
	toolPID := testpods.StartNsenterProcess(t, web.NetnsPath, append([]string{testpods.AppBinary(t)}, tool.Args()...)...)
	checkFull(t, "nsenter tool", testpods.NsenterSS(t, web.NetnsPath, "-ltnx"), tool)
	if cg := readCgroup(t, toolPID); strings.Contains(cg, "kubepods") {
		t.Errorf("the nsenter tool is in a pod's cgroup:\n%s", cg)
	}
	if netnsInode(t, toolPID) != netnsInode(t, web.PIDs["app"]) {
		t.Error("the nsenter tool is not in the pod's network namespace")
	}

	// Removing a pod removes its namespace's bind mount and its processes.
	api := running[1]
	tRemove := time.Now()
	api.Remove(t)
	tRemoved := time.Now()
	if _, err := os.Stat(api.NetnsPath); !os.IsNotExist(err) {
		t.Errorf("%s still exists after the pod was removed (%v)", api.NetnsPath, err)
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mi), strings.TrimPrefix(api.NetnsPath, "/var")) {
		t.Errorf("%s is still mounted after the pod was removed", api.NetnsPath)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", api.PIDs["app"])); !os.IsNotExist(err) {
		t.Errorf("the removed pod's app (pid %d) still runs", api.PIDs["app"])
	}
	// The other pod is untouched.
	checkFull(t, "web-1 after api-1's removal", testpods.NsenterSS(t, web.NetnsPath, "-ltnx"), pods[0].app)

	t.Logf("timings: containerd ready %v, two pods running %v, pod removal %v, total before cleanup %v",
		tStarted.Sub(t0).Round(time.Millisecond), tPods.Sub(tStarted).Round(time.Millisecond),
		tRemoved.Sub(tRemove).Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
}

func TestDockerContainer(t *testing.T) {
	t0 := time.Now()
	d := testpods.StartDocker(t)
	tStarted := time.Now()
	app := testpods.App{TCP: "127.0.0.1:8080", TCPBacklog: 5, Unix: "/tmp/app.sock", UnixBacklog: 4}
	c := d.Run(t, "lq-web", app.Command()...)
	tRunning := time.Now()
	if c.Name != "lq-web" || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(c.ID) || c.PID <= 0 || c.NetnsPath == "" {
		t.Fatalf("container %+v", c)
	}
	checkFull(t, "docker "+c.Name, testpods.NsenterSS(t, c.NetnsPath, "-ltnx"), app)
	if cg := readCgroup(t, c.PID); !strings.Contains(cg, "/docker/"+c.ID) {
		t.Errorf("/proc/%d/cgroup has no /docker/%s:\n%s", c.PID, c.ID, cg)
	}
	if netnsInode(t, c.PID) == netnsInode(t, os.Getpid()) {
		t.Error("the container shares the test's network namespace")
	}
	c.Remove(t)
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", c.PID)); !os.IsNotExist(err) {
		t.Errorf("the removed container's app (pid %d) still runs", c.PID)
	}
	// dockerd unmounts the namespace at once and deletes the file later.
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mi), " "+c.NetnsPath+" ") {
		t.Errorf("%s is still mounted after the container was removed", c.NetnsPath)
	}
	t.Logf("timings: dockerd ready %v, container running %v, total before cleanup %v",
		tStarted.Sub(t0).Round(time.Millisecond), tRunning.Sub(tStarted).Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
}
