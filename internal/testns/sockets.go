package testns

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Listener is a listening socket made with raw syscalls, so its backlog is
// exactly what the test asked for (net.Listen always asks for somaxconn).
type Listener struct {
	FD    int
	Addr  netip.AddrPort // TCP only
	Path  string         // unix only, as ss prints it
	Inode uint64
}

// ListenTCP listens on addr ("127.0.0.1:0", "[::1]:0") with the given
// backlog. The socket is closed when the test ends.
func ListenTCP(t testing.TB, addr string, backlog int, reusePort bool) *Listener {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	l, err := listenTCP(ap, backlog, reusePort)
	if err != nil {
		t.Fatalf("listen on %s with backlog %d: %v", addr, backlog, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func listenTCP(ap netip.AddrPort, backlog int, reusePort bool) (*Listener, error) {
	family := unix.AF_INET
	if ap.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	l := &Listener{FD: fd}
	if reusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			l.Close()
			return nil, err
		}
	}
	if err := unix.Bind(fd, sockaddr(ap)); err != nil {
		l.Close()
		return nil, err
	}
	if err := unix.Listen(fd, backlog); err != nil {
		l.Close()
		return nil, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		l.Close()
		return nil, err
	}
	l.Addr = addrPortOf(sa)
	if l.Inode, err = inode(fd); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Relisten calls listen() again with a new backlog, which changes the
// effective backlog of a listening socket.
func (l *Listener) Relisten(t testing.TB, backlog int) {
	t.Helper()
	if err := unix.Listen(l.FD, backlog); err != nil {
		t.Fatalf("listen again with backlog %d: %v", backlog, err)
	}
}

// Close closes the socket; closing twice is harmless.
func (l *Listener) Close() {
	if l.FD >= 0 {
		unix.Close(l.FD)
		l.FD = -1
	}
}

// Accept accepts one pending connection and closes it.
func (l *Listener) Accept(t testing.TB) {
	t.Helper()
	nfd, _, err := unix.Accept4(l.FD, unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	unix.Close(nfd)
}

// Clients is a group of client sockets, closed together.
type Clients struct {
	t   testing.TB
	fds []int
}

// NewClients returns an empty group, closed when the test ends at the
// latest.
func NewClients(t testing.TB) *Clients {
	c := &Clients{t: t}
	t.Cleanup(c.Close)
	return c
}

// DialTCP starts n non-blocking connects to addr that are never accepted;
// with a full accept queue their SYNs are dropped and retried by the kernel.
func (c *Clients) DialTCP(addr netip.AddrPort, n int) {
	c.t.Helper()
	family := unix.AF_INET
	if addr.Addr().Is6() {
		family = unix.AF_INET6
	}
	for range n {
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			c.t.Fatalf("client socket: %v", err)
		}
		c.fds = append(c.fds, fd)
		if err := unix.Connect(fd, sockaddr(addr)); err != nil && err != unix.EINPROGRESS {
			c.t.Fatalf("connect to %s: %v", addr, err)
		}
	}
}

// CloseOne closes the i-th client dialled; with abort it sends a reset
// (SO_LINGER 0), as a client that gives up does, instead of a FIN.
func (c *Clients) CloseOne(i int, abort bool) {
	c.t.Helper()
	fd := c.fds[i]
	if fd < 0 {
		return
	}
	if abort {
		if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
			c.t.Fatalf("SO_LINGER: %v", err)
		}
	}
	unix.Close(fd)
	c.fds[i] = -1
}

// Close closes every client of the group.
func (c *Clients) Close() {
	for _, fd := range c.fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	c.fds = nil
}

// DialTCP starts n never-accepted connects to addr, closed when the test
// ends.
func DialTCP(t testing.TB, addr netip.AddrPort, n int) {
	t.Helper()
	NewClients(t).DialTCP(addr, n)
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

func addrPortOf(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	return netip.AddrPort{}
}

func inode(fd int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// Eventually polls cond every 20 ms until it holds or timeout passes; then
// it fails the test with cond's last explanation.
func Eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %s", timeout, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SSEntry is what ss says of one listening socket.
type SSEntry struct {
	RecvQ, SendQ int
	Drops        int // skmem d field
	Local        string
}

var (
	ssInode = regexp.MustCompile(`\bino:(\d+)`)
	ssDrops = regexp.MustCompile(`\bskmem:\(.*\bd(\d+)\)`)
)

// SS runs `ss -Hlnme` for proto ("t" for TCP, "x" for unix) and returns the
// listener with the given inode, as the reference the exporter must agree
// with.
func SS(t testing.TB, proto string, ino uint64) SSEntry {
	t.Helper()
	out, err := exec.Command("ss", "-Hlnme"+proto).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	e, ok := parseSS(string(out), ino)
	if !ok {
		t.Fatalf("ss does not list a listener with inode %d:\n%s", ino, out)
	}
	return e
}

// parseSS finds the socket with inode ino in ss -Hlnme output. ss prints
// the skmem:(...) block on a continuation line starting with whitespace.
func parseSS(out string, ino uint64) (SSEntry, bool) {
	var records []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
			if len(records) > 0 {
				records[len(records)-1] += " " + line
			}
			continue
		}
		if line != "" {
			records = append(records, line)
		}
	}
	want := strconv.FormatUint(ino, 10)
	for _, r := range records {
		f := strings.Fields(r)
		if len(f) < 5 {
			continue
		}
		// ss -x prints Netid first and the socket inode in the Port column
		// (its ino: field is the file's inode); ss -t prints State first
		// and the socket inode as ino:.
		e := SSEntry{}
		var got string
		if strings.HasPrefix(f[0], "u_") {
			e.Local, got = f[4], f[5]
			e.RecvQ, _ = strconv.Atoi(f[2])
			e.SendQ, _ = strconv.Atoi(f[3])
		} else {
			e.Local = f[3]
			if m := ssInode.FindStringSubmatch(r); m != nil {
				got = m[1]
			}
			e.RecvQ, _ = strconv.Atoi(f[1])
			e.SendQ, _ = strconv.Atoi(f[2])
		}
		if got != want {
			continue
		}
		if d := ssDrops.FindStringSubmatch(r); d != nil {
			e.Drops, _ = strconv.Atoi(d[1])
		}
		return e, true
	}
	return SSEntry{}, false
}

// Owner is a helper process that holds a listening socket, so tests can
// check the exporter names the owning process.
type Owner struct {
	Name  string
	PID   int
	Port  uint16
	Inode uint64
	stdin io.Closer
}

// StartOwner starts a process whose command name is name and which listens
// on addr (TCP, "127.0.0.1:0") with the given backlog until the test ends.
func StartOwner(t testing.TB, name, addr string, backlog int) *Owner {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The kernel names a process after the file it was executed as, so a
	// symlink gives the helper a command name of our choosing.
	link := filepath.Join(t.TempDir(), name)
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d", envHelper, addr, backlog))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start owner process: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	o := &Owner{Name: name, PID: cmd.Process.Pid, stdin: stdin}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("owner process did not report its socket: %v", err)
	}
	if _, err := fmt.Sscanf(line, "%d %d", &o.Port, &o.Inode); err != nil {
		t.Fatalf("owner process said %q: %v", line, err)
	}
	return o
}

// runHelper is the owner process: listen, say port and inode, wait for
// stdin to close.
func runHelper(spec string) int {
	addr, backlogStr, _ := strings.Cut(spec, "|")
	backlog, err := strconv.Atoi(backlogStr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testns helper: bad spec", spec)
		return 2
	}
	l, err := listenTCP(netip.MustParseAddrPort(addr), backlog, false)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testns helper:", err)
		return 1
	}
	fmt.Printf("%d %d\n", l.Addr.Port(), l.Inode)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// ListenUnix listens on a unix socket of type typ (unix.SOCK_STREAM or
// unix.SOCK_SEQPACKET) named name: a path, or "@name" for an abstract
// socket. The socket (and its file) is removed when the test ends.
func ListenUnix(t testing.TB, name string, typ, backlog int) *Listener {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("unix socket: %v", err)
	}
	l := &Listener{FD: fd, Path: name}
	t.Cleanup(func() {
		l.Close()
		if !strings.HasPrefix(name, "@") {
			os.Remove(name)
		}
	})
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		t.Fatalf("bind %s: %v", name, err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		t.Fatalf("listen on %s with backlog %d: %v", name, backlog, err)
	}
	if l.Inode, err = inode(fd); err != nil {
		t.Fatal(err)
	}
	return l
}

// DialUnixUntilFull connects non-blocking clients to the unix listener name
// until connect fails with EAGAIN, the "Resource temporarily unavailable"
// nginx reports as a 502, and returns how many got in. It gives up after
// max clients. The clients are closed when the test ends.
func DialUnixUntilFull(t testing.TB, name string, typ, max int) int {
	t.Helper()
	for i := range max {
		fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("client socket: %v", err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: name})
		if err == unix.EAGAIN {
			return i
		}
		if err != nil {
			t.Fatalf("connect to %s: %v", name, err)
		}
	}
	t.Fatalf("%d clients connected to %s without EAGAIN", max, name)
	return max
}

// DeferAccept sets TCP_DEFER_ACCEPT: the kernel then ignores a client's bare
// handshake ACK and keeps the connection as a request socket in the SYN
// queue, which makes real half-open handshakes on loopback.
func (l *Listener) DeferAccept(t testing.TB, seconds int) {
	t.Helper()
	if err := unix.SetsockoptInt(l.FD, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, seconds); err != nil {
		t.Fatalf("TCP_DEFER_ACCEPT: %v", err)
	}
}

// DrainAccept accepts and closes every connection waiting on a listener
// made with ListenTCP, without blocking, and returns how many there were.
func (l *Listener) DrainAccept(t testing.TB) int {
	t.Helper()
	if err := unix.SetNonblock(l.FD, true); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		nfd, _, err := unix.Accept4(l.FD, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
		if err == unix.EAGAIN {
			return n
		}
		if err != nil {
			t.Fatalf("accept: %v", err)
		}
		unix.Close(nfd)
		n++
	}
}

// SynRecv counts the request sockets ss sees for a local port.
func SynRecv(t testing.TB, port uint16) int {
	t.Helper()
	out, err := exec.Command("ss", "-Htn", "state", "syn-recv", "sport", "=", fmt.Sprintf(":%d", port)).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	return strings.Count(string(out), "\n")
}
