package testpods

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A few directories outside the harness's temporary directories are
// created by the daemons whatever their configuration, and never removed by
// them: containerd's shim socket directory, CNI's result cache, /run/netns
// where containerd bind-mounts the pods' namespaces, dockerd's plugin
// socket directory and the parent cgroups of pods and docker containers. They are shared by every daemon
// the harness runs at the same time, in any test binary, so only the last
// harness user to finish removes them, and only those that were not there
// before the first one started.
//
// Users coordinate with flock on sharedStatePath: each holds a shared lock
// while it runs; the first takes it exclusively for a moment and records
// which of these paths did not exist; the last takes it exclusively,
// removes those directories that are empty, and removes the file.

// sharedStatePath is the lock file and the record of the first user.
const sharedStatePath = "/run/listenq-testpods.state"

// sharedState is what the first user records.
type sharedState struct {
	Absent []string `json:"absent"` // directories to remove, children first
}

// sharedPaths are the directories the daemons may create, children first.
func sharedPaths() []string {
	paths := []string{
		"/run/netns",
		"/run/containerd/s", "/run/containerd",
		"/var/lib/cni/results", "/var/lib/cni",
		"/run/docker/plugins", "/run/docker",
	}
	for _, root := range cgroupRoots() {
		paths = append(paths,
			filepath.Join(root, "kubepods", "besteffort"), filepath.Join(root, "kubepods"),
			filepath.Join(root, "docker"))
	}
	return paths
}

// holdShared registers the caller as a user of the shared paths until the
// returned function is called; that function cleans them up if the caller
// is the last user.
func holdShared(t testing.TB) func() {
	t.Helper()
	f, err := lockShared()
	if err != nil {
		t.Fatalf("testpods: lock %s: %v", sharedStatePath, err)
	}
	return func() {
		if err := releaseShared(f); err != nil {
			t.Errorf("testpods: clean up shared paths: %v", err)
		}
	}
}

// lockShared opens the state file with a shared lock held, recording the
// state first if no one else holds it.
func lockShared() (*os.File, error) {
	for range 100 {
		f, err := os.OpenFile(sharedStatePath, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		first := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
		if !first {
			if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
				f.Close()
				return nil, err
			}
		}
		// The last user may have removed the file after this one opened
		// it: then start again with a new file.
		if !samePath(f) {
			f.Close()
			continue
		}
		if first {
			if err := recordShared(f); err != nil {
				f.Close()
				return nil, err
			}
			// The conversion drops the lock for a moment, in which a
			// last user may remove the file: then start again.
			if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
				f.Close()
				return nil, err
			}
			if !samePath(f) {
				f.Close()
				continue
			}
		}
		return f, nil
	}
	return nil, errors.New("the lock file keeps being replaced")
}

func samePath(f *os.File) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(sharedStatePath)
	return err == nil && os.SameFile(a, b)
}

func recordShared(f *os.File) error {
	var st sharedState
	for _, p := range sharedPaths() {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			st.Absent = append(st.Absent, p)
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err = f.WriteAt(b, 0)
	return err
}

// releaseShared drops the caller's lock; if no one else holds one, it
// cleans up and removes the state file.
func releaseShared(f *os.File) error {
	defer f.Close()
	// Converting the lock drops it first, so a failure leaves none.
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil || !samePath(f) {
		return nil
	}
	var errs []error
	var st sharedState
	if b, err := os.ReadFile(sharedStatePath); err == nil && len(b) > 0 {
		if err := json.Unmarshal(b, &st); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", sharedStatePath, err))
		}
	}
	for _, p := range st.Absent {
		// Only empty directories (and cgroups without children) go.
		if err := unix.Rmdir(p); err != nil && !errors.Is(err, unix.ENOENT) &&
			!errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
		}
	}
	if err := os.Remove(sharedStatePath); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// mountPoints returns the mount points of this mount namespace.
func mountPoints() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var points []string
	for line := range strings.Lines(string(b)) {
		if fields := strings.Fields(line); len(fields) >= 5 {
			points = append(points, unescapeMountinfo(fields[4]))
		}
	}
	return points
}
