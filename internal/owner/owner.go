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
// concurrent use. Socket inodes are unique host-wide, so one Resolver serves
// every network namespace.
type Resolver struct {
	procRoot    string
	minInterval time.Duration
	// forgetAfter drops answers for inodes nobody asked about for that long,
	// so memory follows the set of live sockets.
	forgetAfter time.Duration
	now         func() time.Time
	// describe names the container of a newly resolved owner, and says
	// whether that answer is settled.
	describe func(pid int) (string, bool)
	// describeWait bounds how long an owner waits for a settled container
	// name before it is answered with what is known.
	describeWait time.Duration
	// missScans is how many scans must miss a socket before it is
	// answered as owned by nobody (""): a process may be between fork and
	// exec, or exit, during one scan. Labels are fixed once answered, so a
	// transient miss must not stick.
	missScans int

	mu       sync.Mutex
	epoch    time.Time // the first lookup's now
	owners   map[uint64]*entry
	lastScan time.Time
	scans    uint64
	// held is every socket inode the last scan saw, with its lowest pid.
	// Lookups inside the rate limit answer from it, so sockets of several
	// protocols and namespaces first seen in one scrape all get named by one
	// scan. Kept only until the next scan is allowed.
	held map[uint64]int
}

// Owner is the process holding a socket.
type Owner struct {
	Comm string
	PID  int
	// Container is what the Resolver's describe function said of PID.
	Container string
}

type entry struct {
	Owner
	// The times are since the Resolver's epoch: a node may hold tens of
	// thousands of entries, and a time.Time is three times the size.
	lastSeen time.Duration
	// unsettled is when the container name was first found unsettled.
	// Until settled, the owner is not answered, till it settles or
	// describeWait passes, since labels never change once exported.
	unsettled time.Duration
	settled   bool
	// misses counts scans that found no holder; while it is below
	// missScans the socket is pending, and is looked for again.
	misses int32
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
		missScans:   1,
	}
}

// SetMissScans makes a socket no scan finds a holder for pending until n
// scans (at most one per min interval) have missed it; 1 answers "" after
// the first.
func (r *Resolver) SetMissScans(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.missScans = max(n, 1)
}

// SetDescriber makes the Resolver name the container of each owner it
// resolves with f, once it is settled or wait has passed.
func (r *Resolver) SetDescriber(f func(pid int) (string, bool), wait time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.describe, r.describeWait = f, wait
}

// Lookup returns the owner's command name for each inode it can answer for;
// see LookupOwners.
func (r *Resolver) Lookup(inodes []uint64) map[uint64]string {
	owners := r.LookupOwners(inodes)
	out := make(map[uint64]string, len(owners))
	for ino, o := range owners {
		out[ino] = o.Comm
	}
	return out
}

// LookupOwners returns the owner of each inode it can answer for; see
// LookupAll.
func (r *Resolver) LookupOwners(inodes []uint64) map[uint64]Owner {
	out := make(map[uint64]Owner, len(inodes))
	for i, o := range r.LookupAll(inodes) {
		if o != nil {
			out[inodes[i]] = *o
		}
	}
	return out
}

// LookupAll answers for each of inodes, in their order, with its owner;
// nil while the inode is pending: it is new and the scan rate limit has not
// yet allowed a scan, or a scan missed it and it is looked for again. A
// zero Owner means the scan found no process holding it (exited, or no
// permission to read its fds). An Owner answered never changes: callers
// may keep the pointer, which is a tenth of a copy's size for a scrape's
// tens of thousands of answers.
func (r *Resolver) LookupAll(inodes []uint64) []*Owner {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if r.epoch.IsZero() {
		r.epoch = now
	}
	at := now.Sub(r.epoch)
	// One process often holds thousands of listeners (php-fpm pools,
	// nginx workers): name it, and its container, once per call.
	memo := lookupMemo{owners: map[int]Owner{}, described: map[int]described{}}
	entries := make([]*entry, len(inodes))
	var unknown []int
	for i, ino := range inodes {
		e, ok := r.owners[ino]
		switch {
		case !ok:
			unknown = append(unknown, i)
		case e.misses > 0 && int(e.misses) < r.missScans:
			e.lastSeen = at
			unknown = append(unknown, i) // look again
		default:
			e.lastSeen = at
			if !e.settled {
				r.settle(e, at, &memo)
			}
			entries[i] = e
		}
	}
	canScan := r.scans == 0 || now.Sub(r.lastScan) >= r.minInterval
	if canScan {
		r.held = nil
	}
	if len(unknown) > 0 {
		if canScan {
			r.held = scan(r.procRoot)
			r.lastScan, r.scans = now, r.scans+1
		}
		for _, i := range unknown {
			entries[i] = r.resolve(inodes[i], canScan, at, &memo)
		}
	}
	r.forget(at)

	out := make([]*Owner, len(inodes))
	for i, e := range entries {
		if e != nil && e.settled && (e.misses == 0 || int(e.misses) >= r.missScans) {
			out[i] = &e.Owner
		}
	}
	return out
}

// resolve looks for the holder of a new or missed inode in the last scan,
// and returns its entry; nil while it is pending until the next scan.
func (r *Resolver) resolve(ino uint64, scanned bool, now time.Duration, memo *lookupMemo) *entry {
	pid, ok := r.held[ino]
	switch {
	case !ok && !scanned:
		return r.owners[ino] // pending until the next scan
	case !ok:
		r.missed(ino, now)
		return r.owners[ino]
	}
	e := &entry{Owner: memo.owner(r, pid), lastSeen: now, unsettled: now}
	r.settle(e, now, memo)
	r.owners[ino] = e
	return e
}

// missed records that a scan found no holder of ino.
func (r *Resolver) missed(ino uint64, now time.Duration) {
	e := r.owners[ino]
	if e == nil {
		e = &entry{settled: true}
		r.owners[ino] = e
	}
	e.misses++
	e.lastSeen = now
}

// settle asks for the container name of e's owner again, and marks e
// settled when the answer is, or when it has waited long enough.
func (r *Resolver) settle(e *entry, now time.Duration, memo *lookupMemo) {
	if r.describe == nil || e.PID == 0 {
		e.settled = true
		return
	}
	d, seen := memo.described[e.PID]
	if !seen {
		d.name, d.ok = r.describe(e.PID)
		memo.described[e.PID] = d
	}
	name, ok := d.name, d.ok
	e.Container = name
	if ok || now-e.unsettled >= r.describeWait {
		e.settled = true
	}
}

// lookupMemo holds what one LookupOwners call learnt of each process.
type lookupMemo struct {
	owners    map[int]Owner
	described map[int]described
}

type described struct {
	name string
	ok   bool
}

func (m *lookupMemo) owner(r *Resolver, pid int) Owner {
	o, ok := m.owners[pid]
	if !ok {
		o = r.owner(pid)
		m.owners[pid] = o
	}
	return o
}

func (r *Resolver) owner(pid int) Owner {
	if pid == 0 {
		return Owner{}
	}
	comm, err := readComm(filepath.Join(r.procRoot, strconv.Itoa(pid)))
	if err != nil {
		// Exited since the scan.
		return Owner{}
	}
	return Owner{Comm: comm, PID: pid}
}

// Scans reports how many /proc scans the Resolver has made.
func (r *Resolver) Scans() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.scans
}

func (r *Resolver) forget(now time.Duration) {
	for ino, e := range r.owners {
		if now-e.lastSeen > r.forgetAfter {
			delete(r.owners, ino)
		}
	}
}

// scan walks the processes in ascending pid order and returns every socket
// inode they hold with the lowest pid holding it; with a master and its
// workers sharing a listener that is (usually) the master. PID 1 is the
// exception: with socket activation it holds every listener it passed on,
// and the process serving it is the one to name, so PID 1 is only named
// for a socket no other process holds.
func scan(procRoot string) map[uint64]int {
	held := map[uint64]int{}
	for _, pid := range pids(procRoot) {
		pidDir := filepath.Join(procRoot, strconv.Itoa(pid))
		inodes := socketInodes(filepath.Join(pidDir, "fd"))
		if len(inodes) == 0 {
			continue
		}
		if _, err := os.Stat(filepath.Join(pidDir, "comm")); err != nil {
			// Exited during the walk: a later pid may hold the same sockets.
			continue
		}
		for _, ino := range inodes {
			if first, ok := held[ino]; !ok || first == 1 {
				held[ino] = pid
			}
		}
	}
	return held
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

// socketInodes returns the socket inodes among a process's fds.
// Unreadable fd directories (permission, exited process) hold nothing.
func socketInodes(fdDir string) []uint64 {
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
		if ok {
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
