package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/internal/testbin"
)

// --- the listening server ------------------------------------------------

const envServer = "LISTENQ_E2E_SERVER"

// server is a process named serverName that listens on TCP and on a unix
// socket with small backlogs and accepts nothing until told to drain.
type server struct {
	proc  *testbin.Proc
	port  uint16
	stdin io.WriteCloser
	out   *bufio.Reader
}

// startServer runs this test binary again under the name serverName (the
// kernel names a process after the file it executes, so a symlink does it).
func startServer(t *testing.T, dir, unixPath string) *server {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, serverName)
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d|%s|%d", envServer, tcpBacklog, unixPath, unixBacklog))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := testbin.StartCmd(t, cmd)
	// Closing stdin tells the server to exit (cleanups run last-in
	// first-out, so this comes before StartCmd's signals).
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-p.Done():
		case <-time.After(5 * time.Second):
		}
	})
	s := &server{proc: p, stdin: stdin, out: bufio.NewReader(stdout)}
	line := s.readLine(t, "its port")
	port, err := strconv.ParseUint(line, 10, 16)
	if err != nil {
		t.Fatalf("%s said %q, want its port", serverName, line)
	}
	s.port = uint16(port)
	return s
}

func (s *server) readLine(t *testing.T, what string) string {
	t.Helper()
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := s.out.ReadString('\n')
		ch <- result{strings.TrimSpace(line), err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s did not report %s: %v\n%s", serverName, what, r.err, s.proc.Output())
		}
		return r.line
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not report %s within 10s", serverName, what)
		return ""
	}
}

// drain makes the server accept (and close) every connection, now and from
// now on.
func (s *server) drain(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(s.stdin, "drain\n"); err != nil {
		t.Fatalf("tell %s to drain: %v", serverName, err)
	}
	if line := s.readLine(t, "that it drains"); line != "draining" {
		t.Fatalf("%s said %q, want draining", serverName, line)
	}
}

// runServer is the server process: listen with the backlogs of spec
// ("tcpBacklog|unixPath|unixBacklog"), print the TCP port, accept nothing
// until "drain" arrives on stdin, then accept everything; exit when stdin
// closes.
func runServer(spec string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "e2e server:", err)
		return 1
	}
	parts := strings.Split(spec, "|")
	if len(parts) != 3 {
		return fail(fmt.Errorf("bad spec %q", spec))
	}
	tcpBacklog, err1 := strconv.Atoi(parts[0])
	unixBacklog, err2 := strconv.Atoi(parts[2])
	if err := errors.Join(err1, err2); err != nil {
		return fail(err)
	}
	unixPath := parts[1]

	// Raw syscalls: net.Listen always asks for somaxconn.
	tcpFD, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	if err := unix.Bind(tcpFD, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fail(err)
	}
	if err := unix.Listen(tcpFD, tcpBacklog); err != nil {
		return fail(err)
	}
	sa, err := unix.Getsockname(tcpFD)
	if err != nil {
		return fail(err)
	}
	unixFD, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	if err := unix.Bind(unixFD, &unix.SockaddrUnix{Name: unixPath}); err != nil {
		return fail(err)
	}
	defer os.Remove(unixPath)
	if err := unix.Listen(unixFD, unixBacklog); err != nil {
		return fail(err)
	}
	fmt.Printf("%d\n", sa.(*unix.SockaddrInet4).Port)

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "drain" {
			for _, fd := range []int{tcpFD, unixFD} {
				go acceptAll(fd)
			}
			fmt.Println("draining")
		}
	}
	return 0
}

// acceptAll accepts and closes connections until the process exits.
func acceptAll(fd int) {
	for {
		nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
		switch err {
		case nil:
			unix.Close(nfd)
		case unix.EINTR, unix.ECONNABORTED:
		default:
			fmt.Fprintln(os.Stderr, "e2e server: accept:", err)
			return
		}
	}
}

// --- the load ------------------------------------------------------------

const (
	loadTick = 100 * time.Millisecond
	// tcpPerTick new never-accepted connects every tick: with the accept
	// queue full each SYN is dropped, and each client retransmits it after
	// 1 s, 3 s and 7 s, so the listener drops ~80 packets/s, far above the
	// 0.2/s of ListenerDroppingConnections.
	tcpPerTick = 2
	// maxTCPClients bounds the open client sockets; the oldest is closed
	// (ending its retransmits) when a new one would exceed it.
	maxTCPClients = 300
	// maxUnixClients bounds the unix clients; a full unix queue holds
	// unixBacklog+1 of them and refuses the rest with EAGAIN.
	maxUnixClients = 16
)

// load keeps the server's TCP queue overflowing and its unix queue full
// until stopped or maxDuration passes, whichever comes first.
type load struct {
	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	mu                                 sync.Mutex
	err                                error
	tcpDials, unixConnected, unixAgain int
}

func startLoad(t *testing.T, tcp netip.AddrPort, unixPath string, maxDuration time.Duration) *load {
	l := &load{quit: make(chan struct{}), done: make(chan struct{})}
	go l.run(tcp, unixPath, maxDuration)
	t.Cleanup(l.stop)
	return l
}

func (l *load) run(tcp netip.AddrPort, unixPath string, maxDuration time.Duration) {
	defer close(l.done)
	var tcpFDs, unixFDs []int
	defer func() {
		for _, fd := range append(tcpFDs, unixFDs...) {
			unix.Close(fd)
		}
	}()
	tcpAddr := &unix.SockaddrInet4{Port: int(tcp.Port()), Addr: tcp.Addr().As4()}
	tick := time.NewTicker(loadTick)
	defer tick.Stop()
	timeout := time.NewTimer(maxDuration)
	defer timeout.Stop()
	for {
		for range tcpPerTick {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				l.fail(fmt.Errorf("tcp client socket: %w", err))
				return
			}
			tcpFDs = append(tcpFDs, fd)
			if err := unix.Connect(fd, tcpAddr); err != nil && err != unix.EINPROGRESS {
				l.fail(fmt.Errorf("connect to %s: %w", tcp, err))
				return
			}
			l.count(&l.tcpDials)
			if len(tcpFDs) > maxTCPClients {
				unix.Close(tcpFDs[0])
				tcpFDs = tcpFDs[1:]
			}
		}
		// Keep the unix queue full: connect until EAGAIN.
		for len(unixFDs) < maxUnixClients {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				l.fail(fmt.Errorf("unix client socket: %w", err))
				return
			}
			err = unix.Connect(fd, &unix.SockaddrUnix{Name: unixPath})
			if err == unix.EAGAIN {
				unix.Close(fd)
				l.count(&l.unixAgain)
				break
			}
			unixFDs = append(unixFDs, fd)
			if err != nil {
				l.fail(fmt.Errorf("connect to %s: %w", unixPath, err))
				return
			}
			l.count(&l.unixConnected)
		}
		select {
		case <-l.quit:
			return
		case <-timeout.C:
			return
		case <-tick.C:
		}
	}
}

func (l *load) count(n *int) {
	l.mu.Lock()
	*n++
	l.mu.Unlock()
}

func (l *load) fail(err error) {
	l.mu.Lock()
	l.err = err
	l.mu.Unlock()
}

func (l *load) error() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func (l *load) stats() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%d tcp connects, %d unix connects admitted, %d refused with EAGAIN", l.tcpDials, l.unixConnected, l.unixAgain)
}

// stop ends the load and closes every client socket.
func (l *load) stop() {
	l.stopOnce.Do(func() { close(l.quit) })
	<-l.done
}

// --- small helpers ---------------------------------------------------------

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second}
