// Command lqapp is the program the testpods harness runs in its containers:
// it holds listeners whose accept queues are full.
//
// It listens on a TCP address and on a unix stream socket, each with the
// given backlog, and never accepts. It then connects clients to both over
// the loopback of its own network namespace until each queue is full: a TCP
// dial that times out (the kernel drops the SYN of a full listener), or a
// non-blocking unix connect that fails with EAGAIN. Both loops are bounded
// by backlog+10 connections and a few seconds. Then it prints one line
// starting with READY and sleeps until SIGTERM or SIGINT.
//
//	lqapp -tcp 127.0.0.1:8080 -tcp-backlog 4 -unix /tmp/app.sock -unix-backlog 2
//
// It is built with CGO_ENABLED=0, so it runs in an image without libc.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

const (
	// extra bounds the client loops past the backlog.
	extra = 10
	// fillTime bounds each client loop.
	fillTime = 5 * time.Second
	// dialTimeout is how long a TCP dial may take before the queue is
	// taken to be full; loopback connects take microseconds.
	dialTimeout = 300 * time.Millisecond
)

func main() {
	tcpAddr := flag.String("tcp", "", "TCP address to listen on, like 127.0.0.1:8080 (empty: none)")
	tcpBacklog := flag.Int("tcp-backlog", 4, "backlog of the TCP listener")
	unixPath := flag.String("unix", "", "path of a unix stream socket to listen on (empty: none)")
	unixBacklog := flag.Int("unix-backlog", 2, "backlog of the unix listener")
	flag.Parse()
	if *tcpAddr == "" && *unixPath == "" {
		fail(errors.New("give -tcp or -unix or both"))
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)

	var fds []int
	var conns []net.Conn
	nTCP, nUnix := 0, 0
	if *tcpAddr != "" {
		ap, err := netip.ParseAddrPort(*tcpAddr)
		if err != nil {
			fail(fmt.Errorf("-tcp: %w", err))
		}
		fd, err := listenTCP(ap, *tcpBacklog)
		if err != nil {
			fail(fmt.Errorf("listen on %s: %w", ap, err))
		}
		fds = append(fds, fd)
		c := fillTCP(ap.String(), *tcpBacklog+extra)
		conns = append(conns, c...)
		nTCP = len(c)
	}
	if *unixPath != "" {
		fd, err := listenUnix(*unixPath, *unixBacklog)
		if err != nil {
			fail(fmt.Errorf("listen on %s: %w", *unixPath, err))
		}
		fds = append(fds, fd)
		c, err := fillUnix(*unixPath, *unixBacklog+extra)
		if err != nil {
			fail(fmt.Errorf("connect to %s: %w", *unixPath, err))
		}
		fds = append(fds, c...)
		nUnix = len(c)
	}
	fmt.Printf("READY tcp=%d unix=%d\n", nTCP, nUnix)

	<-stop
	runtime.KeepAlive(conns)
	runtime.KeepAlive(fds)
	if *unixPath != "" {
		os.Remove(*unixPath)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "lqapp:", err)
	os.Exit(2)
}

// listenTCP listens with exactly backlog, which net.Listen does not allow.
func listenTCP(ap netip.AddrPort, backlog int) (int, error) {
	var sa syscall.Sockaddr
	family := syscall.AF_INET
	if ap.Addr().Is4() {
		sa = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	} else {
		family = syscall.AF_INET6
		sa = &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	if err := syscall.Listen(fd, backlog); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

func listenUnix(path string, backlog int) (int, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return -1, err
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	if err := syscall.Listen(fd, backlog); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// fillTCP dials addr until a dial times out, at most max times and for at
// most fillTime, and returns the connections that were made.
func fillTCP(addr string, max int) []net.Conn {
	var conns []net.Conn
	deadline := time.Now().Add(fillTime)
	for len(conns) < max && time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, dialTimeout)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	return conns
}

// fillUnix connects to path without blocking until connect fails with
// EAGAIN (the listener's queue is full), at most max times and for at most
// fillTime, and returns the connected sockets.
func fillUnix(path string, max int) ([]int, error) {
	var fds []int
	deadline := time.Now().Add(fillTime)
	for len(fds) < max && time.Now().Before(deadline) {
		fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return fds, err
		}
		err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
		if errors.Is(err, syscall.EAGAIN) {
			syscall.Close(fd)
			break
		}
		if err != nil {
			syscall.Close(fd)
			return fds, err
		}
		fds = append(fds, fd)
	}
	return fds, nil
}
