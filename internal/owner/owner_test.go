package owner

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestParseSocketLink(t *testing.T) {
	tests := []struct {
		target string
		want   uint64
		ok     bool
	}{
		{"socket:[123]", 123, true},
		{"socket:[0]", 0, true},
		{"socket:[4026531993]", 4026531993, true},
		{"socket:[18446744073709551615]", 18446744073709551615, true},
		{"socket:[18446744073709551616]", 0, false}, // overflows uint64
		{"socket:[99999999999999999999999]", 0, false},
		{"pipe:[1]", 0, false},
		{"anon_inode:[eventfd]", 0, false},
		{"/dev/null", 0, false},
		{"", 0, false},
		{"socket:[]", 0, false},
		{"socket:[12", 0, false},
		{"socket:12]", 0, false},
		{"socket:[abc]", 0, false},
		{"socket:[0x10]", 0, false},
		{"socket:[-1]", 0, false},
		{"socket:[+1]", 0, false},
		{"socket:[ 1]", 0, false},
		{"socket:[1] ", 0, false},
		{"socket:[1]]", 0, false},
		{"Socket:[1]", 0, false},
		{"/tmp/socket:[1]", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			got, ok := ParseSocketLink(tt.target)
			// The inode is meaningful only when ok.
			if ok != tt.ok || (ok && got != tt.want) {
				t.Errorf("ParseSocketLink(%q) = %d, %v; want %d, %v", tt.target, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// proc is one process of a fixture /proc tree.
type proc struct {
	pid  int
	comm string // "" means no comm file (the process exited mid-scan)
	// fds maps fd names to link targets, e.g. "3": "socket:[123]".
	fds map[string]string
	// fdDir overrides how the fd directory looks: "missing", "file" (not a
	// directory) or "dangling" (a symlink to nowhere).
	fdDir string
}

// writeProc creates /proc/PID with its fd links and comm file.
func writeProc(t testing.TB, root string, p proc) {
	t.Helper()
	pidDir := filepath.Join(root, strconv.Itoa(p.pid))
	if err := os.MkdirAll(pidDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if p.comm != "" {
		if err := os.WriteFile(filepath.Join(pidDir, "comm"), []byte(p.comm+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fdDir := filepath.Join(pidDir, "fd")
	switch p.fdDir {
	case "missing":
		return
	case "file":
		if err := os.WriteFile(fdDir, []byte("not a directory"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	case "dangling":
		if err := os.Symlink(filepath.Join(root, "does-not-exist"), fdDir); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.MkdirAll(fdDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for fd, target := range p.fds {
		if err := os.Symlink(target, filepath.Join(fdDir, fd)); err != nil {
			t.Fatal(err)
		}
	}
}

// procTree builds a fixture /proc with the given processes plus the
// non-process entries a real /proc has, which the scan must ignore.
func procTree(t testing.TB, procs ...proc) string {
	t.Helper()
	root := t.TempDir()
	for _, p := range procs {
		writeProc(t, root, p)
	}
	// Non-pid entries: a self link, a net dir, plain files, and a
	// numeric-looking file that is not a process directory.
	for _, d := range []string{"net", "sys/net/core", "1x"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "uptime"), []byte("1.0 1.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "424242"), []byte("socket:[1]"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("1", filepath.Join(root, "self")); err != nil {
		t.Fatal(err)
	}
	return root
}

func sock(ino uint64) string { return fmt.Sprintf("socket:[%d]", ino) }

// fakeClock is an injectable Resolver clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestResolver(root string, minInterval time.Duration) (*Resolver, *fakeClock) {
	clk := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	r := NewResolver(root, minInterval)
	r.now = clk.now
	return r, clk
}

func TestResolverLookup(t *testing.T) {
	root := procTree(t,
		// Lexically "10" < "100" < "9"; numerically 9 is the lowest pid.
		proc{pid: 100, comm: "php-fpm-worker", fds: map[string]string{"0": "/dev/null", "5": sock(1000)}},
		proc{pid: 10, comm: "php-fpm-child", fds: map[string]string{"5": sock(1000), "6": sock(2000)}},
		proc{pid: 9, comm: "php-fpm", fds: map[string]string{"3": sock(1000), "4": "pipe:[1000]"}},
		// A socket held twice by the same process.
		proc{pid: 50, comm: "nginx", fds: map[string]string{"6": sock(3000), "7": sock(3000), "8": "anon_inode:[eventfd]"}},
		// Non-socket links with the same number must not match.
		proc{pid: 60, comm: "cat", fds: map[string]string{"0": "pipe:[4000]", "1": "/tmp/socket:[4000]", "2": "socket:[4000"}},
		// Unreadable processes hold nothing: no fd dir, fd not a
		// directory, fd a dangling link.
		proc{pid: 2, comm: "gone", fdDir: "missing"},
		proc{pid: 3, comm: "weird", fdDir: "file"},
		proc{pid: 4, comm: "zombie", fdDir: "dangling"},
		// Holds 5000 but has no comm (exited between fd walk and comm
		// read): a later pid holding the same socket answers.
		proc{pid: 5, fds: map[string]string{"3": sock(5000)}},
		proc{pid: 70, comm: "inherited", fds: map[string]string{"3": sock(5000)}},
		// The only holder of 6000 has no comm: nobody answers.
		proc{pid: 6, fds: map[string]string{"3": sock(6000)}},
		// A regular file where a link should be.
		proc{pid: 80, comm: "fdfile", fds: map[string]string{}},
		proc{pid: 90, comm: "systemd-resolve", fds: map[string]string{"12": sock(7000)}},
	)
	if err := os.WriteFile(filepath.Join(root, "80", "fd", "3"), []byte(sock(8000)), 0o644); err != nil {
		t.Fatal(err)
	}

	r, _ := newTestResolver(root, time.Minute)
	got := r.Lookup([]uint64{1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9999})
	want := map[uint64]string{
		1000: "php-fpm",         // lowest pid of three holders
		2000: "php-fpm-child",   // only holder
		3000: "nginx",           // held twice by one process
		4000: "",                // only lookalike links
		5000: "inherited",       // lowest holder exited
		6000: "",                // only holder exited
		7000: "systemd-resolve", // comm without trailing newline
		8000: "",                // regular file, not a link
		9999: "",                // held by nobody
	}
	if !maps.Equal(got, want) {
		t.Errorf("Lookup()\n got %v\nwant %v", got, want)
	}
	if n := r.Scans(); n != 1 {
		t.Errorf("Scans() = %d, want 1", n)
	}
}

func TestResolverLookupSubtests(t *testing.T) {
	tests := []struct {
		name  string
		procs []proc
		look  []uint64
		want  map[uint64]string
		scans uint64
	}{
		{
			name:  "no inodes asked: no scan",
			procs: []proc{{pid: 1, comm: "init", fds: map[string]string{"3": sock(1)}}},
			look:  nil,
			want:  map[uint64]string{},
			scans: 0,
		},
		{
			name:  "empty proc",
			look:  []uint64{1},
			want:  map[uint64]string{1: ""},
			scans: 1,
		},
		{
			name: "duplicates in the request",
			procs: []proc{
				{pid: 1, comm: "init", fds: map[string]string{"3": sock(1)}},
				{pid: 2, comm: "sshd", fds: map[string]string{"3": sock(2)}},
			},
			look:  []uint64{2, 1, 2, 2},
			want:  map[uint64]string{1: "init", 2: "sshd"},
			scans: 1,
		},
		{
			name: "comm with spaces and trailing newline",
			procs: []proc{
				{pid: 7, comm: "Web Content", fds: map[string]string{"40": sock(77)}},
			},
			look:  []uint64{77},
			want:  map[uint64]string{77: "Web Content"},
			scans: 1,
		},
		{
			name: "large inode numbers",
			procs: []proc{
				{pid: 7, comm: "big", fds: map[string]string{"3": sock(1 << 40)}},
			},
			look:  []uint64{1 << 40},
			want:  map[uint64]string{1 << 40: "big"},
			scans: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTestResolver(procTree(t, tt.procs...), time.Minute)
			got := r.Lookup(tt.look)
			if !maps.Equal(got, tt.want) {
				t.Errorf("Lookup(%v) = %v, want %v", tt.look, got, tt.want)
			}
			if n := r.Scans(); n != tt.scans {
				t.Errorf("Scans() = %d, want %d", n, tt.scans)
			}
		})
	}
}

func TestResolverMissingProcRoot(t *testing.T) {
	r, _ := newTestResolver(filepath.Join(t.TempDir(), "no-proc"), time.Minute)
	got := r.Lookup([]uint64{1, 2})
	if want := map[uint64]string{1: "", 2: ""}; !maps.Equal(got, want) {
		t.Errorf("Lookup() = %v, want %v", got, want)
	}
}

func TestResolverUnreadableFdDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads mode 000 directories; missing and non-directory fd dirs are covered in TestResolverLookup")
	}
	root := procTree(t,
		proc{pid: 1, comm: "secret", fds: map[string]string{"3": sock(10)}},
		proc{pid: 2, comm: "visible", fds: map[string]string{"3": sock(10)}},
	)
	fd := filepath.Join(root, "1", "fd")
	if err := os.Chmod(fd, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(fd, 0o755) })
	r, _ := newTestResolver(root, time.Minute)
	if got := r.Lookup([]uint64{10}); got[10] != "visible" {
		t.Errorf("Lookup() = %v, want 10: visible", got)
	}
}

// TestResolverCaching checks that answers are remembered for the life of the
// socket: known inodes never cause a rescan, even after the rate limit has
// passed and even if /proc changed (the label is fixed once resolved).
func TestResolverCaching(t *testing.T) {
	root := procTree(t,
		proc{pid: 1, comm: "nginx", fds: map[string]string{"3": sock(100)}},
	)
	r, clk := newTestResolver(root, 10*time.Second)
	want := map[uint64]string{100: "nginx", 200: ""}
	if got := r.Lookup([]uint64{100, 200}); !maps.Equal(got, want) {
		t.Fatalf("first Lookup() = %v, want %v", got, want)
	}

	// /proc changes: pid 1 is gone, pid 2 now holds both sockets.
	if err := os.RemoveAll(filepath.Join(root, "1")); err != nil {
		t.Fatal(err)
	}
	writeProc(t, root, proc{pid: 2, comm: "haproxy", fds: map[string]string{"3": sock(100), "4": sock(200)}})

	for _, step := range []struct {
		name    string
		advance time.Duration
		look    []uint64
	}{
		{"immediately", 0, []uint64{100, 200}},
		{"after the rate limit", time.Minute, []uint64{200, 100}},
		{"subset", 5 * time.Minute, []uint64{100}},
	} {
		t.Run(step.name, func(t *testing.T) {
			clk.advance(step.advance)
			got := r.Lookup(step.look)
			for _, ino := range step.look {
				if c, ok := got[ino]; !ok || c != want[ino] {
					t.Errorf("Lookup(%v)[%d] = %q, %v; want %q (cached)", step.look, ino, c, ok, want[ino])
				}
			}
			if len(got) != len(step.look) {
				t.Errorf("Lookup(%v) = %v: extra entries", step.look, got)
			}
			if n := r.Scans(); n != 1 {
				t.Errorf("Scans() = %d, want 1: known inodes must not rescan", n)
			}
		})
	}
}

// TestResolverRateLimit checks that a new inode within minInterval of the
// last scan is pending (absent from the result), and is resolved by the
// first Lookup once minInterval has passed.
func TestResolverRateLimit(t *testing.T) {
	const minInterval = 30 * time.Second
	root := procTree(t,
		proc{pid: 1, comm: "nginx", fds: map[string]string{"3": sock(100)}},
	)
	r, clk := newTestResolver(root, minInterval)

	if got := r.Lookup([]uint64{100}); got[100] != "nginx" {
		t.Fatalf("first Lookup() = %v, want 100: nginx", got)
	}
	// A new listener appears right after the first scan.
	writeProc(t, root, proc{pid: 2, comm: "redis-server", fds: map[string]string{"6": sock(200)}})

	steps := []struct {
		name    string
		advance time.Duration // since the previous step
		want    map[uint64]string
		scans   uint64
	}{
		{"same instant: pending", 0, map[uint64]string{100: "nginx"}, 1},
		{"within minInterval: pending", 10 * time.Second, map[uint64]string{100: "nginx"}, 1},
		{"just before minInterval: pending", minInterval - 10*time.Second - time.Nanosecond, map[uint64]string{100: "nginx"}, 1},
		{"at minInterval: resolved", time.Nanosecond, map[uint64]string{100: "nginx", 200: "redis-server"}, 2},
		{"later: cached", time.Hour / 20, map[uint64]string{100: "nginx", 200: "redis-server"}, 2},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			clk.advance(s.advance)
			got := r.Lookup([]uint64{100, 200})
			if !maps.Equal(got, s.want) {
				t.Errorf("Lookup() = %v, want %v", got, s.want)
			}
			if n := r.Scans(); n != s.scans {
				t.Errorf("Scans() = %d, want %d", n, s.scans)
			}
		})
	}

	// The scan after the rate limit restarts the window: another new inode
	// right away is pending again.
	writeProc(t, root, proc{pid: 3, comm: "postgres", fds: map[string]string{"5": sock(300)}})
	clk.advance(minInterval - time.Second)
	// The previous scan was at the "at minInterval" step; the window from
	// there has passed (minInterval-1s plus the 3m of "later"), so this
	// scans.
	if got := r.Lookup([]uint64{300}); got[300] != "postgres" {
		t.Errorf("Lookup() = %v, want 300: postgres", got)
	}
	writeProc(t, root, proc{pid: 4, comm: "memcached", fds: map[string]string{"5": sock(400)}})
	clk.advance(time.Second)
	if got, ok := r.Lookup([]uint64{400})[400]; ok {
		t.Errorf("inode 400 within minInterval of the last scan resolved to %q, want pending", got)
	}
	if n := r.Scans(); n != 3 {
		t.Errorf("Scans() = %d, want 3", n)
	}
}

// TestResolverForget checks that answers for inodes nobody asked about for
// longer than forgetAfter are dropped, and that asking keeps them alive.
func TestResolverForget(t *testing.T) {
	root := procTree(t,
		proc{pid: 1, comm: "old", fds: map[string]string{"3": sock(100), "4": sock(200)}},
	)
	r, clk := newTestResolver(root, time.Second)
	forgetAfter := r.forgetAfter
	if forgetAfter <= 0 {
		t.Fatalf("forgetAfter = %v, want positive", forgetAfter)
	}

	if got := r.Lookup([]uint64{100, 200}); got[100] != "old" || got[200] != "old" {
		t.Fatalf("Lookup() = %v", got)
	}
	// 100 is asked about at half time; 200 is not.
	clk.advance(forgetAfter / 2)
	r.Lookup([]uint64{100})

	// The process is replaced; a forgotten inode resolves afresh.
	if err := os.RemoveAll(filepath.Join(root, "1")); err != nil {
		t.Fatal(err)
	}
	writeProc(t, root, proc{pid: 2, comm: "new", fds: map[string]string{"3": sock(100), "4": sock(200)}})

	// Exactly forgetAfter since 200 was last asked about: still kept.
	clk.advance(forgetAfter - forgetAfter/2)
	r.Lookup(nil)
	if _, ok := r.owners[200]; !ok {
		t.Errorf("inode 200 forgotten after exactly forgetAfter")
	}

	clk.advance(time.Nanosecond)
	r.Lookup(nil) // any Lookup expires old entries
	if _, ok := r.owners[200]; ok {
		t.Errorf("inode 200 not forgotten after forgetAfter")
	}
	if _, ok := r.owners[100]; !ok {
		t.Errorf("inode 100, asked about recently, was forgotten")
	}
	if n := len(r.owners); n != 1 {
		t.Errorf("%d entries remembered, want 1", n)
	}

	scans := r.Scans()
	got := r.Lookup([]uint64{100, 200})
	if want := map[uint64]string{100: "old", 200: "new"}; !maps.Equal(got, want) {
		t.Errorf("Lookup() = %v, want %v (100 cached, 200 resolved again)", got, want)
	}
	if n := r.Scans(); n != scans+1 {
		t.Errorf("Scans() = %d, want %d", n, scans+1)
	}
}

func TestResolverConcurrent(t *testing.T) {
	var procs []proc
	for pid := 1; pid <= 20; pid++ {
		procs = append(procs, proc{pid: pid, comm: fmt.Sprintf("p%d", pid), fds: map[string]string{"3": sock(uint64(pid))}})
	}
	root := procTree(t, procs...)
	r := NewResolver(root, 0)
	var wg sync.WaitGroup
	errs := make(chan string, 8*20)
	for g := range 8 {
		wg.Go(func() {
			for i := 1; i <= 20; i++ {
				ino := uint64((i+g)%20 + 1)
				if got := r.Lookup([]uint64{ino})[ino]; got != fmt.Sprintf("p%d", ino) {
					errs <- fmt.Sprintf("Lookup(%d) = %q", ino, got)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := r.Scans(); n < 1 || n > 20 {
		t.Errorf("Scans() = %d, want between 1 and 20 (one per distinct inode at most)", n)
	}
}

// TestResolverPrefersServerOverPID1: with socket activation PID 1 holds
// every listener it hands on; the process serving it is named, and PID 1
// only for a socket nobody else holds.
func TestResolverPrefersServerOverPID1(t *testing.T) {
	root := procTree(t,
		proc{pid: 1, comm: "systemd", fds: map[string]string{"40": sock(500), "41": sock(600)}},
		proc{pid: 812, comm: "nginx", fds: map[string]string{"3": sock(500)}},
		proc{pid: 813, comm: "nginx-worker", fds: map[string]string{"3": sock(500)}},
	)
	r, _ := newTestResolver(root, time.Minute)
	got := r.Lookup([]uint64{500, 600})
	if want := map[uint64]string{500: "nginx", 600: "systemd"}; !maps.Equal(got, want) {
		t.Errorf("Lookup() = %v, want %v", got, want)
	}
}

// TestResolverRetriesMisses: a socket no scan finds a holder for (a
// process between fork and exec, or not yet visible) stays pending and is
// looked for again, at most once per scan interval, before it is answered
// as owned by nobody; labels are fixed once answered.
func TestResolverRetriesMisses(t *testing.T) {
	root := procTree(t, proc{pid: 10, comm: "app", fds: map[string]string{"3": sock(100)}})
	r, clk := newTestResolver(root, 5*time.Second)
	r.SetMissScans(3)
	if got := r.Lookup([]uint64{100, 200}); !maps.Equal(got, map[uint64]string{100: "app"}) {
		t.Fatalf("first Lookup() = %v, want only 100: app (200 pending after one miss)", got)
	}
	// Within the scan interval: no new scan, 200 still pending.
	clk.advance(time.Second)
	if got := r.Lookup([]uint64{200}); len(got) != 0 || r.Scans() != 1 {
		t.Fatalf("Lookup() inside the interval = %v after %d scans, want pending and 1 scan", got, r.Scans())
	}
	// The holder appears; the next allowed scan names it.
	writeProc(t, root, proc{pid: 20, comm: "late", fds: map[string]string{"4": sock(200)}})
	clk.advance(5 * time.Second)
	if got := r.Lookup([]uint64{200}); !maps.Equal(got, map[uint64]string{200: "late"}) {
		t.Fatalf("after the holder appeared: %v, want 200: late", got)
	}
	// A socket nobody holds: pending for three scans, then "".
	for i := range 3 {
		clk.advance(5 * time.Second)
		got, ok := r.Lookup([]uint64{300})[300]
		if i < 2 && ok {
			t.Fatalf("scan %d: 300 answered %q, want pending until 3 scans missed it", i+1, got)
		}
		if i == 2 && (!ok || got != "") {
			t.Fatalf("after 3 missed scans: %q, %v; want \"\"", got, ok)
		}
	}
}
