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
	"time"

	"github.com/listenq/listenq_exporter/bench/internal/benchutil"
)

// A holder is one process holding a share of a shape's listeners, so that
// no process needs more than a few thousand descriptors: TCP listeners on
// 127.0.0.1, unix listeners in a directory and abstract ones, each with a
// small backlog, plus a few clients never accepted on the first listener
// of each kind. It runs in the benchmark's own network namespace, says
// "ready" on stdout and holds everything until its stdin closes.

type holdConfig struct {
	dir      string
	index    int
	tcp      int // TCP listeners on 127.0.0.1 from port
	port     int
	unixFS   int // unix listeners in dir
	abstract int // abstract unix listeners
	backlog  int
	clients  int // never accepted, on the first listener of each kind
}

func (h holdConfig) args() []string {
	return []string{"hold",
		"-dir", h.dir, "-index", strconv.Itoa(h.index),
		"-tcp", strconv.Itoa(h.tcp), "-port", strconv.Itoa(h.port),
		"-unix-fs", strconv.Itoa(h.unixFS), "-abstract", strconv.Itoa(h.abstract),
		"-backlog", strconv.Itoa(h.backlog), "-clients", strconv.Itoa(h.clients)}
}

// unixFSPath is holder i's j-th unix listener in dir.
func unixFSPath(dir string, i, j int) string {
	return filepath.Join(dir, fmt.Sprintf("h%d-%05d.sock", i, j))
}

// abstractPrefix starts the names of the abstract listeners, as the
// exporter labels them ("@" for the leading NUL byte).
const abstractPrefix = "@listenq-scale-"

// abstractName is holder i's j-th abstract unix listener.
func abstractName(i, j int) string {
	return fmt.Sprintf("%s%d-%05d", abstractPrefix, i, j)
}

// holdMain is the holder process's body.
func holdMain(args []string) error {
	var h holdConfig
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	fs.StringVar(&h.dir, "dir", "", "directory for the unix sockets")
	fs.IntVar(&h.index, "index", 0, "number of this holder, for the socket names")
	fs.IntVar(&h.tcp, "tcp", 0, "TCP listeners on 127.0.0.1 from -port")
	fs.IntVar(&h.port, "port", 20000, "first TCP port")
	fs.IntVar(&h.unixFS, "unix-fs", 0, "unix listeners in -dir")
	fs.IntVar(&h.abstract, "abstract", 0, "abstract unix listeners")
	fs.IntVar(&h.backlog, "backlog", 8, "listen backlog of every listener")
	fs.IntVar(&h.clients, "clients", 3, "clients never accepted on the first listener of each kind")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if h.dir == "" || h.tcp < 0 || h.unixFS < 0 || h.abstract < 0 || h.backlog < 1 || h.clients < 0 || h.clients > h.backlog {
		return errors.New("need -dir, counts >= 0, -backlog >= 1 and 0 <= -clients <= -backlog")
	}
	if err := benchutil.RaiseNOFILE(uint64(h.tcp+h.unixFS+h.abstract+3*h.clients) + 64); err != nil {
		return err
	}
	// Everything stays open until the process exits.
	var firstTCP = -1
	for i := range h.tcp {
		fd, err := benchutil.ListenTCP(h.port+i, h.backlog)
		if err != nil {
			return fmt.Errorf("listen on 127.0.0.1:%d: %w", h.port+i, err)
		}
		if i == 0 {
			firstTCP = fd
		}
	}
	for j := range h.unixFS {
		if _, err := benchutil.ListenUnix(unixFSPath(h.dir, h.index, j), h.backlog); err != nil {
			return err
		}
	}
	for j := range h.abstract {
		if _, err := benchutil.ListenUnix(abstractName(h.index, j), h.backlog); err != nil {
			return err
		}
	}
	for range h.clients {
		if h.tcp > 0 {
			if _, err := benchutil.DialTCP(h.port); err != nil {
				return err
			}
		}
		// A unix connect puts the client in the listener's queue at once.
		if h.unixFS > 0 {
			if err := benchutil.DialUnix(unixFSPath(h.dir, h.index, 0)); err != nil {
				return err
			}
		}
		if h.abstract > 0 {
			if err := benchutil.DialUnix(abstractName(h.index, 0)); err != nil {
				return err
			}
		}
	}
	// On loopback the handshakes end within microseconds; wait for them,
	// so that the queue the exporter reports is known.
	if firstTCP >= 0 {
		if err := benchutil.WaitQueue(firstTCP, uint32(h.clients), 5*time.Second); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	// Hold until the benchmark closes stdin, or dies.
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// holder is one running holder process, seen from the benchmark.
type holder struct {
	*benchutil.Holder
	index int
}

// startHolders starts the holders at once and waits until each is ready.
// On error the ones started are stopped.
func startHolders(ctx context.Context, self string, hcs []holdConfig) ([]*holder, error) {
	return benchutil.StartHolders(len(hcs), len(hcs), func(i int) (*holder, error) {
		bh, err := benchutil.StartHolder(ctx, exec.Command(self, hcs[i].args()...), 0, 60*time.Second)
		if err != nil {
			return nil, fmt.Errorf("holder %d: %w", hcs[i].index, err)
		}
		return &holder{Holder: bh, index: hcs[i].index}, nil
	})
}

func stopHolders(hs []*holder) { benchutil.StopHolders(hs) }
