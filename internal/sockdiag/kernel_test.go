package sockdiag_test

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/internal/sockdiag"
	"github.com/listenq/listenq_exporter/internal/testns"
)

func TestMain(m *testing.M) { os.Exit(testns.Main(m)) }

// TestKernelDumpsSpanDatagrams dumps more listeners than one datagram of
// the small buffer holds, through the socket's own reads: every listener
// must come back, from each kind of dump, and a queue dump (the sampler
// makes them every interval) must not allocate a buffer per datagram.
func TestKernelDumpsSpanDatagrams(t *testing.T) {
	testns.Require(t)
	const n = 300
	want := map[uint64]bool{}
	for i := range n {
		l := testns.ListenUnix(t, fmt.Sprintf("@listenq-sockdiag-%d-%040d", os.Getpid(), i), unix.SOCK_STREAM, 4)
		want[l.Inode] = true
	}
	tcp := map[uint64]bool{}
	for range n / 3 {
		tcp[testns.ListenTCP(t, "127.0.0.1:0", 4, false).Inode] = true
	}
	c, err := sockdiag.Dial(false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	got := map[uint64]bool{}
	err = c.EachUnixSocket(sockdiag.UnixRequest{States: 1 << sockdiag.StateListen}, func(s *sockdiag.UnixSocket) error {
		got[uint64(s.Inode)] = true
		return nil
	})
	checkInodes(t, "unix dump", got, want, err)

	var qs []sockdiag.Queue
	qs, err = c.ListenQueues(sockdiag.FamilyUnix, qs)
	got = map[uint64]bool{}
	for _, q := range qs {
		got[uint64(q.Inode)] = true
	}
	checkInodes(t, "unix queue dump", got, want, err)

	socks, err := c.InetSockets(sockdiag.InetRequest{Family: sockdiag.FamilyINet, States: 1 << sockdiag.StateListen, MemInfo: true})
	got = map[uint64]bool{}
	for _, s := range socks {
		got[uint64(s.Inode)] = true
	}
	checkInodes(t, "inet dump", got, tcp, err)

	// The queue records of 300 unix listeners are about 20 KiB: three
	// 8 KiB datagrams, which must be read into the Conn's own buffer.
	// Each dump is measured alone and the median judged: TotalAlloc is the
	// whole process's, and a GC emptying the buffer pools mid-loop makes
	// one dump pay for a fresh buffer, which is not what this guards.
	const dumps = 21
	per := make([]uint64, 0, dumps)
	var before, after runtime.MemStats
	for range dumps {
		runtime.ReadMemStats(&before)
		if qs, err = c.ListenQueues(sockdiag.FamilyUnix, qs[:0]); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		per = append(per, after.TotalAlloc-before.TotalAlloc)
	}
	slices.Sort(per)
	if median := per[dumps/2]; median > 4<<10 {
		t.Errorf("a queue dump of %d listeners allocated %d bytes (median of %d; all: %v), want the request's few hundred, not a buffer per datagram", n, median, dumps, per)
	}
}

func checkInodes(t *testing.T, what string, got, want map[uint64]bool, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	for ino := range want {
		if !got[ino] {
			t.Errorf("%s: listener inode %d missing (%d of %d seen)", what, ino, len(got), len(want))
			return
		}
	}
}
