package collector

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/procfs"

	"github.com/listenq/listenq_exporter/internal/testns"
)

// These tests run against the real kernel, in the private network namespace
// testns.Main puts the test binary in, and compare with what ss says.

func TestKernelTCPSaturatedListener(t *testing.T) {
	testns.Require(t)
	reg := newRealRegistry(t)
	l := testns.ListenTCP(t, "127.0.0.1:0", 4, false)
	overflowsBefore := listenOverflows(t)

	testns.DialTCP(t, l.Addr, 10)
	testns.Eventually(t, 5*time.Second, func() (bool, string) {
		e := testns.SS(t, "t", l.Inode)
		return e.RecvQ == 5 && e.Drops > 0, fmt.Sprintf("ss says Recv-Q %d, drops %d; want 5 and >0", e.RecvQ, e.Drops)
	})

	before := testns.SS(t, "t", l.Inode)
	got := gather(t, reg)
	after := testns.SS(t, "t", l.Inode)
	sel := inodeLabel(l.Inode)

	length := one(t, got, "listenq_queue_length", sel)
	if length.value != 5 {
		t.Errorf("queue length = %v, want 5 (backlog 4 holds 5 when full)", length.value)
	}
	wantLabels := map[string]string{
		"netns": "", "proto": "tcp", "listener": l.Addr.String(), "port": strconv.Itoa(int(l.Addr.Port())),
		"inode": strconv.FormatUint(l.Inode, 10),
	}
	for k, v := range wantLabels {
		if length.labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, length.labels[k], v)
		}
	}
	if length.labels["listener"] != before.Local {
		t.Errorf("listener label %q differs from ss's %q", length.labels["listener"], before.Local)
	}
	if limit := one(t, got, "listenq_queue_limit", sel).value; limit != 4 {
		t.Errorf("queue limit = %v, want 4", limit)
	}
	drops := one(t, got, "listenq_drops_total", sel).value
	if drops < float64(before.Drops) || drops > float64(after.Drops) || drops == 0 {
		t.Errorf("drops = %v, want non-zero and between ss's %d and %d", drops, before.Drops, after.Drops)
	}

	overflows := one(t, got, "listenq_tcp_listen_overflows_total", map[string]string{"netns": ""}).value
	if overflows <= overflowsBefore {
		t.Errorf("listen overflows = %v, want more than %v before the clients came", overflows, overflowsBefore)
	}
	if now := listenOverflows(t); overflows > now {
		t.Errorf("listen overflows = %v, more than /proc/net/netstat's %v read after", overflows, now)
	}

	// SYNs are retried, so the drop counter keeps rising while clients wait.
	testns.Eventually(t, 5*time.Second, func() (bool, string) {
		later := one(t, gather(t, reg), "listenq_drops_total", sel).value
		return later > drops, fmt.Sprintf("drops stayed at %v", later)
	})
}

func TestKernelTCPSomaxconnClamp(t *testing.T) {
	testns.Require(t)
	setSysctl(t, "net/core/somaxconn", "64")
	reg := newRealRegistry(t)
	l := testns.ListenTCP(t, "127.0.0.1:0", 1000, false)
	got := gather(t, reg)
	if limit := one(t, got, "listenq_queue_limit", inodeLabel(l.Inode)).value; limit != 64 {
		t.Errorf("limit of listen(fd, 1000) with somaxconn 64 = %v, want 64", limit)
	}
	if v := one(t, got, "listenq_somaxconn", map[string]string{"netns": ""}).value; v != 64 {
		t.Errorf("listenq_somaxconn = %v, want 64", v)
	}
	if e := testns.SS(t, "t", l.Inode); e.SendQ != 64 {
		t.Errorf("ss Send-Q = %d, want 64", e.SendQ)
	}
}

func TestKernelTCPIPv6Listener(t *testing.T) {
	testns.Require(t)
	reg := newRealRegistry(t)
	l := testns.ListenTCP(t, "[::1]:0", 3, false)
	testns.DialTCP(t, l.Addr, 2)
	testns.Eventually(t, 5*time.Second, func() (bool, string) {
		e := testns.SS(t, "t", l.Inode)
		return e.RecvQ == 2, fmt.Sprintf("ss Recv-Q %d, want 2", e.RecvQ)
	})
	got := gather(t, reg)
	s := one(t, got, "listenq_queue_length", inodeLabel(l.Inode))
	if want := fmt.Sprintf("[::1]:%d", l.Addr.Port()); s.labels["listener"] != want {
		t.Errorf("listener = %q, want %q", s.labels["listener"], want)
	}
	if s.value != 2 {
		t.Errorf("queue length = %v, want 2", s.value)
	}
	if limit := one(t, got, "listenq_queue_limit", inodeLabel(l.Inode)).value; limit != 3 {
		t.Errorf("queue limit = %v, want 3", limit)
	}
}

func TestKernelTCPReusePortSiblings(t *testing.T) {
	testns.Require(t)
	reg := newRealRegistry(t)
	a := testns.ListenTCP(t, "127.0.0.1:0", 5, true)
	b := testns.ListenTCP(t, a.Addr.String(), 7, true)
	got := gather(t, reg)
	series := find(got, "listenq_queue_limit", map[string]string{"port": strconv.Itoa(int(a.Addr.Port()))})
	if len(series) != 2 {
		t.Fatalf("want two series for two reuseport listeners, got %v", series)
	}
	limits := map[string]float64{}
	for _, s := range series {
		limits[s.labels["inode"]] = s.value
	}
	for _, l := range []struct {
		inode uint64
		limit float64
	}{{a.Inode, 5}, {b.Inode, 7}} {
		if got := limits[strconv.FormatUint(l.inode, 10)]; got != l.limit {
			t.Errorf("inode %d: limit %v, want %v", l.inode, got, l.limit)
		}
	}
}

func TestKernelTCPRelistenChangesLimit(t *testing.T) {
	testns.Require(t)
	reg := newRealRegistry(t)
	l := testns.ListenTCP(t, "127.0.0.1:0", 8, false)
	l.Relisten(t, 16)
	if limit := one(t, gather(t, reg), "listenq_queue_limit", inodeLabel(l.Inode)).value; limit != 16 {
		t.Errorf("limit after listen(fd, 16) = %v, want 16", limit)
	}
}

func TestKernelTCPClosedListenerDisappears(t *testing.T) {
	testns.Require(t)
	reg := newRealRegistry(t)
	l := testns.ListenTCP(t, "127.0.0.1:0", 4, false)
	if n := len(find(gather(t, reg), "listenq_queue_length", inodeLabel(l.Inode))); n != 1 {
		t.Fatalf("open listener: %d series, want 1", n)
	}
	l.Close()
	if n := len(find(gather(t, reg), "listenq_queue_length", inodeLabel(l.Inode))); n != 0 {
		t.Errorf("closed listener still has %d series", n)
	}
}

func TestKernelTCPOwnerProcess(t *testing.T) {
	testns.Require(t)
	reg := newRealRegistry(t)
	o := testns.StartOwner(t, "lq-owner", "127.0.0.1:0", 4)
	own := testns.ListenTCP(t, "127.0.0.1:0", 4, false)
	got := gather(t, reg)
	if p := one(t, got, "listenq_queue_length", inodeLabel(o.Inode)).labels["process"]; p != "lq-owner" {
		t.Errorf("process of the helper's listener = %q, want lq-owner", p)
	}
	comm := readComm(t)
	if p := one(t, got, "listenq_queue_length", inodeLabel(own.Inode)).labels["process"]; p != comm {
		t.Errorf("process of the test's own listener = %q, want %q", p, comm)
	}
}

func TestKernelTCPFilters(t *testing.T) {
	testns.Require(t)
	a := testns.ListenTCP(t, "127.0.0.1:0", 4, false)
	b := testns.ListenTCP(t, "[::1]:0", 4, false)
	port := strconv.Itoa(int(a.Addr.Port()))
	got := gather(t, newRealRegistry(t, "--filter.port-include="+port))
	if n := len(find(got, "listenq_queue_length", inodeLabel(a.Inode))); n != 1 {
		t.Errorf("included port: %d series, want 1", n)
	}
	if n := len(find(got, "listenq_queue_length", inodeLabel(b.Inode))); n != 0 {
		t.Errorf("other port: %d series, want 0", n)
	}
	if v := one(t, got, "listenq_listeners_omitted", map[string]string{"proto": "tcp", "reason": "filter"}).value; v < 1 {
		t.Errorf("omitted by filter = %v, want at least 1", v)
	}

	got = gather(t, newRealRegistry(t, "--filter.max-listeners=1"))
	if n := len(got["listenq_queue_length"]); n != 1 {
		t.Errorf("with a cap of 1: %d listeners exported", n)
	}
	if v := one(t, got, "listenq_listeners_omitted", map[string]string{"proto": "tcp", "reason": "cap"}).value; v < 1 {
		t.Errorf("omitted by cap = %v, want at least 1", v)
	}
}

// listenOverflows reads TcpExt ListenOverflows of the test's namespace
// independently of the exporter.
func listenOverflows(t *testing.T) float64 {
	t.Helper()
	fs, err := procfs.NewFS("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self, err := fs.Self()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := self.Netstat()
	if err != nil || ns.ListenOverflows == nil {
		t.Fatalf("read ListenOverflows: %v", err)
	}
	return *ns.ListenOverflows
}

// setSysctl sets a sysctl of the test's private namespace and restores it
// when the test ends.
func setSysctl(t *testing.T, name, value string) {
	t.Helper()
	path := "/proc/sys/" + name
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		t.Fatalf("set %s=%s: %v", name, value, err)
	}
	t.Cleanup(func() { os.WriteFile(path, old, 0o644) })
}

func readComm(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:len(b)-1])
}

// A program may name itself anything, including bytes that are not UTF-8;
// the label must still be valid (or the whole scrape would fail) and say
// which bytes they were.
func TestKernelOwnerWithUnprintableName(t *testing.T) {
	testns.Require(t)
	reg := newRealRegistry(t)
	o := testns.StartOwner(t, "lq-\xff\x01x", "127.0.0.1:0", 4)
	if p := one(t, gather(t, reg), "listenq_queue_length", inodeLabel(o.Inode)).labels["process"]; p != `lq-\xff\x01x` {
		t.Errorf("process = %q, want the bytes escaped as lq-\\xff\\x01x", p)
	}
}
