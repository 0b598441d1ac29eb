// Package testpods starts real container runtimes for tests and runs real
// pods and containers in them whose processes hold saturated listeners.
//
// StartContainerd runs containerd with its CRI plugin, StartDocker runs
// dockerd, each in a private network namespace of its own and with all its
// state in a temporary directory. Containerd.RunPod runs a Kubernetes-style
// pod through the CRI API (with the kubelet's cgroup layout
// /kubepods/besteffort/pod<uid>/<container id>); Docker.Run runs a container
// through the Engine API. Their processes run the app program
// (./lqapp, see App), which listens with a given backlog on TCP and on a
// unix socket and fills both queues over the loopback of its own network
// namespace. Nothing is pulled: the one image, busybox plus the app, is made
// from this machine's /bin/busybox (Debian's busybox-static) and the app
// built with CGO_ENABLED=0.
//
// Everything a test starts or creates is removed in its t.Cleanup, even when
// it fails: pods and containers through the runtime, then the daemons
// (ended by their PIDs), shims and container processes left behind (by
// PID), mounts, the private network namespaces and the temporary
// directories (/tmp/lqc*, /tmp/lqd*). Outside them the daemons create the
// pods' namespace bind mounts /run/netns/cni-*, the cgroups
// /kubepods/besteffort/pod<uid>/... and /docker/<id>, CNI result files in
// /var/lib/cni/results and shim sockets in /run/containerd/s; the harness
// removes what is left of those of its pods and containers, and the last
// harness user running (in any test binary; they coordinate through the
// lock file /run/listenq-testpods.state) removes the shared parent
// directories and cgroups that did not exist before the first started.
//
// The app and the image are built once per test binary, which must run its
// tests through Wrap so they are removed at the end:
//
//	func TestMain(m *testing.M) { os.Exit(testpods.Wrap(m).Run()) }
//
// or, with the project's private network namespace,
//
//	func TestMain(m *testing.M) { os.Exit(testns.Main(testpods.Wrap(m))) }
//
// The harness works both from the host's network namespace and from a
// private one: the daemons are started with nsenter --net into namespaces of
// their own, and all their sockets are unix sockets on the file system.
// It needs root and the tools of Debian's containerd, runc,
// containernetworking-plugins, docker.io, busybox-static, iproute2 and
// util-linux; without them a test is skipped, or fails when CI=true.
package testpods

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/internal/testbin"
)

// AppPath is where the app program is in the image.
const AppPath = "/lqapp"

// Image is the reference of the image pods and containers run: a busybox
// root file system (/bin/busybox and a symlink per applet in /bin) with the
// app at AppPath. Its entrypoint sleeps, so it also serves as the pod
// sandbox ("pause") image.
const Image = "listenq.test/testpods:v1"

// readyWord starts the line the app prints once its queues are full.
const readyWord = "READY"

const (
	startTimeout = 60 * time.Second // a daemon answering on its socket
	readyTimeout = 30 * time.Second // a container or process printing READY
	stopTimeout  = 20 * time.Second // a daemon exiting after SIGTERM
	cmdTimeout   = 30 * time.Second // a tool (nsenter, ss, ctr, unshare)
)

// App describes the listeners the app program holds. Zero TCP or Unix
// means none of that kind; the app needs at least one.
type App struct {
	TCP         string // address to listen on, like "127.0.0.1:8080"
	TCPBacklog  int    // backlog of the TCP listener
	Unix        string // path of the unix stream socket to listen on
	UnixBacklog int    // backlog of the unix listener
}

// Args returns the app's command-line flags for a.
func (a App) Args() []string {
	var args []string
	if a.TCP != "" {
		args = append(args, "-tcp", a.TCP, "-tcp-backlog", strconv.Itoa(a.TCPBacklog))
	}
	if a.Unix != "" {
		args = append(args, "-unix", a.Unix, "-unix-backlog", strconv.Itoa(a.UnixBacklog))
	}
	return args
}

// Command returns the command that runs the app with a in a container.
func (a App) Command() []string { return append([]string{AppPath}, a.Args()...) }

// Wrap returns m with a Run that runs the tests and then removes the app
// binary and image files built for them. TestMain hands it to testns.Main
// or calls its Run itself.
func Wrap(m interface{ Run() int }) interface{ Run() int } { return wrapper{m} }

type wrapper struct{ m interface{ Run() int } }

func (w wrapper) Run() int {
	wrapped.Store(true)
	code := w.m.Run()
	if built.files.dir != "" {
		if err := os.RemoveAll(built.files.dir); err != nil {
			fmt.Fprintln(os.Stderr, "testpods: remove the app and image files:", err)
		}
	}
	return code
}

// files are what is built once per test binary.
type files struct {
	dir    string // holds the others; removed by Wrap's Run
	app    string // the app, built for this machine
	oci    string // OCI image layout tar, for ctr images import
	rootfs string // root file system tar, for the Engine API's image import
}

var (
	wrapped atomic.Bool // set by Wrap's Run before any test runs

	built struct {
		once  sync.Once
		files files
		err   error
	}
)

// AppBinary returns the path of the app program on the host, for running
// it outside containers (see StartNsenterProcess).
func AppBinary(t testing.TB) string {
	t.Helper()
	return buildFiles(t).app
}

// buildFiles builds the app and the image the first time a test asks.
func buildFiles(t testing.TB) files {
	t.Helper()
	if !wrapped.Load() {
		t.Fatal("testpods: TestMain must run the tests through testpods.Wrap, which removes the app and image files afterwards")
	}
	built.once.Do(func() { built.err = buildArtifacts(&built.files) })
	if built.err != nil {
		t.Fatalf("testpods: build the app and image: %v", built.err)
	}
	return built.files
}

func buildArtifacts(art *files) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return errors.New("the tests do not run inside a Go module (go env GOMOD is empty)")
	}
	dir, err := os.MkdirTemp("", "listenq-testpods-")
	if err != nil {
		return err
	}
	art.dir = dir
	art.app = filepath.Join(dir, "lqapp")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", art.app, "./internal/testpods/lqapp")
	cmd.Dir = filepath.Dir(mod)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build the app: %w\n%s", err, out)
	}
	layer, err := rootfsTar(ctx, art.app)
	if err != nil {
		return fmt.Errorf("make the root file system: %w", err)
	}
	art.rootfs = filepath.Join(dir, "rootfs.tar")
	if err := os.WriteFile(art.rootfs, layer, 0o600); err != nil {
		return err
	}
	oci, err := ociArchive(layer)
	if err != nil {
		return fmt.Errorf("make the OCI image: %w", err)
	}
	art.oci = filepath.Join(dir, "image-oci.tar")
	return os.WriteFile(art.oci, oci, 0o600)
}

// requireRoot skips the test without root, or fails it when CI=true.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	const msg = "testpods needs root to run containerd and dockerd"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true, so this is a failure, not a skip)")
	}
	t.Skip(msg + "; skipping. With CI=true this fails.")
}

// tool is a program the harness runs and the Debian package that has it.
type tool struct{ name, pkg string }

var (
	baseTools = []tool{
		{"go", "golang-go"},
		{"nsenter", "util-linux"},
		{"unshare", "util-linux"},
		{"ip", "iproute2"},
		{"ss", "iproute2"},
		{"runc", "runc"},
		{"containerd", "containerd"},
		{"containerd-shim-runc-v2", "containerd"},
	}
	// busybox must be the static build: the image has no libc.
	busyboxPath = "/bin/busybox"
	cniDir      = "/usr/lib/cni"
)

// requireTools checks root, the base tools, busybox and extra, and
// returns the path of each by name.
func requireTools(t testing.TB, extra ...tool) map[string]string {
	t.Helper()
	requireRoot(t)
	paths := map[string]string{}
	for _, tl := range append(slices.Clone(baseTools), extra...) {
		paths[tl.name] = testbin.RequireTool(t, tl.name, tl.pkg)
	}
	if err := checkStatic(busyboxPath); err != nil {
		msg := fmt.Sprintf("%s: %v", busyboxPath, err)
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; the test command installs it: apt-get install busybox-static (CI=true, so this is a failure, not a skip)", msg)
		}
		t.Skipf("%s (apt-get install busybox-static); skipping. With CI=true this fails.", msg)
	}
	return paths
}

// checkStatic reports an error unless path is a statically linked ELF
// executable (one without a PT_INTERP program header).
func checkStatic(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var hdr [64]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return fmt.Errorf("read ELF header: %w", err)
	}
	if string(hdr[:4]) != "\x7fELF" || hdr[4] != 2 || hdr[5] != 1 {
		return errors.New("not a 64-bit little-endian ELF file")
	}
	le := func(b []byte) uint64 {
		var v uint64
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		return v
	}
	phoff, phentsize, phnum := le(hdr[32:40]), le(hdr[54:56]), le(hdr[56:58])
	ph := make([]byte, phentsize)
	for i := range phnum {
		if _, err := f.ReadAt(ph, int64(phoff+i*phentsize)); err != nil {
			return fmt.Errorf("read program header: %w", err)
		}
		if le(ph[0:4]) == 3 { // PT_INTERP
			return errors.New("dynamically linked; the image needs the static build")
		}
	}
	return nil
}

// onOverlay reports whether dir is on overlayfs, where overlay mounts
// (containerd's overlayfs snapshotter, docker's overlay2) do not work: as
// when the tests themselves run in a container.
func onOverlay(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.OVERLAYFS_SUPER_MAGIC
}

// newNetns creates a network namespace with loopback up, bind-mounted at
// path (an existing directory's new file), and returns the function that
// removes it.
func newNetns(path string) (func() error, error) {
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		return nil, err
	}
	remove := func() error {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	if out, err := run(cmdTimeout, "unshare", "--net="+path, "ip", "link", "set", "lo", "up"); err != nil {
		_ = remove()
		return nil, fmt.Errorf("unshare --net=%s: %w\n%s", path, err, out)
	}
	return remove, nil
}

// run runs argv with a timeout and returns its combined output.
func run(timeout time.Duration, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = time.Second
	return cmd.CombinedOutput()
}

// Nsenter runs argv in the network namespace at netnsPath (and in the
// caller's mount namespace and cgroups) and returns its standard output.
// It fails the test if argv fails or takes longer than 30 s.
func Nsenter(t testing.TB, netnsPath string, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + netnsPath, "--"}, argv...)...)
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nsenter --net=%s %s: %v\n%s", netnsPath, strings.Join(argv, " "), err, stderr.Bytes())
	}
	return string(out)
}

// NsenterSS runs ss with args in the network namespace at netnsPath and
// returns its output, like `nsenter --net=PATH ss -ltnx`.
func NsenterSS(t testing.TB, netnsPath string, args ...string) string {
	t.Helper()
	return Nsenter(t, netnsPath, append([]string{"ss"}, args...)...)
}

// StartNsenterProcess starts argv as a process of the host (in the test's
// cgroups, not a pod's) that has entered the network namespace at
// netnsPath, the way an operator's debugging tool would, and returns its
// PID. When argv runs the app (argv[0] is AppBinary), it waits until the
// app's queues are full. The process is ended by its PID when the test
// ends.
func StartNsenterProcess(t testing.TB, netnsPath string, argv ...string) int {
	t.Helper()
	if len(argv) == 0 {
		t.Fatal("StartNsenterProcess: no command")
	}
	// nsenter without --fork execs argv, so its PID is argv's.
	cmd := exec.Command("nsenter", append([]string{"--net=" + netnsPath, "--"}, argv...)...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	p, err := startProcess(cmd)
	if err != nil {
		t.Fatalf("start nsenter --net=%s %s: %v", netnsPath, strings.Join(argv, " "), err)
	}
	t.Cleanup(func() {
		if err := p.stop(5 * time.Second); err != nil {
			t.Errorf("stop %s (pid %d): %v", argv[0], p.pid, err)
		}
	})
	if filepath.Base(argv[0]) == "lqapp" && argv[0] == buildFiles(t).app {
		err := waitFor(readyTimeout, func() (bool, error) {
			if err := p.exited(); err != nil {
				return false, err
			}
			return hasReady(out.String()), nil
		})
		if err != nil {
			t.Fatalf("app in %s (pid %d) did not print %s: %v\n%s", netnsPath, p.pid, readyWord, err, out.String())
		}
	}
	return p.pid
}

// hasReady reports whether a line of out (in any log format) has the
// app's READY line.
func hasReady(out string) bool {
	for line := range strings.Lines(out) {
		if strings.Contains(line, readyWord+" tcp=") {
			return true
		}
	}
	return false
}

// process is a child process, waited for by a goroutine.
type process struct {
	pid  int
	done chan struct{}
	err  error // of Wait, once done is closed
}

func startProcess(cmd *exec.Cmd) (*process, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited returns a permanentError if the process has exited, else nil.
func (p *process) exited() error {
	select {
	case <-p.done:
		if p.err == nil {
			return permanentError{errors.New("exited")}
		}
		return permanentError{fmt.Errorf("exited: %w", p.err)}
	default:
		return nil
	}
}

// stop sends SIGTERM to the process, and SIGKILL if it has not exited
// after grace, and waits for it.
func (p *process) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	select {
	case <-p.done:
		return fmt.Errorf("did not exit within %v of SIGTERM; killed", grace)
	case <-time.After(10 * time.Second):
		return errors.New("did not exit after SIGKILL")
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond every 50 ms until it is true, fails, or timeout
// passes.
func waitFor(timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			var perm permanentError
			if errors.As(err, &perm) || time.Now().After(deadline) {
				return err
			}
			last = err
		}
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("timed out after %v: %w", timeout, last)
			}
			return fmt.Errorf("timed out after %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// permanentError stops waitFor at once.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// unmountUnder unmounts, deepest first, every mount of this mount
// namespace at or under one of paths.
func unmountUnder(paths ...string) error {
	var points []string
	for _, mp := range mountPoints() {
		for _, p := range paths {
			if mp == p || strings.HasPrefix(mp, strings.TrimSuffix(p, "/")+"/") {
				points = append(points, mp)
				break
			}
		}
	}
	// Deeper mounts first; the same path may be mounted more than once.
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, mp := range points {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of a
// mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// killShims ends, by PID, the containerd shims left serving the containerd
// at address (after that containerd exited; normally there are none), and
// returns how many it found.
func killShims(address string) int {
	n := 0
	for _, pid := range pidsWhere(func(argv []string) bool {
		if len(argv) == 0 || !strings.Contains(filepath.Base(argv[0]), "containerd-shim") {
			return false
		}
		i := slices.Index(argv, "-address")
		return i >= 0 && i+1 < len(argv) && argv[i+1] == address
	}) {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// pidsWhere returns the PIDs of the processes whose command line matches.
func pidsWhere(match func(argv []string) bool) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		if match(strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// cgroupRoots are the cgroup v1 hierarchies (or the v2 one) of this machine.
func cgroupRoots() []string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{"/sys/fs/cgroup"}
	}
	ents, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return nil
	}
	var roots []string
	for _, e := range ents {
		p := filepath.Join("/sys/fs/cgroup", e.Name())
		if _, err := os.Stat(filepath.Join(p, "cgroup.procs")); err == nil {
			roots = append(roots, p)
		}
	}
	return roots
}

// removeCgroup ends, by PID, the processes left in cgroup path rel (like
// /kubepods/besteffort/pod<uid>) and below it in every hierarchy, then
// removes those cgroups, deepest first.
func removeCgroup(rel string) error {
	var errs []error
	for _, root := range cgroupRoots() {
		top := filepath.Join(root, rel)
		if _, err := os.Stat(top); err != nil {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
		for _, d := range dirs {
			if b, err := os.ReadFile(filepath.Join(d, "cgroup.procs")); err == nil {
				for f := range strings.FieldsSeq(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			err := waitFor(5*time.Second, func() (bool, error) {
				err := unix.Rmdir(d)
				return err == nil || errors.Is(err, unix.ENOENT), err
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// ListenQueue returns Recv-Q and Send-Q of the listener at local (an
// address:port or a unix path) in the output of ss -ltnx, or fails.
func ListenQueue(t testing.TB, ss, local string) (recvQ, sendQ int) {
	t.Helper()
	// Netid State Recv-Q Send-Q Local [Port] Peer...
	for line := range strings.Lines(ss) {
		f := strings.Fields(line)
		if len(f) < 5 || f[1] != "LISTEN" || f[4] != local {
			continue
		}
		r, err1 := strconv.Atoi(f[2])
		s, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			t.Fatalf("bad queue numbers in %q", line)
		}
		return r, s
	}
	t.Fatalf("no listener %s in:\n%s", local, ss)
	return 0, 0
}
