// Package testns runs a package's tests inside a private network namespace
// and gives them real sockets to look at: listeners with a chosen backlog,
// clients that are never accepted, and a helper process that owns a socket.
//
// TestMain calls Main. As root, Main re-executes the test binary in a new
// network namespace with only loopback up, so the tests see their own
// sockets and counters and nothing of the host; the namespace disappears
// with the process. Tests that need it call Require, which skips without
// root and fails when CI=true.
package testns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const (
	envInside = "LISTENQ_TESTNS"
	envHelper = "LISTENQ_TESTNS_HELPER"
)

// Main runs the tests, inside a private network namespace when possible,
// and returns the exit code for os.Exit.
func Main(m interface{ Run() int }) int {
	if spec := os.Getenv(envHelper); spec != "" {
		return runHelper(spec)
	}
	if os.Getenv(envInside) == "1" {
		if err := loopbackUp(); err != nil {
			fmt.Fprintln(os.Stderr, "testns: bring loopback up:", err)
			return 1
		}
		return m.Run()
	}
	if os.Geteuid() != 0 {
		return m.Run()
	}
	return Rerun(envInside, syscall.CLONE_NEWNET, "a private network namespace")
}

// Rerun runs the test binary again, with env set to 1 and in new
// namespaces (cloneflags; killed if this process dies), and returns its
// exit code; where names the namespaces for an error.
func Rerun(env string, cloneflags uintptr, where string) int {
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), env+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneflags, Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode()
	case err != nil:
		fmt.Fprintf(os.Stderr, "re-run the tests in %s: %v\n", where, err)
		return 1
	}
	return 0
}

// Inside reports whether the tests run in their own network namespace.
func Inside() bool { return os.Getenv(envInside) == "1" }

// Require skips a test that needs the private namespace when it is not
// available, and fails it instead under CI, where these tests must run.
func Require(t testing.TB) {
	t.Helper()
	if Inside() {
		return
	}
	const msg = "needs root to run in a private network namespace (run the tests as root)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true, so this is a failure, not a skip")
	}
	t.Skip(msg)
}

func loopbackUp() error {
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
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}
