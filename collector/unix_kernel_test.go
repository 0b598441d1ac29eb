package collector

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/internal/testns"
)

func TestKernelUnixListenerFull(t *testing.T) {
	testns.Require(t)
	reg := newRealRegistry(t)
	path := filepath.Join(t.TempDir(), "fpm.sock")
	l := testns.ListenUnix(t, path, unix.SOCK_STREAM, 2)
	if n := testns.DialUnixUntilFull(t, path, unix.SOCK_STREAM, 50); n != 3 {
		t.Errorf("%d clients got in before EAGAIN, want 3 (backlog 2 holds 3)", n)
	}
	got := gather(t, reg)
	s := one(t, got, "listenq_queue_length", inodeLabel(l.Inode))
	if s.value != 3 {
		t.Errorf("queue length = %v, want 3", s.value)
	}
	want := map[string]string{"proto": "unix", "listener": path, "port": "", "netns": "", "process": readComm(t)}
	for k, v := range want {
		if s.labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, s.labels[k], v)
		}
	}
	if limit := one(t, got, "listenq_queue_limit", inodeLabel(l.Inode)).value; limit != 2 {
		t.Errorf("queue limit = %v, want 2", limit)
	}
	if e := testns.SS(t, "x", l.Inode); e.RecvQ != 3 || e.SendQ != 2 || e.Local != path {
		t.Errorf("ss says %+v, want Recv-Q 3, Send-Q 2, %s", e, path)
	}
	if n := len(find(got, "listenq_drops_total", inodeLabel(l.Inode))); n != 0 {
		t.Errorf("unix listener has %d drop series; the kernel keeps no such counter", n)
	}
}

func TestKernelUnixAbstractAndSeqpacket(t *testing.T) {
	testns.Require(t)
	reg := newRealRegistry(t)
	name := fmt.Sprintf("@listenq-test-%d", os.Getpid())
	abstract := testns.ListenUnix(t, name, unix.SOCK_STREAM, 5)
	seq := testns.ListenUnix(t, filepath.Join(t.TempDir(), "seq.sock"), unix.SOCK_SEQPACKET, 1)
	if n := testns.DialUnixUntilFull(t, seq.Path, unix.SOCK_SEQPACKET, 50); n != 2 {
		t.Errorf("seqpacket: %d clients before EAGAIN, want 2", n)
	}
	got := gather(t, reg)
	if l := one(t, got, "listenq_queue_limit", inodeLabel(abstract.Inode)); l.labels["listener"] != name || l.value != 5 {
		t.Errorf("abstract listener: %v, want listener %q limit 5", l, name)
	}
	if l := one(t, got, "listenq_queue_length", inodeLabel(seq.Inode)); l.labels["listener"] != seq.Path || l.value != 2 {
		t.Errorf("seqpacket listener: %v, want listener %q length 2", l, seq.Path)
	}
}

func TestKernelUnixRemovedSocketFileStillReported(t *testing.T) {
	testns.Require(t)
	reg := newRealRegistry(t)
	path := filepath.Join(t.TempDir(), "gone.sock")
	l := testns.ListenUnix(t, path, unix.SOCK_STREAM, 8)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if s := one(t, gather(t, reg), "listenq_queue_limit", inodeLabel(l.Inode)); s.labels["listener"] != path || s.value != 8 {
		t.Errorf("listener whose file was removed: %v, want listener %q limit 8", s, path)
	}
}
