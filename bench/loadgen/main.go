// Command loadgen holds TCP listeners and established loopback connections
// open, so that bench/run.sh can measure the exporter in a namespace that
// looks like a busy server.
//
// One process opens the listeners (-listeners N). Established connections
// cost two descriptors each (client and accepted side), so reaching tens of
// thousands of them under a per-process descriptor limit takes several
// processes; those take their share of the existing listeners from the
// first process (-from PID) instead of opening new ones, so the namespace
// keeps exactly N listeners however many connections are added.
//
// loadgen prints "ready" once everything is set up, then holds it until
// stdin reaches end of file, SIGTERM or SIGINT arrives or -hold expires.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type config struct {
	listeners   int
	port        int
	from        int
	connections int
	source      string
	hold        time.Duration
}

func main() {
	var c config
	flag.IntVar(&c.listeners, "listeners", 0, "number of listeners, on consecutive ports of 127.0.0.1 from -port")
	flag.IntVar(&c.port, "port", 20000, "first listener port")
	flag.IntVar(&c.from, "from", 0, "take the listeners from this process (pidfd_getfd) instead of opening them")
	flag.IntVar(&c.connections, "connections", 0, "connections to open round-robin over the listeners and accept")
	flag.StringVar(&c.source, "source", "", "source address of the client sockets, e.g. 127.0.0.2 (default: the kernel's choice)")
	flag.DurationVar(&c.hold, "hold", 10*time.Minute, "give up holding after this long, so a forgotten run cleans up after itself")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	if c.listeners < 1 || c.port < 1 || c.port+c.listeners-1 > 65535 {
		return fmt.Errorf("-listeners %d from -port %d: need at least one listener on valid ports", c.listeners, c.port)
	}
	if err := checkFDLimit(c); err != nil {
		return err
	}
	var lns []*net.TCPListener
	var err error
	if c.from != 0 {
		lns, err = takeListeners(c.from, c.port, c.listeners)
	} else {
		lns, err = openListeners(c.port, c.listeners)
	}
	if err != nil {
		return err
	}
	conns, err := connect(lns, c.connections, c.source)
	if err != nil {
		return err
	}
	fmt.Printf("ready listeners=%d connections=%d\n", len(lns), c.connections)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.hold)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	<-ctx.Done()

	for _, conn := range conns {
		// Reset rather than close, so that stopping leaves no TIME_WAIT
		// sockets behind in the namespace, which bench/run.sh measures
		// again without connections.
		_ = conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}
	for _, ln := range lns {
		ln.Close()
	}
	return nil
}

// checkFDLimit fails early with a clear message instead of deep inside
// accept with EMFILE. Go raises the soft limit to the hard one at start.
func checkFDLimit(c config) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	// A few descriptors go to stdio and the Go runtime's poller.
	need := uint64(c.listeners + 2*c.connections + 16)
	if need > lim.Cur {
		return fmt.Errorf("%d listeners and %d connections need about %d descriptors, the limit is %d: use more processes", c.listeners, c.connections, need, lim.Cur)
	}
	return nil
}

func openListeners(port, n int) ([]*net.TCPListener, error) {
	// Keepalive probes on thousands of idle sockets would be background
	// load during the measurements.
	lc := net.ListenConfig{KeepAlive: -1}
	// Go listens with MPTCP by default since 1.24; the servers whose
	// queues the exporter watches (nginx, gunicorn, php-fpm) use plain TCP.
	lc.SetMultipathTCP(false)
	lns := make([]*net.TCPListener, 0, n)
	for p := port; p < port+n; p++ {
		ln, err := lc.Listen(context.Background(), "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln.(*net.TCPListener))
	}
	return lns, nil
}

// takeListeners copies into this process the listening sockets of process
// pid bound to ports [port, port+n). The same socket then has one accept
// queue reachable from both processes; only this one accepts from it.
func takeListeners(pid, port, n int) ([]*net.TCPListener, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	byPort := map[int]*net.TCPListener{}
	for _, e := range ents {
		target, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, target, 0)
		if err != nil {
			// The descriptor was closed since ReadDir; it was not ours.
			continue
		}
		p, ok := listeningPort(fd)
		if !ok || p < port || p >= port+n || byPort[p] != nil {
			unix.Close(fd)
			continue
		}
		f := os.NewFile(uintptr(fd), "listener")
		ln, err := net.FileListener(f)
		f.Close() // FileListener holds its own duplicate.
		if err != nil {
			return nil, err
		}
		byPort[p] = ln.(*net.TCPListener)
	}
	if len(byPort) != n {
		return nil, fmt.Errorf("process %d has listeners on %d of the %d ports from %d", pid, len(byPort), n, port)
	}
	lns := make([]*net.TCPListener, 0, n)
	for p := port; p < port+n; p++ {
		lns = append(lns, byPort[p])
	}
	return lns, nil
}

// listeningPort returns the port of fd if it is a listening IPv4 TCP socket.
func listeningPort(fd int) (int, bool) {
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || v != 1 {
		return 0, false
	}
	// An MPTCP listener (IPPROTO_MPTCP) would be some other program's.
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || v != unix.IPPROTO_TCP {
		return 0, false
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, false
	}
	in4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return 0, false
	}
	return in4.Port, true
}

// dialers connect in parallel: a loopback connect is cheap, but each waits a
// scheduler round-trip for its handshake.
const dialers = 8

// connect opens n connections round-robin over lns and accepts every one of
// them, returning both ends so they stay open (a dropped net.Conn is closed
// by its finalizer).
func connect(lns []*net.TCPListener, n int, source string) ([]net.Conn, error) {
	if n == 0 {
		return nil, nil
	}
	d := net.Dialer{KeepAlive: -1, Timeout: 10 * time.Second}
	d.SetMultipathTCP(false)
	if source != "" {
		ip := net.ParseIP(source)
		if ip == nil {
			return nil, fmt.Errorf("-source %q is not an IP address", source)
		}
		d.LocalAddr = &net.TCPAddr{IP: ip}
		// Binding a source address would reserve an ephemeral port for it
		// alone; deferring the choice to connect() lets a port be reused
		// towards other destinations, as without -source.
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			})
			return errors.Join(err, serr)
		}
	}

	conns := make([]net.Conn, 2*n)
	var wg sync.WaitGroup
	// Every accepting and dialing goroutine sends at most one error.
	errc := make(chan error, len(lns)+dialers)

	// Each listener gets an accepting goroutine that knows how many
	// connections round-robin sends it.
	for i, ln := range lns {
		want := n / len(lns)
		if i < n%len(lns) {
			want++
		}
		wg.Go(func() {
			for k := range want {
				c, err := ln.AcceptTCP()
				if err != nil {
					errc <- fmt.Errorf("accept on %s: %w", ln.Addr(), err)
					return
				}
				_ = c.SetKeepAlive(false)
				conns[n+i+k*len(lns)] = c
			}
		})
	}

	var next atomic.Int64
	for range dialers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := d.Dial("tcp4", lns[i%len(lns)].Addr().String())
				if err != nil {
					errc <- err
					next.Store(int64(n)) // stop the other dialers
					return
				}
				conns[i] = c
			}
		})
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return conns, nil
	case err := <-errc:
		// Accepting goroutines may still be blocked; exiting ends them.
		return nil, err
	}
}
