package netns

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// Sources says where to look for network namespaces.
type Sources struct {
	// ProcRoot is the host's procfs; every process's ns/net is a namespace.
	ProcRoot string
	// NamedDir holds the bind mounts of `ip netns` (and of CNI under
	// containerd): /run/netns under the host's root. Their names become
	// netns labels.
	NamedDir string
	// OtherDirs hold more bind mounts whose names mean nothing to users
	// (docker's /var/run/docker/netns).
	OtherDirs []string
}

// Found is one network namespace discovery saw.
type Found struct {
	Key Key
	// Path opens the namespace: a bind mount when there is one (it
	// outlives processes), else a process's ns/net.
	Path string
	// Name is its /run/netns name, "" when it has none.
	Name string
	// PIDs are the processes in it, ascending.
	PIDs []int
}

// Scan is the outcome of one discovery pass.
type Scan struct {
	Found []Found
	// Denied counts processes whose namespace could not be read for lack of
	// privilege (another user's process without CAP_SYS_PTRACE).
	Denied int
}

// Discover lists the network namespaces of the host, deduplicated by Key.
func Discover(src Sources) (Scan, error) {
	nsfsDev, err := nsfsDevice(src.ProcRoot)
	if err != nil {
		return Scan{}, err
	}
	byKey := map[Key]*Found{}
	var scan Scan
	add := func(k Key) *Found {
		f := byKey[k]
		if f == nil {
			f = &Found{Key: k}
			byKey[k] = f
		}
		return f
	}
	for _, m := range bindMounts(src.NamedDir, nsfsDev) {
		f := add(m.key)
		f.Path = m.path
		if f.Name == "" || m.name < f.Name {
			f.Name = m.name
		}
	}
	for _, dir := range src.OtherDirs {
		for _, m := range bindMounts(dir, nsfsDev) {
			if f := add(m.key); f.Path == "" {
				f.Path = m.path
			}
		}
	}
	ents, err := os.ReadDir(src.ProcRoot)
	if err != nil {
		return Scan{}, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		path := filepath.Join(src.ProcRoot, e.Name(), "ns", "net")
		k, err := KeyOf(path)
		switch {
		case errors.Is(err, fs.ErrPermission):
			scan.Denied++
			continue
		case err != nil:
			// Exited, or a kernel thread: nothing to read.
			continue
		}
		f := add(k)
		if f.Path == "" {
			f.Path = path
		}
		f.PIDs = append(f.PIDs, pid)
	}
	for _, f := range byKey {
		slices.Sort(f.PIDs)
		scan.Found = append(scan.Found, *f)
	}
	slices.SortFunc(scan.Found, func(a, b Found) int {
		if a.Key.Ino != b.Key.Ino {
			return compareU64(a.Key.Ino, b.Key.Ino)
		}
		return compareU64(a.Key.Dev, b.Key.Dev)
	})
	return scan, nil
}

func compareU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// nsfsDevice is the device of the namespace filesystem: a bind mount of a
// namespace has it, a stale file left in /run/netns does not.
func nsfsDevice(procRoot string) (uint64, error) {
	k, err := KeyOf(filepath.Join(procRoot, "self", "ns", "net"))
	if err != nil {
		return 0, err
	}
	return k.Dev, nil
}

type bindMount struct {
	name, path string
	key        Key
}

func bindMounts(dir string, nsfsDev uint64) []bindMount {
	if dir == "" {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []bindMount
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		k, err := KeyOf(path)
		if err != nil || k.Dev != nsfsDev {
			continue
		}
		out = append(out, bindMount{e.Name(), path, k})
	}
	return out
}
