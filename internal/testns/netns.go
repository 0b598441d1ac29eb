package testns

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Netns is another network namespace made for a test, inside the test's
// own sandbox.
type Netns struct {
	// Path opens it: /proc/PID/ns/net of the process holding it, or its
	// /run/netns bind mount.
	Path string
	// Name is its /run/netns name, "" for a namespace held by a process.
	Name string
	// PID is the process holding it, 0 for a bind mount alone.
	PID int

	cmd  *exec.Cmd
	once sync.Once
}

// NewNetns starts a process in a new network namespace with loopback up;
// the process is killed, by its PID, when the test ends, and the namespace
// goes with it.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	Require(t)
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a process in a new network namespace: %v", err)
	}
	n := &Netns{Path: fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), PID: cmd.Process.Pid, cmd: cmd}
	t.Cleanup(n.Kill)
	n.Do(t, func() {
		if err := loopbackUp(); err != nil {
			t.Fatalf("bring loopback up in %s: %v", n.Path, err)
		}
	})
	return n
}

// Kill ends the process holding the namespace (by PID) and reaps it, as
// deleting its pod would.
func (n *Netns) Kill() {
	if n.cmd == nil {
		return
	}
	n.once.Do(func() {
		_ = n.cmd.Process.Kill()
		_ = n.cmd.Wait()
	})
}

// AddNamedNetns creates a namespace with `ip netns add` under a name unique
// to this test process: a bind mount in /run/netns and no process. It is
// deleted when the test ends.
func AddNamedNetns(t testing.TB, suffix string) *Netns {
	t.Helper()
	Require(t)
	name := fmt.Sprintf("lqtest-%d-%s", os.Getpid(), suffix)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	n := &Netns{Path: filepath.Join("/run/netns", name), Name: name}
	t.Cleanup(func() { n.Delete(t) })
	n.Do(t, func() {
		if err := loopbackUp(); err != nil {
			t.Fatalf("bring loopback up in %s: %v", name, err)
		}
	})
	return n
}

// Delete removes a named namespace's bind mount (ip netns del); the
// namespace goes once nothing else holds it.
func (n *Netns) Delete(t testing.TB) {
	if n.Name == "" {
		return
	}
	if _, err := os.Stat(n.Path); err != nil {
		return
	}
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		t.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
	}
}

// Do runs fn on the calling goroutine's thread moved into the namespace:
// sockets fn creates belong to it, and /proc/thread-self/net and
// /proc/sys/net show it. If fn stops the test (t.Fatal), the thread is
// left locked and ends with the goroutine instead of going back.
func (n *Netns) Do(t testing.TB, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open(n.Path)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("enter %s: %v", n.Path, err)
	}
	fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatalf("return from %s: %v", n.Path, err)
	}
	runtime.UnlockOSThread()
}

// SetSysctl writes a sysctl such as "net/core/somaxconn" inside the
// namespace.
func (n *Netns) SetSysctl(t testing.TB, name string, value int) {
	t.Helper()
	n.Do(t, func() {
		if err := os.WriteFile(filepath.Join("/proc/sys", name), []byte(strconv.Itoa(value)), 0o644); err != nil {
			t.Fatalf("set %s in %s: %v", name, n.Path, err)
		}
	})
}

// Inode is the namespace's inode number, its netns label when it has no
// name.
func (n *Netns) Inode(t testing.TB) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(n.Path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// OwnFDs lists what the calling process's fds point to (socket:[N],
// net:[N], paths).
func OwnFDs(t testing.TB) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil {
			out = append(out, target)
		}
	}
	return out
}
