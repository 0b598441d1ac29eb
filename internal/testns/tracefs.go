package testns

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// EnsureTracefs mounts tracefs on /sys/kernel/tracing, where tracepoints
// are looked up, when nothing is mounted there (a fresh machine), and
// unmounts it when the test ends.
func EnsureTracefs(t testing.TB) {
	t.Helper()
	const dir = "/sys/kernel/tracing"
	if _, err := os.Stat(dir + "/events"); err == nil {
		return
	}
	if err := unix.Mount("nodev", dir, "tracefs", 0, ""); err != nil {
		t.Logf("mount tracefs on %s: %v", dir, err)
		return
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}
