package collector

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/listenq/listenq_exporter/internal/acceptwait"
	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/owner"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

var update = flag.Bool("update", false, "rewrite golden files")

// fixture is a fake procfs tree: one process (pid 4242, "nginx") holding
// socket 1001, a netstat file and the sysctls.
func fixture(t *testing.T, netstat string) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"4242/comm":                        "nginx\n",
		"4242/net/netstat":                 netstat,
		"sys/net/core/somaxconn":           "4096\n",
		"sys/net/ipv4/tcp_max_syn_backlog": "512\n",
		"sys/net/ipv4/tcp_syncookies":      "1\n",
		// tcp_abort_on_overflow is missing: the metric must be absent.
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "4242/fd"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"self":      "4242",
		"4242/fd/3": "socket:[1001]",
		"4242/fd/5": "socket:[3003]",
		"4242/fd/4": "pipe:[77]",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// A kernel without TCPReqQFullDoCookies: that counter must be absent.
const fixtureNetstat = `TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed ListenOverflows ListenDrops TCPReqQFullDrop
TcpExt: 3 2 1 120 130 7
IpExt: InNoRoutes
IpExt: 0
`

// fakeListeners is what the fake kernel reports: an IPv4 listener owned by
// nginx reported twice (dumps are not atomic), an IPv6 one nobody owns.
var fakeListeners = map[uint8][]sockdiag.InetSocket{
	sockdiag.FamilyINet: {
		{Family: sockdiag.FamilyINet, State: sockdiag.StateListen, Local: netip.MustParseAddrPort("0.0.0.0:80"),
			RQueue: 12, WQueue: 511, Inode: 1001, Cookie: 0x1001, Drops: 42, HasDrops: true},
		{Family: sockdiag.FamilyINet, State: sockdiag.StateListen, Local: netip.MustParseAddrPort("0.0.0.0:80"),
			RQueue: 12, WQueue: 511, Inode: 1001, Cookie: 0x1001, Drops: 42, HasDrops: true},
	},
	sockdiag.FamilyINet6: {
		{Family: sockdiag.FamilyINet6, State: sockdiag.StateListen, Local: netip.MustParseAddrPort("[::]:8443"),
			RQueue: 0, WQueue: 4096, Inode: 2002, Cookie: 0x2002, Drops: 0, HasDrops: true},
	},
}

// fakeDial answers inet_diag dumps from fakeListeners.
func fakeDial(t *testing.T) func() (*sockdiag.Conn, error) {
	return func() (*sockdiag.Conn, error) {
		c := nltest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) {
			return inetDumpReply(t, reqs[0], fakeInet(reqs[0], fakeListeners))
		})
		return sockdiag.NewConn(c), nil
	}
}

// goldenUnixListeners are the fake kernel's unix listeners in the golden
// exposition: a php-fpm-like socket nginx's fixture process holds, and an
// abstract one nobody can be named for.
var goldenUnixListeners = []sockdiag.UnixSocket{
	unixSock(sockdiag.SockStream, 3003, "/run/php/fpm.sock", 3, 2),
	unixSock(sockdiag.SockSeqPacket, 3004, "\x00listenq\x00", 0, 128),
}

// fakeKernelDial answers inet_diag dumps from fakeListeners and unix_diag
// dumps from goldenUnixListeners.
func fakeKernelDial(t *testing.T) func() (*sockdiag.Conn, error) {
	return func() (*sockdiag.Conn, error) {
		c := nltest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) {
			if reqs[0].Data[0] == sockdiag.FamilyUnix {
				return unixDumpReply(t, reqs[0], goldenUnixListeners, nil)
			}
			return inetDumpReply(t, reqs[0], fakeInet(reqs[0], fakeListeners))
		})
		return sockdiag.NewConn(c), nil
	}
}

// TestGoldenExposition pins the exposition format of every collector and
// the sampler: names, Help, types and labels are the contract dashboards
// and alerts depend on.
func TestGoldenExposition(t *testing.T) {
	s := NewSampler(time.Hour, time.Minute, 0, discardLogger())
	reg := newFakeRegistry(t, fixture(t, fixtureNetstat), fakeKernelDial(t), s, append(inetCollectors, "unix")...)
	// One sampler round, by hand so the test does not race a goroutine:
	// peaks are the lengths read, and time full starts at 0.
	s.round()
	golden := filepath.Join("testdata", "exposition.prom")
	if *update {
		writeExposition(t, reg, golden)
	}
	f, err := os.Open(golden)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := testutil.GatherAndCompare(reg, f, exposedNames(t, reg)...); err != nil {
		t.Error(err)
	}
}

// fakeEvents stands for the acceptwait collector's BPF programs: the
// nginx listener (cookie 0x1001) has events, the IPv6 one none.
type fakeEvents struct{ bounds []float64 }

func (fakeEvents) Method() string      { return acceptwait.MethodTracepoint }
func (f fakeEvents) Bounds() []float64 { return f.bounds }
func (fakeEvents) Close() error        { return nil }
func (fakeEvents) Advance() (map[uint64]uint32, error) {
	// A burst to 512 between two samples that read 12.
	return map[uint64]uint32{0x1001: 512}, nil
}

func (fakeEvents) Read() (acceptwait.Reading, error) {
	f := acceptwait.Figures{Accepted: 9, Timed: 7, WaitSum: 3.5, FullSeconds: 1.25}
	copy(f.Buckets[:], []uint64{0, 0, 1, 1, 1, 2, 2, 2, 3, 4, 5, 6, 7, 7, 7, 7, 7})
	return acceptwait.Reading{
		Listeners: map[uint64]acceptwait.Figures{0x1001: f},
		Counters: acceptwait.Counters{
			Children: 3, ChildrenCapacity: 65536, ChildrenEvicted: 4,
			Listeners: 1, ListenersCapacity: 16384, ListenersEvicted: 0,
			AcceptsUnseen: 2, JoinsWithoutCookie: 1,
		},
	}, nil
}

// TestGoldenExpositionAcceptWait pins what the acceptwait collector adds
// and changes: the wait histograms and accept counters of TCP listeners
// (zeros for one without events), the peak and full time taken from the
// events, their Help, and the collector's own health.
func TestGoldenExpositionAcceptWait(t *testing.T) {
	bounds, err := acceptwait.Bounds()
	if err != nil {
		t.Fatal(err)
	}
	orig := startEvents
	startEvents = func(acceptwait.Options) (eventSource, error) { return fakeEvents{bounds}, nil }
	t.Cleanup(func() { startEvents = orig })
	s := NewSampler(time.Hour, time.Minute, 0, discardLogger())
	reg := newFakeRegistry(t, fixture(t, fixtureNetstat), fakeKernelDial(t), s, append(inetCollectors, "unix", "acceptwait")...)
	s.round()
	golden := filepath.Join("testdata", "exposition-acceptwait.prom")
	if *update {
		writeExposition(t, reg, golden)
	}
	f, err := os.Open(golden)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := testutil.GatherAndCompare(reg, f, exposedNames(t, reg)...); err != nil {
		t.Error(err)
	}
}

// exposedNames lists every metric but the durations and timestamps, which
// vary.
func exposedNames(t *testing.T, reg prometheus.Gatherer) []string {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		switch mf.GetName() {
		case "listenq_scrape_collector_duration_seconds",
			"listenq_sampler_round_duration_seconds",
			"listenq_sampler_last_success_timestamp_seconds":
			// Times: their names and types are checked by the golden
			// file's HELP and TYPE lines of the others; values vary.
		default:
			names = append(names, mf.GetName())
		}
	}
	return names
}

func writeExposition(t *testing.T, reg prometheus.Gatherer, path string) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	enc := expfmt.NewEncoder(&sb, expfmt.NewFormat(expfmt.TypeTextPlain))
	keep := map[string]bool{}
	for _, name := range exposedNames(t, reg) {
		keep[name] = true
	}
	for _, mf := range mfs {
		if !keep[mf.GetName()] {
			continue
		}
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFailingSourceFailsOnlyItsCollector(t *testing.T) {
	root := fixture(t, fixtureNetstat)
	if err := os.Remove(filepath.Join(root, "4242/net/netstat")); err != nil {
		t.Fatal(err)
	}
	failDial := func() (*sockdiag.Conn, error) { return nil, errors.New("operation not permitted") }
	got := gather(t, newFakeRegistry(t, root, failDial, nil, inetCollectors...))
	for collector, want := range map[string]float64{"netstat": 0, "tcp": 0, "sysctl": 1} {
		if v := one(t, got, "listenq_scrape_collector_success", map[string]string{"collector": collector}).value; v != want {
			t.Errorf("success of %s = %v, want %v", collector, v, want)
		}
	}
	if v := one(t, got, "listenq_somaxconn", nil).value; v != 4096 {
		t.Errorf("sysctl collector kept working: somaxconn = %v, want 4096", v)
	}
}

func TestUnparsableSysctlIsAnErrorButOthersStay(t *testing.T) {
	root := fixture(t, fixtureNetstat)
	if err := os.WriteFile(filepath.Join(root, "sys/net/core/somaxconn"), []byte("lots\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := gather(t, newFakeRegistry(t, root, fakeDial(t), nil, inetCollectors...))
	if v := one(t, got, "listenq_scrape_collector_success", map[string]string{"collector": "sysctl"}).value; v != 0 {
		t.Errorf("sysctl success = %v, want 0", v)
	}
	if n := len(got["listenq_somaxconn"]); n != 0 {
		t.Errorf("unparsable somaxconn exported %d series", n)
	}
	if v := one(t, got, "listenq_tcp_syncookies", nil).value; v != 1 {
		t.Errorf("tcp_syncookies = %v, want 1", v)
	}
}

// TestListenerCapIsGlobal: --filter.max-listeners caps all namespaces
// together, keeping the oldest sockets (lowest inodes) host-wide, and
// counts what it left out in the namespace it came from.
func TestListenerCapIsGlobal(t *testing.T) {
	root := fixture(t, fixtureNetstat)
	dialWith := func(inodes ...uint32) func() (*sockdiag.Conn, error) {
		var socks []sockdiag.InetSocket
		for i, ino := range inodes {
			socks = append(socks, sockdiag.InetSocket{Family: sockdiag.FamilyINet, State: sockdiag.StateListen,
				Local: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(8000+i)), WQueue: 8, Inode: ino, HasDrops: true})
		}
		return func() (*sockdiag.Conn, error) {
			// Both families' dumps report the sockets: a socket seen twice
			// in one namespace is exported once.
			return sockdiag.NewConn(nltest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) {
				return inetDumpReply(t, reqs[0], socks)
			})), nil
		}
	}
	netstat := filepath.Join(root, "self", "net", "netstat")
	a := netns.NewFixed("", netstat, filepath.Join(root, "sys"), dialWith(10, 40))
	b := netns.NewFixed("cni-b", netstat, filepath.Join(root, "sys"), dialWith(20, 30, 50))
	b.Identity = netns.Identity{Namespace: "team-b", Pod: "api-1"}
	on := true
	e, err := New(Selection{"tcp": &on}, Deps{
		Logger:     discardLogger(),
		Namespaces: netns.Static{a, b},
		Listeners:  NewListenerExporter(ListenerFilters{MaxListeners: 3}, owner.NewResolver(root, 0)),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := gather(t, checked(e))
	var inodes []string
	for _, s := range got["listenq_queue_limit"] {
		inodes = append(inodes, s.labels["netns"]+"/"+s.labels["inode"])
	}
	slices.Sort(inodes)
	if want := []string{"/10", "cni-b/20", "cni-b/30"}; !slices.Equal(inodes, want) {
		t.Errorf("exported %v, want the three oldest sockets of both namespaces %v", inodes, want)
	}
	for ns, want := range map[string]float64{"": 1, "cni-b": 1} {
		if v := one(t, got, "listenq_listeners_omitted", map[string]string{"netns": ns, "reason": "cap"}).value; v != want {
			t.Errorf("netns %q: %v capped, want %v", ns, v, want)
		}
	}
	one(t, got, "listenq_queue_limit", map[string]string{"netns": "cni-b", "namespace": "team-b", "pod": "api-1", "inode": "20"})
}
