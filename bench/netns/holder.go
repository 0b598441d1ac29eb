package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/bench/internal/benchutil"
)

// A holder is one process per network namespace, as a pod's pause process
// is: it is started in a new network namespace (CLONE_NEWNET), brings its
// loopback up, opens the namespace's listeners and a few clients that are
// never accepted, says "ready INODE" on stdout and holds everything until
// its stdin closes. The exporter finds the namespace through the holder's
// /proc/PID/ns/net, as it finds a pod's.

// TCP and unix listeners get these backlogs in turn: small ones, as the
// servers whose queues fill have.
var (
	tcpBacklogs  = []int{4, 8, 16, 32, 64}
	unixBacklogs = []int{4, 8}
)

type holdConfig struct {
	dir                string
	index              int
	tcp, unix, clients int
	port               int
}

func (h holdConfig) args() []string {
	return []string{"hold",
		"-dir", h.dir, "-index", strconv.Itoa(h.index), "-tcp", strconv.Itoa(h.tcp), "-unix", strconv.Itoa(h.unix),
		"-clients", strconv.Itoa(h.clients), "-port", strconv.Itoa(h.port)}
}

// unixPath is the j-th unix listener of namespace i.
func unixPath(dir string, i, j int) string {
	return filepath.Join(dir, fmt.Sprintf("%d-%d.sock", i, j))
}

// holdMain is the holder process's body.
func holdMain(args []string) error {
	var h holdConfig
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	fs.StringVar(&h.dir, "dir", "", "directory for the unix sockets")
	fs.IntVar(&h.index, "index", 0, "number of this namespace, for the unix socket names")
	fs.IntVar(&h.tcp, "tcp", 5, "TCP listeners on 127.0.0.1 from -port")
	fs.IntVar(&h.unix, "unix", 2, "unix listeners in -dir")
	fs.IntVar(&h.clients, "clients", 2, "clients never accepted on the first TCP listener (and half as many, at least one, on the first unix one)")
	fs.IntVar(&h.port, "port", 8080, "first TCP port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if h.dir == "" || h.tcp < 1 || h.unix < 0 || h.clients < 0 || h.clients > tcpBacklogs[0] {
		return errors.New("hold: need -dir, -tcp >= 1, -unix >= 0 and 0 <= -clients <= 4")
	}
	if err := benchutil.LoopbackUp(); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	// Everything stays open until the process exits.
	var first int
	for i := range h.tcp {
		fd, err := benchutil.ListenTCP(h.port+i, tcpBacklogs[i%len(tcpBacklogs)])
		if err != nil {
			return fmt.Errorf("listen on 127.0.0.1:%d: %w", h.port+i, err)
		}
		if i == 0 {
			first = fd
		}
	}
	for j := range h.unix {
		if _, err := benchutil.ListenUnix(unixPath(h.dir, h.index, j), unixBacklogs[j%len(unixBacklogs)]); err != nil {
			return err
		}
	}
	// The clients stay open too; nobody ever accepts them.
	for range h.clients {
		if _, err := benchutil.DialTCP(h.port); err != nil {
			return err
		}
	}
	if h.unix > 0 {
		for range unixClients(h.clients) {
			if err := benchutil.DialUnix(unixPath(h.dir, h.index, 0)); err != nil {
				return err
			}
		}
	}
	// On loopback the handshakes end within microseconds; wait for them,
	// so that the queue the exporter reports is known.
	if err := benchutil.WaitQueue(first, uint32(h.clients), 5*time.Second); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return err
	}
	fmt.Printf("ready %d\n", st.Ino)
	// Hold until the benchmark closes stdin, or dies.
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// holder is one running holder process, seen from the benchmark.
type holder struct {
	*benchutil.Holder
	index int
	ino   uint64 // its network namespace's inode: the netns label
}

// startHolders starts n holders, a few at a time, and waits until each is
// ready. On error the ones started are stopped.
func startHolders(ctx context.Context, self string, base holdConfig, n int) ([]*holder, error) {
	return benchutil.StartHolders(n, 8, func(i int) (*holder, error) {
		hc := base
		hc.index = i
		return startHolder(ctx, self, hc)
	})
}

// startHolder starts one holder in a network namespace of its own; its
// ready line carries that namespace's inode.
func startHolder(ctx context.Context, self string, hc holdConfig) (*holder, error) {
	bh, err := benchutil.StartHolder(ctx, exec.Command(self, hc.args()...), syscall.CLONE_NEWNET, 15*time.Second)
	if err != nil {
		return nil, fmt.Errorf("holder %d: %w", hc.index, err)
	}
	h := &holder{Holder: bh, index: hc.index}
	if h.ino, err = strconv.ParseUint(bh.Ready, 10, 64); err != nil {
		h.Stop()
		return nil, fmt.Errorf("holder %d: %w", hc.index, err)
	}
	return h, nil
}

func stopHolders(hs []*holder) { benchutil.StopHolders(hs) }
