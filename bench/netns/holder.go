package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
		if _, err := listenUnix(unixPath(h.dir, h.index, j), unixBacklogs[j%len(unixBacklogs)]); err != nil {
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
			if err := dialUnix(unixPath(h.dir, h.index, 0)); err != nil {
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

// Sockets are made with raw syscalls and SOCK_CLOEXEC, as benchutil's
// are: the backlog is then exactly what was asked for, and they stay out
// of every process started later.

func listenUnix(path string, backlog int) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %s: %w", path, err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen %s: %w", path, err)
	}
	return fd, nil
}

func dialUnix(path string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("connect to %s: %w", path, err)
	}
	return nil
}

// holder is one running holder process, seen from the benchmark.
type holder struct {
	index  int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *benchutil.TailBuffer
	ino    uint64 // its network namespace's inode: the netns label
	done   chan struct{}
}

// startHolders starts n holders, a few at a time, and waits until each is
// ready. On error the ones started are stopped.
func startHolders(ctx context.Context, self string, base holdConfig, n int) ([]*holder, error) {
	hs := make([]*holder, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(8, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				hc := base
				hc.index = i
				hs[i], errs[i] = startHolder(ctx, self, hc)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		stopHolders(hs)
		return nil, err
	}
	return hs, nil
}

func startHolder(ctx context.Context, self string, hc holdConfig) (*holder, error) {
	cmd := exec.Command(self, hc.args()...)
	// A new network namespace; killed if this process dies (and with it
	// the PID namespace, whose init this process is).
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	// One P keeps the idle holder at a few threads.
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	h := &holder{index: hc.index, cmd: cmd, stderr: benchutil.NewTailBuffer(4 << 10), done: make(chan struct{})}
	cmd.Stderr = h.stderr
	var err error
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
		// Nothing more is written; read to EOF (the holder's exit), then
		// reap it: Wait must follow the last read of the pipe.
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		close(h.done)
	}()
	var l string
	select {
	case l = <-line:
	case <-time.After(15 * time.Second):
	case <-ctx.Done():
	}
	f := strings.Fields(l)
	if len(f) != 2 || f[0] != "ready" {
		h.stop()
		return nil, fmt.Errorf("holder %d not ready: %q %s", hc.index, l, h.stderr.String())
	}
	if h.ino, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		h.stop()
		return nil, fmt.Errorf("holder %d: %w", hc.index, err)
	}
	return h, nil
}

func (h *holder) pid() int { return h.cmd.Process.Pid }

// stop closes the holder's stdin, which ends it; KILL after two seconds.
func (h *holder) stop() {
	_ = h.stdin.Close()
	select {
	case <-h.done:
	case <-time.After(2 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
	}
}

func stopHolders(hs []*holder) {
	var wg sync.WaitGroup
	for _, h := range hs {
		if h == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); h.stop() }()
	}
	wg.Wait()
}
