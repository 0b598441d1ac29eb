package benchutil

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Sockets are made with raw syscalls: the backlog is then exactly what was
// asked for (net.Listen always asks for somaxconn), and SOCK_CLOEXEC keeps
// them out of the exporter and every other process started later (its
// owner scan would otherwise find them in its own /proc/PID/fd too).

// ListenTCP listens on 127.0.0.1:port (0: any free port) with the given
// backlog, non-blocking so that draining its queue stops at EAGAIN.
func ListenTCP(port, backlog int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// DialTCP starts a non-blocking connect to 127.0.0.1:port. On loopback
// the handshake completes within microseconds, without this process
// waiting for it.
func DialTCP(port int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		return -1, fmt.Errorf("connect to 127.0.0.1:%d: %w", port, err)
	}
	return fd, nil
}

// AcceptQueue returns a TCP listener's queue length and effective backlog
// as the kernel holds them: for a listener, TCP_INFO reports
// sk_ack_backlog as tcpi_unacked and sk_max_ack_backlog as tcpi_sacked.
// It is the same pair the exporter reads, without a netlink dump.
func AcceptQueue(fd int) (length, limit uint32, err error) {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, 0, err
	}
	return info.Unacked, info.Sacked, nil
}

// WaitQueue polls a TCP listener until its accept queue holds want
// connections.
func WaitQueue(fd int, want uint32, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n, _, err := AcceptQueue(fd)
		if err != nil {
			return err
		}
		if n == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("accept queue holds %d after %v, want %d", n, timeout, want)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// LoopbackUp sets the loopback interface of this thread's network
// namespace up; a new network namespace starts with it down.
func LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// ListenUnix opens a listening unix stream socket at name (a name starting
// with "@" is abstract) with exactly backlog, close-on-exec, and returns
// its descriptor.
func ListenUnix(name string, backlog int) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %s: %w", name, err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen %s: %w", name, err)
	}
	return fd, nil
}

// DialUnix connects a non-blocking client to the unix listener name and
// leaves it open, queued until the listener accepts it.
func DialUnix(name string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("connect to %s: %w", name, err)
	}
	return nil
}
