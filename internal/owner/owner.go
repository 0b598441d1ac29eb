// Package owner maps socket inodes to the command name of the process that
// holds them, by reading /proc/PID/fd.
//
// Scanning every process's fds is the expensive part (a readlink per fd), so
// the Resolver remembers each answer for the life of the socket and scans
// only when a socket it has not seen appears, at most once per MinInterval.
package owner

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Resolver answers "which process owns socket inode N". It is safe for
// concurrent use.
type Resolver struct {
	procRoot    string
	minInterval time.Duration
	// forgetAfter drops answers for inodes nobody asked about for that long,
	// so memory follows the set of live sockets.
	forgetAfter time.Duration
	now         func() time.Time

	mu       sync.Mutex
	owners   map[uint64]*entry
	lastScan time.Time
	scans    uint64
}

type entry struct {
	comm     string
	lastSeen time.Time
}

// NewResolver returns a Resolver reading procfs at procRoot that scans at most
// once per minInterval.
func NewResolver(procRoot string, minInterval time.Duration) *Resolver {
	return &Resolver{
		procRoot:    procRoot,
		minInterval: minInterval,
		forgetAfter: 10 * time.Minute,
		now:         time.Now,
		owners:      map[uint64]*entry{},
	}
}

// Sibling returns a Resolver with the same settings and its own cache and
// rate limit. Each source of listeners (protocol and namespace) gets its
// own, so two collectors that find new sockets in the same scrape do not
// keep each other waiting.
func (r *Resolver) Sibling() *Resolver {
	s := NewResolver(r.procRoot, r.minInterval)
	s.forgetAfter, s.now = r.forgetAfter, r.now
	return s
}

// Lookup returns the owner's command name for each inode it can answer for;
// "" means the scan found no process holding it (exited, or no permission to
// read its fds). Inodes absent from the result are pending: they are new and
// the scan rate limit has not yet allowed a scan.
func (r *Resolver) Lookup(inodes []uint64) map[uint64]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	var unknown []uint64
	for _, ino := range inodes {
		if e, ok := r.owners[ino]; ok {
			e.lastSeen = now
		} else {
			unknown = append(unknown, ino)
		}
	}
	if len(unknown) > 0 && (r.scans == 0 || now.Sub(r.lastScan) >= r.minInterval) {
		found := scan(r.procRoot, unknown)
		r.lastScan, r.scans = now, r.scans+1
		for _, ino := range unknown {
			r.owners[ino] = &entry{comm: found[ino], lastSeen: now}
		}
	}
	r.forget(now)

	out := make(map[uint64]string, len(inodes))
	for _, ino := range inodes {
		if e, ok := r.owners[ino]; ok {
			out[ino] = e.comm
		}
	}
	return out
}

// Scans reports how many /proc scans the Resolver has made.
func (r *Resolver) Scans() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.scans
}

func (r *Resolver) forget(now time.Time) {
	for ino, e := range r.owners {
		if now.Sub(e.lastSeen) > r.forgetAfter {
			delete(r.owners, ino)
		}
	}
}

// scan walks the processes in ascending pid order and returns the command
// name of the lowest pid holding each wanted inode; with a master and its
// workers sharing a listener that is (usually) the master. It stops as soon
// as every inode is found.
func scan(procRoot string, wanted []uint64) map[uint64]string {
	want := make(map[uint64]bool, len(wanted))
	for _, ino := range wanted {
		want[ino] = true
	}
	found := make(map[uint64]string, len(wanted))
	for _, pid := range pids(procRoot) {
		pidDir := filepath.Join(procRoot, strconv.Itoa(pid))
		held := socketInodes(filepath.Join(pidDir, "fd"), want)
		if len(held) == 0 {
			continue
		}
		comm, err := readComm(pidDir)
		if err != nil {
			// The process exited between the fd walk and now; its sockets
			// may still be held by a later pid.
			continue
		}
		for _, ino := range held {
			found[ino] = comm
			delete(want, ino)
		}
		if len(want) == 0 {
			break
		}
	}
	return found
}

func pids(procRoot string) []int {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() {
			out = append(out, pid)
		}
	}
	slices.Sort(out)
	return out
}

// socketInodes returns the wanted socket inodes among a process's fds.
// Unreadable fd directories (permission, exited process) hold nothing.
func socketInodes(fdDir string, want map[uint64]bool) []uint64 {
	d, err := os.Open(fdDir)
	if err != nil {
		return nil
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil
	}
	var held []uint64
	for _, n := range names {
		target, err := os.Readlink(filepath.Join(fdDir, n))
		if err != nil {
			continue
		}
		ino, ok := ParseSocketLink(target)
		if ok && want[ino] && !slices.Contains(held, ino) {
			held = append(held, ino)
		}
	}
	return held
}

// ParseSocketLink parses an fd link target of the form "socket:[12345]".
func ParseSocketLink(target string) (uint64, bool) {
	rest, ok := strings.CutPrefix(target, "socket:[")
	if !ok {
		return 0, false
	}
	num, ok := strings.CutSuffix(rest, "]")
	if !ok {
		return 0, false
	}
	ino, err := strconv.ParseUint(num, 10, 64)
	return ino, err == nil
}

func readComm(pidDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(pidDir, "comm"))
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}
