package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/bench/internal/benchutil"
)

// Every socket here is made with raw syscalls and SOCK_CLOEXEC, as
// benchutil's are: the backlog is then exactly what was asked for
// (net.Listen always asks for somaxconn), and the exporter, started by this
// process, inherits none of the thousands of descriptors (its owner scan
// would otherwise find them in its own /proc/PID/fd too).

// fdSet is a group of descriptors closed together.
type fdSet []int

func (s *fdSet) closeAll() {
	for _, fd := range *s {
		unix.Close(fd)
	}
	*s = nil
}

// openTCPListeners listens on n consecutive ports of 127.0.0.1 from port,
// with nginx's default backlog.
func openTCPListeners(port, n int) (fdSet, error) {
	fds := make(fdSet, 0, n)
	for p := port; p < port+n; p++ {
		fd, err := benchutil.ListenTCP(p, 511)
		if err != nil {
			fds.closeAll()
			return nil, fmt.Errorf("listen on 127.0.0.1:%d: %w", p, err)
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

// openUnix fills the namespace with unix sockets: named listeners (files
// in dir, as php-fpm's or gunicorn's) and socketpairs, which are never
// listeners but which the kernel still walks through on every unix_diag
// dump, as it does the connected sockets of a real host.
func openUnix(dir string, named, pairs int) (fdSet, error) {
	fds := make(fdSet, 0, named+2*pairs)
	for i := range named {
		path := filepath.Join(dir, fmt.Sprintf("l%05d.sock", i))
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			fds = append(fds, fd)
			err = unix.Bind(fd, &unix.SockaddrUnix{Name: path})
		}
		if err == nil {
			err = unix.Listen(fd, 511)
		}
		if err != nil {
			fds.closeAll()
			return nil, fmt.Errorf("unix listener %s: %w", path, err)
		}
	}
	for range pairs {
		p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fds.closeAll()
			return nil, fmt.Errorf("socketpair: %w", err)
		}
		fds = append(fds, p[0], p[1])
	}
	return fds, nil
}

// removeSocketFiles removes what openUnix bound in dir; closing a unix
// listener leaves its file behind.
func removeSocketFiles(dir string) error {
	matches, err := filepath.Glob(filepath.Join(dir, "l*.sock"))
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range matches {
		errs = append(errs, os.Remove(m))
	}
	return errors.Join(errs...)
}

func inode(fd int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

func localPort(fd int) (int, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, err
	}
	in4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return 0, fmt.Errorf("getsockname: %T, want IPv4", sa)
	}
	return in4.Port, nil
}

// dialTCP starts n non-blocking connects to 127.0.0.1:port (see
// benchutil.DialTCP).
func dialTCP(port, n int) (fdSet, error) {
	fds := make(fdSet, 0, n)
	for range n {
		fd, err := benchutil.DialTCP(port)
		if err != nil {
			fds.closeAll()
			return nil, err
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

// drainAccept accepts and closes every connection waiting on the
// non-blocking listener fd, up to limit, and returns how many there were.
func drainAccept(fd, limit int) (int, error) {
	for n := 0; n < limit; n++ {
		nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
		if errors.Is(err, unix.EAGAIN) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("accept: %w", err)
		}
		unix.Close(nfd)
	}
	return limit, fmt.Errorf("still connections to accept after %d", limit)
}
