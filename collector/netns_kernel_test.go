package collector

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/owner"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
	"github.com/listenq/listenq_exporter/internal/testns"
)

// testPods names the namespaces a test made, as a runtime would name pods,
// and leaves every other namespace of the host out, so the test sees (and
// holds open) only its own.
type testPods map[netns.Key]netns.Identity

func (p testPods) config() netns.SetConfig {
	return netns.SetConfig{
		Sources:  netns.Sources{ProcRoot: "/proc", NamedDir: "/run/netns"},
		Identify: func(f netns.Found) (netns.Identity, bool) { return p[f.Key], true },
		Admit:    func(id netns.Identity) bool { return id.Pod != "" },
		Logger:   discardLogger(),
	}
}

func (p testPods) add(t *testing.T, n *testns.Netns, namespace, pod string) {
	t.Helper()
	k, err := netns.KeyOf(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	p[k] = netns.Identity{Namespace: namespace, Pod: pod, PodUID: "uid-" + pod, Runtime: "test"}
}

// newSetRegistry builds every collector over a real discovery Set.
func newSetRegistry(t *testing.T, pods testPods) (*netns.Set, prometheus.Gatherer) {
	t.Helper()
	self, err := netns.Self("/proc", netns.SelfID("/proc"))
	if err != nil {
		t.Fatal(err)
	}
	set := netns.NewSet(pods.config(), self)
	t.Cleanup(set.Close)
	e, err := New(allCollectors(), Deps{
		Logger:     discardLogger(),
		Namespaces: set,
		Listeners:  NewListenerExporter(ListenerFilters{MaxListeners: 1000}, owner.NewResolver("/proc", 0)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e.Start(ctx)
	return set, checked(e)
}

func allCollectors() Selection {
	sel := Selection{}
	for _, name := range []string{"netstat", "sysctl", "tcp", "unix"} {
		on := true
		sel[name] = &on
	}
	return sel
}

// saturate makes, inside n, a TCP listener with backlog 4 and ten clients
// it never accepts, and a unix listener with backlog 2 filled until
// connect fails with EAGAIN.
func saturate(t *testing.T, n *testns.Netns) (tcp, unixL *testns.Listener) {
	t.Helper()
	n.Do(t, func() {
		tcp = testns.ListenTCP(t, "127.0.0.1:8080", 4, false)
		testns.DialTCP(t, tcp.Addr, 10)
		path := filepath.Join(t.TempDir(), "app.sock")
		unixL = testns.ListenUnix(t, path, unix.SOCK_STREAM, 2)
		testns.DialUnixUntilFull(t, path, unix.SOCK_STREAM, 20)
	})
	return tcp, unixL
}

// TestKernelEveryNamespaceRead: one namespace held by a process (as a pod's
// sandbox holds it) and one made by `ip netns add` with no process, each
// with a saturated TCP and unix listener, are both read with their own
// identity, and each reports its own somaxconn: 32 in the pod-like one,
// where listen(fd, 1000) is clamped to 32, the kernel default in the other.
func TestKernelEveryNamespaceRead(t *testing.T) {
	testns.Require(t)
	podNS := testns.NewNetns(t)
	podNS.SetSysctl(t, "net/core/somaxconn", 32)
	named := testns.AddNamedNetns(t, "read")
	pods := testPods{}
	pods.add(t, podNS, "team-a", "web-1")
	pods.add(t, named, "team-b", "api-1")

	podTCP, podUnix := saturate(t, podNS)
	namedTCP, namedUnix := saturate(t, named)
	var clamped *testns.Listener
	podNS.Do(t, func() { clamped = testns.ListenTCP(t, "127.0.0.1:9090", 1000, false) })

	set, reg := newSetRegistry(t, pods)
	if err := set.Refresh(); err != nil {
		t.Fatal(err)
	}
	got := gather(t, reg)
	podID := strconv.FormatUint(podNS.Inode(t), 10)
	for _, c := range []struct {
		netnsID, namespace, pod string
		tcp, unix               *testns.Listener
	}{
		{podID, "team-a", "web-1", podTCP, podUnix},
		{named.Name, "team-b", "api-1", namedTCP, namedUnix},
	} {
		ids := map[string]string{"netns": c.netnsID, "namespace": c.namespace, "pod": c.pod}
		for _, l := range []struct {
			ln             *testns.Listener
			length, limit  float64
			proto, address string
		}{
			{c.tcp, 5, 4, "tcp", "127.0.0.1:8080"},
			{c.unix, 3, 2, "unix", c.unix.Path},
		} {
			want := withLabels(ids, inodeLabel(l.ln.Inode), map[string]string{"proto": l.proto, "listener": l.address})
			if v := one(t, got, "listenq_queue_length", want).value; v != l.length {
				t.Errorf("%s %s in %s: length %v, want %v", l.proto, l.address, c.netnsID, v, l.length)
			}
			if v := one(t, got, "listenq_queue_limit", want).value; v != l.limit {
				t.Errorf("%s %s in %s: limit %v, want %v", l.proto, l.address, c.netnsID, v, l.limit)
			}
		}
		if v := one(t, got, "listenq_tcp_listen_overflows_total", ids).value; v == 0 {
			t.Errorf("netns %s: listen overflows 0, want > 0 (its own counters, read inside it)", c.netnsID)
		}
		one(t, got, "listenq_netns_info", withLabels(ids, map[string]string{"pod_uid": "uid-" + c.pod, "runtime": "test"}))
		if v := one(t, got, "listenq_netns_scrape_success", ids).value; v != 1 {
			t.Errorf("netns %s: scrape success %v, want 1", c.netnsID, v)
		}
	}
	if v := one(t, got, "listenq_somaxconn", map[string]string{"netns": podID}).value; v != 32 {
		t.Errorf("pod-like namespace somaxconn = %v, want 32", v)
	}
	if v := one(t, got, "listenq_queue_limit", inodeLabel(clamped.Inode)).value; v != 32 {
		t.Errorf("listen(fd, 1000) in a namespace with somaxconn 32: limit %v, want 32", v)
	}
	if v := one(t, got, "listenq_somaxconn", map[string]string{"netns": named.Name}).value; v != 4096 {
		t.Errorf("new namespace somaxconn = %v, want the kernel default 4096", v)
	}
	self := one(t, got, "listenq_somaxconn", map[string]string{"netns": netns.SelfID("/proc")}).value
	if own := readSysctl(t, "net/core/somaxconn"); self != own {
		t.Errorf("the exporter's own namespace: somaxconn %v, want its own value %v", self, own)
	}
}

// TestKernelNamespaceGoneReleased: once the process holding a namespace
// exits, the next discovery drops the namespace's series and closes every
// fd and socket the exporter held in it, so the kernel can free it.
func TestKernelNamespaceGoneReleased(t *testing.T) {
	testns.Require(t)
	pods := testPods{}
	set, reg := newSetRegistry(t, pods)
	if err := set.Refresh(); err != nil {
		t.Fatal(err)
	}
	gather(t, reg)
	baseline := testns.OwnFDs(t)

	n := testns.NewNetns(t)
	pods.add(t, n, "team-a", "short-lived")
	var l *testns.Listener
	n.Do(t, func() { l = testns.ListenTCP(t, "127.0.0.1:8080", 4, false) })
	if err := set.Refresh(); err != nil {
		t.Fatal(err)
	}
	id := strconv.FormatUint(n.Inode(t), 10)
	nsLink := fmt.Sprintf("net:[%s]", id)
	one(t, gather(t, reg), "listenq_queue_limit", map[string]string{"netns": id, "pod": "short-lived"})
	if held := newFDs(baseline, testns.OwnFDs(t)); !containsLink(held, nsLink) {
		t.Fatalf("while read, the exporter holds no new fd %s: %v", nsLink, held)
	}

	l.Close() // the test's own socket would keep the namespace alive too
	n.Kill()
	var h *netns.Handle
	for _, x := range set.Handles() {
		if x.ID == id {
			h = x
		}
	}
	if err := set.Refresh(); err != nil {
		t.Fatal(err)
	}
	got := gather(t, reg)
	for name, series := range got {
		for _, s := range series {
			if s.labels["netns"] == id {
				t.Errorf("%s%v still exported after the namespace went", name, s.labels)
			}
		}
	}
	if extra := newFDs(baseline, testns.OwnFDs(t)); len(extra) > 0 {
		t.Errorf("after the namespace went the exporter still holds fds it opened for it:\n%s", strings.Join(extra, "\n"))
	}
	if h == nil {
		t.Fatal("no handle for the namespace before it went")
	}
	if _, err := h.Conn(); !errors.Is(err, netns.ErrClosed) {
		t.Errorf("handle of the gone namespace: Conn() error %v, want ErrClosed", err)
	}
}

// TestKernelFailingNamespaceHidesNoOther: a namespace that cannot be read
// (here its sock_diag dial and files fail) is reported as failed, alone:
// the other namespace's listeners and the collectors' success stay.
func TestKernelFailingNamespaceHidesNoOther(t *testing.T) {
	testns.Require(t)
	self, err := netns.Self("/proc", "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bad := netns.NewFixed("broken", filepath.Join(dir, "netstat"), dir,
		func() (*sockdiag.Conn, error) { return nil, errors.New("namespace vanished") })
	l := testns.ListenTCP(t, "127.0.0.1:0", 4, false)
	e, err := New(allCollectors(), Deps{
		Logger:     discardLogger(),
		Namespaces: netns.Static{self, bad},
		Listeners:  NewListenerExporter(ListenerFilters{MaxListeners: 1000}, owner.NewResolver("/proc", 0)),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := gather(t, checked(e))
	one(t, got, "listenq_queue_limit", withLabels(inodeLabel(l.Inode), map[string]string{"netns": ""}))
	for netnsID, want := range map[string]float64{"": 1, "broken": 0} {
		if v := one(t, got, "listenq_netns_scrape_success", map[string]string{"netns": netnsID}).value; v != want {
			t.Errorf("netns %q: scrape success %v, want %v", netnsID, v, want)
		}
	}
	for _, c := range []string{"tcp", "unix", "netstat"} {
		if v := one(t, got, "listenq_scrape_collector_success", map[string]string{"collector": c}).value; v != 1 {
			t.Errorf("collector %s: success %v, want 1 (one namespace failing is that namespace's failure)", c, v)
		}
	}
}

func withLabels(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func readSysctl(t *testing.T, name string) float64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc/sys", name))
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// newFDs returns the fds of after that baseline did not have, as a
// multiset: what was opened since and is still open.
func newFDs(baseline, after []string) []string {
	left := map[string]int{}
	for _, l := range baseline {
		left[l]++
	}
	var extra []string
	for _, l := range after {
		if left[l] > 0 {
			left[l]--
			continue
		}
		extra = append(extra, l)
	}
	return extra
}

func containsLink(links []string, want string) bool {
	for _, l := range links {
		if l == want {
			return true
		}
	}
	return false
}

// TestKernelDeviceNamedInItsNamespace: a listener bound to a device is
// shown with the device's name in its own namespace, where the index
// means that device (in the exporter's namespace it means another one, or
// none).
func TestKernelDeviceNamedInItsNamespace(t *testing.T) {
	testns.Require(t)
	n := testns.AddNamedNetns(t, "dev")
	for _, args := range [][]string{{"link", "add", "lqdev0", "type", "veth", "peer", "name", "lqdev1"}, {"link", "set", "lqdev0", "up"}} {
		if out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	var ino uint64
	n.Do(t, func() {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, "lqdev0"); err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: 7070}); err != nil {
			t.Fatal(err)
		}
		if err := unix.Listen(fd, 8); err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		ino = st.Ino
	})
	pods := testPods{}
	pods.add(t, n, "team-a", "bound")
	set, reg := newSetRegistry(t, pods)
	if err := set.Refresh(); err != nil {
		t.Fatal(err)
	}
	if l := one(t, gather(t, reg), "listenq_queue_limit", inodeLabel(ino)).labels["listener"]; l != "0.0.0.0%lqdev0:7070" {
		t.Errorf("listener = %q, want 0.0.0.0%%lqdev0:7070 (the device's name in its namespace)", l)
	}
}
