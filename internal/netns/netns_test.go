package netns_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
	"github.com/listenq/listenq_exporter/internal/testns"
)

func TestMain(m *testing.M) { os.Exit(testns.Main(m)) }

func TestParseNetstat(t *testing.T) {
	const file = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 3 120 130\nIpExt: InNoRoutes\nIpExt: 7\n"
	got, err := netns.ParseNetstat([]byte(file), "TcpExt")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["ListenOverflows"] != 120 || got["ListenDrops"] != 130 || got["SyncookiesSent"] != 3 {
		t.Errorf("TcpExt = %v", got)
	}
	if ip, err := netns.ParseNetstat([]byte(file), "IpExt"); err != nil || ip["InNoRoutes"] != 7 {
		t.Errorf("IpExt = %v, %v", ip, err)
	}
	for name, bad := range map[string]string{
		"no section":       "IpExt: A\nIpExt: 1\n",
		"empty":            "",
		"names only":       "TcpExt: A B\n",
		"count mismatch":   "TcpExt: A B\nTcpExt: 1\n",
		"not a number":     "TcpExt: A\nTcpExt: x\n",
		"prefix lookalike": "TcpExtra: A\nTcpExtra: 1\n",
	} {
		if got, err := netns.ParseNetstat([]byte(bad), "TcpExt"); err == nil {
			t.Errorf("%s: got %v, want an error", name, got)
		}
	}
}

func FuzzParseNetstat(f *testing.F) {
	f.Add([]byte("TcpExt: A B\nTcpExt: 1 2\n"))
	f.Add([]byte("TcpExt: A\nTcpExt: 1e400\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := netns.ParseNetstat(b, "TcpExt")
		if err == nil && m == nil {
			t.Error("nil map without an error")
		}
	})
}

// TestDiscoverOwnNamespace: the test's own process is found in its
// namespace, and a stale file in the named directory (what a failed
// `ip netns del` leaves) is no namespace.
func TestDiscoverOwnNamespace(t *testing.T) {
	named := t.TempDir()
	if err := os.WriteFile(filepath.Join(named, "stale"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	own, err := netns.KeyOf("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	scan, err := netns.Discover(netns.Sources{ProcRoot: "/proc", NamedDir: named})
	if err != nil {
		t.Fatal(err)
	}
	var found *netns.Found
	for i, f := range scan.Found {
		if f.Key == own {
			found = &scan.Found[i]
		}
		if f.Name == "stale" {
			t.Errorf("a stale file was taken for a namespace: %+v", f)
		}
	}
	if found == nil {
		t.Fatalf("own namespace %v not among %d found", own, len(scan.Found))
	}
	if !containsInt(found.PIDs, os.Getpid()) {
		t.Errorf("own namespace lists pids %v, not this process (%d)", found.PIDs, os.Getpid())
	}
	if _, err := netns.Discover(netns.Sources{ProcRoot: filepath.Join(t.TempDir(), "none")}); err == nil {
		t.Error("Discover over a missing procfs: no error")
	}
}

// TestSetWaitsForIdentityAndNeverOpensFiltered: a namespace whose identity
// is not settled is not read until it settles (or the wait ends), and a
// namespace the filters leave out is never opened.
func TestSetWaitsForIdentityAndNeverOpensFiltered(t *testing.T) {
	testns.Require(t)
	waiting := testns.NewNetns(t)
	skipped := testns.NewNetns(t)
	wKey, _ := netns.KeyOf(waiting.Path)
	sKey, _ := netns.KeyOf(skipped.Path)
	settled := false
	self, err := netns.Self("/proc", netns.SelfID("/proc"))
	if err != nil {
		t.Fatal(err)
	}
	set := netns.NewSet(netns.SetConfig{
		Sources: netns.Sources{ProcRoot: "/proc"},
		Identify: func(f netns.Found) (netns.Identity, bool) {
			switch f.Key {
			case wKey:
				return netns.Identity{Namespace: "team-a", Pod: "web-1"}, settled
			case sKey:
				return netns.Identity{Namespace: "kube-system", Pod: "noisy"}, true
			}
			return netns.Identity{}, true
		},
		IdentityWait: time.Hour,
		Admit:        func(id netns.Identity) bool { return id.Namespace != "" && id.Namespace != "kube-system" },
	}, self)
	t.Cleanup(set.Close)

	if err := set.Refresh(); err != nil {
		t.Fatal(err)
	}
	if ids := handleIDs(set); len(ids) != 1 {
		t.Errorf("before the identity settled: handles %v, want the own namespace only", ids)
	}
	if st := set.Stats(); st.Pending != 1 || st.Filtered < 1 {
		t.Errorf("stats %+v, want 1 pending and the kube-system one filtered", st)
	}
	settled = true
	if err := set.Refresh(); err != nil {
		t.Fatal(err)
	}
	var h *netns.Handle
	for _, x := range set.Handles() {
		if x.Key == wKey {
			h = x
		}
	}
	if h == nil || h.Identity.Pod != "web-1" || h.ID != fmt.Sprint(wKey.Ino) {
		t.Fatalf("after it settled: handle %+v, want web-1 with netns %d", h, wKey.Ino)
	}
	if links := strings.Join(testns.OwnFDs(t), "\n"); strings.Contains(links, fmt.Sprintf("net:[%d]", sKey.Ino)) {
		t.Errorf("a filtered namespace was opened:\n%s", links)
	}
	if _, err := h.Sysctl("net/core/somaxconn"); err != nil {
		t.Errorf("read somaxconn inside: %v", err)
	}
}

func handleIDs(s *netns.Set) []string {
	var ids []string
	for _, h := range s.Handles() {
		ids = append(ids, h.ID)
	}
	return ids
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestReadAt0 reads a kept file whole, growing a buffer too small for it,
// and sees what changed at the next read; and says so when the file is
// closed.
func TestReadAt0(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	want := bytes.Repeat([]byte("TcpExt: 1\n"), 1000) // 10 KB
	if err := os.WriteFile(path, want, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := netns.ReadAt0(f, make([]byte, 1024))
	if err != nil || !bytes.Equal(b, want) {
		t.Fatalf("got %d bytes (%v), want %d", len(b), err, len(want))
	}
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err = netns.ReadAt0(f, b[:cap(b)]); err != nil || string(b) != "short\n" {
		t.Fatalf("after a rewrite: %q, %v", b, err)
	}
	f.Close()
	if _, err := netns.ReadAt0(f, b[:cap(b)]); err == nil {
		t.Fatal("a closed file read without error")
	}
}

// TestConnPerUse: the exporter's own namespace keeps a sock_diag socket per
// use, so its dumps do not wait for each other, and a failed one is dropped
// alone; a pod's namespace keeps one for all.
func TestConnPerUse(t *testing.T) {
	testns.Require(t)
	self, err := netns.Self("/proc", "")
	if err != nil {
		t.Fatal(err)
	}
	conns := map[*sockdiag.Conn]netns.Use{}
	for _, u := range []netns.Use{netns.UseTCP, netns.UseUnix, netns.UseBackground} {
		c, err := self.ConnFor(u)
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := self.ConnFor(u); again != c {
			t.Errorf("use %d: a second call opened another socket", u)
		}
		if other, dup := conns[c]; dup {
			t.Errorf("uses %d and %d share a socket in the own namespace", other, u)
		}
		conns[c] = u
	}
	tcp, _ := self.ConnFor(netns.UseTCP)
	unixConn, _ := self.ConnFor(netns.UseUnix)
	if err := self.Failed(unixConn, errors.New("cut short")); err == nil {
		t.Error("Failed returned no error")
	}
	if c, _ := self.ConnFor(netns.UseUnix); c == unixConn || c == nil {
		t.Error("after its dump failed, the unix socket was not replaced")
	}
	if c, _ := self.ConnFor(netns.UseTCP); c != tcp {
		t.Error("a failed unix dump dropped the TCP socket too")
	}
	background, _ := self.ConnFor(netns.UseBackground)
	self.Close()
	if _, err := self.ConnFor(netns.UseUnix); !errors.Is(err, netns.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
	for _, c := range []*sockdiag.Conn{tcp, background} {
		if _, err := c.ListenQueues(sockdiag.FamilyUnspec, nil); err == nil {
			t.Error("a socket of the closed handle still dumps")
		}
	}

	pod := testns.NewNetns(t)
	key, _ := netns.KeyOf(pod.Path)
	own, err := netns.Self("/proc", netns.SelfID("/proc"))
	if err != nil {
		t.Fatal(err)
	}
	set := netns.NewSet(netns.SetConfig{
		Sources: netns.Sources{ProcRoot: "/proc"},
		Identify: func(f netns.Found) (netns.Identity, bool) {
			if f.Key == key {
				return netns.Identity{Namespace: "team-a", Pod: "web-1"}, true
			}
			return netns.Identity{}, true
		},
		Admit: func(id netns.Identity) bool { return id.Pod != "" },
	}, own)
	t.Cleanup(set.Close)
	if err := set.Refresh(); err != nil {
		t.Fatal(err)
	}
	for _, h := range set.Handles() {
		if h.Key != key {
			continue
		}
		first, err := h.ConnFor(netns.UseTCP)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range []netns.Use{netns.UseUnix, netns.UseBackground} {
			if c, _ := h.ConnFor(u); c != first {
				t.Errorf("pod namespace: use %d has a socket of its own", u)
			}
		}
		return
	}
	t.Fatal("the pod's namespace has no handle")
}
