package owner

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

const (
	benchProcs     = 500
	benchFDsPerPid = 200
)

// benchTree builds a synthetic /proc of benchProcs processes with
// benchFDsPerPid fds each: stdio, a few pipes and files, the rest sockets
// with distinct inodes. Process p's socket fd f has inode p*1_000_000+f.
func benchTree(b *testing.B) string {
	b.Helper()
	root := b.TempDir()
	for p := 1; p <= benchProcs; p++ {
		pidDir := filepath.Join(root, strconv.Itoa(p))
		fdDir := filepath.Join(pidDir, "fd")
		if err := os.MkdirAll(fdDir, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pidDir, "comm"), fmt.Appendf(nil, "proc%d\n", p), 0o644); err != nil {
			b.Fatal(err)
		}
		for f := range benchFDsPerPid {
			var target string
			switch {
			case f < 3:
				target = "/dev/null"
			case f%10 == 3:
				target = fmt.Sprintf("pipe:[%d]", p*1_000_000+f)
			case f%10 == 4:
				target = "/var/log/app.log"
			default:
				target = sock(benchInode(p, f))
			}
			if err := os.Symlink(target, filepath.Join(fdDir, strconv.Itoa(f))); err != nil {
				b.Fatal(err)
			}
		}
	}
	return root
}

func benchInode(pid, fd int) uint64 { return uint64(pid*1_000_000 + fd) }

// BenchmarkResolverScan measures one /proc scan of benchProcs x
// benchFDsPerPid fds, the cost a scrape pays when a new listener appears.
func BenchmarkResolverScan(b *testing.B) {
	root := benchTree(b)
	cases := []struct {
		name     string
		wanted   []uint64
		want     string // expected owner of wanted[0]
		fullWalk bool   // the scan reads every fd
	}{
		// Nobody holds it: the scan walks every fd of every process.
		{"miss", []uint64{1}, "", true},
		// Held by the highest pid: also a full walk, plus one comm read.
		{"last-pid", []uint64{benchInode(benchProcs, 199)}, fmt.Sprintf("proc%d", benchProcs), true},
		// Held by the lowest pid: the scan stops at the first process.
		{"first-pid", []uint64{benchInode(1, 5)}, "proc1", false},
		// Several new listeners across the tree, one of them unheld.
		{"mixed", []uint64{benchInode(250, 50), benchInode(1, 5), benchInode(499, 7), 2}, "proc250", true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				// A fresh Resolver per iteration so every Lookup scans.
				r := NewResolver(root, time.Minute)
				got := r.Lookup(c.wanted)
				if got[c.wanted[0]] != c.want {
					b.Fatalf("Lookup(%d) = %q, want %q", c.wanted[0], got[c.wanted[0]], c.want)
				}
			}
			if c.fullWalk {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(benchProcs*benchFDsPerPid), "ns/fd")
			}
		})
	}
}
