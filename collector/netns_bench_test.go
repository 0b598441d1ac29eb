package collector

import (
	"fmt"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/owner"
	"github.com/listenq/listenq_exporter/internal/testns"
)

// BenchmarkGatherNamespaces gathers every collector over 200 namespaces of
// 5 TCP and 2 unix listeners each, the shape of bench/netns.sh, in
// process, for profiles: go test -run '^$' -bench GatherNamespaces
// -cpuprofile cpu.out ./collector/
func BenchmarkGatherNamespaces(b *testing.B) {
	testns.Require(b)
	const namespaces = 200
	pods := testPods{}
	dir := b.TempDir()
	for i := range namespaces {
		n := testns.NewNetns(b)
		k, err := netns.KeyOf(n.Path)
		if err != nil {
			b.Fatal(err)
		}
		pods[k] = netns.Identity{Namespace: "bench", Pod: fmt.Sprintf("pod-%d", i)}
		n.Do(b, func() {
			for p := range 5 {
				testns.ListenTCP(b, fmt.Sprintf("127.0.0.1:%d", 8080+p), 4<<p, false)
			}
			for u := range 2 {
				testns.ListenUnix(b, filepath.Join(dir, fmt.Sprintf("%d-%d.sock", i, u)), unix.SOCK_STREAM, 4)
			}
		})
	}
	set := netns.NewSet(pods.config(), mustSelf(b))
	b.Cleanup(set.Close)
	if err := set.Refresh(); err != nil {
		b.Fatal(err)
	}
	e, err := New(allCollectors(), Deps{
		Logger:     discardLogger(),
		Namespaces: set,
		Listeners:  NewListenerExporter(ListenerFilters{MaxListeners: 5000}, newTestResolver()),
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := e.Gather(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

func mustSelf(tb testing.TB) *netns.Handle {
	tb.Helper()
	self, err := netns.Self("/proc", netns.SelfID("/proc"))
	if err != nil {
		tb.Fatal(err)
	}
	return self
}

func newTestResolver() *owner.Resolver { return owner.NewResolver("/proc", 0) }
