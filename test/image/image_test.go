// Package image tests the container image for real: the Dockerfile is
// built with podman, offline, from the static binary `make build` makes,
// its configuration is checked, and the DaemonSet's pod
// (deploy/kubernetes/daemonset.yaml) runs that image in a real containerd
// through the CRI API, next to app pods with full listen queues, and names
// them.
//
// The tests need root, podman (Debian's podman), unshare (util-linux) and
// what internal/testpods needs (containerd, runc, CNI plugins,
// busybox-static, iproute2). Without root or a tool a test is skipped, and
// fails when CI=true.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/internal/testbin"
	"github.com/listenq/listenq_exporter/internal/testns"
	"github.com/listenq/listenq_exporter/internal/testpods"
)

// What the test stamps into the binary, as `make build` does with
// git describe and git rev-parse, and expects back from the image's labels
// and the exporter's build_info.
const (
	testVersion  = "v0.0.0-imagetest"
	testRevision = "0123456789abcdef0123456789abcdef01234567"
	// imageRef has a domain, so podman and containerd name it alike.
	imageRef = "listenq.test/listenq_exporter:imagetest"
	// binaryPath is the exporter in the image.
	binaryPath = "/bin/listenq_exporter"
)

func TestMain(m *testing.M) { os.Exit(mountnsMain(testpods.Wrap(wrapper{m}))) }

// envMountns marks the test binary re-executed by mountnsMain.
const envMountns = "LISTENQ_IMAGETEST_MOUNTNS"

// mountnsMain runs the tests, as root, in a mount namespace of their own
// whose root mount is shared: the test binary re-executes itself there.
//
// Why: the DaemonSet mounts /run/netns with mountPropagation
// HostToContainer, which containerd refuses unless the host path's mount
// is shared or a slave, as / is on a systemd node. On this machine / is
// private, and making it (or a bind mount of /run/netns) shared would
// change the machine for every other test and be left behind. In a mount
// namespace of its own the test makes its copies of / and the mounts
// below it (/run/netns may be one: `ip netns add` makes it) slaves of the
// machine's (so nothing it mounts propagates out) and shared (so its
// containerd accepts HostToContainer, and pods' namespace mounts reach
// the exporter's /host/run/netns). containerd and the test share that
// namespace, so the test sees the pods' namespace mounts as before; every
// mount goes with it when the tests end.
func mountnsMain(m interface{ Run() int }) int {
	if mountnsInside() {
		for _, flags := range []uintptr{unix.MS_SLAVE | unix.MS_REC, unix.MS_SHARED | unix.MS_REC} {
			if err := unix.Mount("", "/", "", flags, ""); err != nil {
				fmt.Fprintf(os.Stderr, "image tests: change the propagation of / (flags %#x) in the private mount namespace: %v\n", flags, err)
				return 1
			}
		}
		return m.Run()
	}
	if os.Geteuid() != 0 {
		return m.Run() // the tests skip, or fail when CI=true
	}
	return testns.Rerun(envMountns, syscall.CLONE_NEWNS, "a private mount namespace")
}

// mountnsInside reports whether the tests run in mountnsMain's namespace.
func mountnsInside() bool { return os.Getenv(envMountns) == "1" }

// wrapper removes the image's build directory (binary, podman's storage,
// the saved archive) once the tests are done.
type wrapper struct{ m *testing.M }

func (w wrapper) Run() int {
	code := w.m.Run()
	if built.dir != "" {
		if err := os.RemoveAll(built.dir); err != nil {
			fmt.Fprintln(os.Stderr, "image tests: remove the build directory:", err)
		}
	}
	return code
}

// builtImage is the image, built once per test binary.
type builtImage struct {
	Archive string          // docker-archive tar of the image (podman save)
	Inspect json.RawMessage // podman image inspect, the image's object
	Took    time.Duration   // go build + podman build + podman save
}

var built struct {
	once sync.Once
	dir  string
	img  builtImage
	err  error
}

// requireRoot skips the test without root, or fails it when CI=true.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	const msg = "the image tests need root (podman build, containerd)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true, so this is a failure, not a skip)")
	}
	t.Skip(msg + "; skipping. With CI=true this fails.")
}

// buildImage builds the exporter the way `make build` does and the image
// from the repository's Dockerfile with podman, the first time a test asks.
func buildImage(t *testing.T) builtImage {
	t.Helper()
	requireRoot(t)
	testbin.RequireTool(t, "go", "golang-go")
	testbin.RequireTool(t, "podman", "podman")
	testbin.RequireTool(t, "unshare", "util-linux")
	built.once.Do(func() { built.img, built.err = build() })
	if built.err != nil {
		t.Fatalf("build the image: %v", built.err)
	}
	return built.img
}

func build() (builtImage, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := moduleRoot(ctx)
	if err != nil {
		return builtImage{}, err
	}
	dir, err := os.MkdirTemp("", "lqimage-")
	if err != nil {
		return builtImage{}, err
	}
	built.dir = dir

	// The build context holds what `make docker` sends that the
	// Dockerfile uses: the Dockerfile, the .dockerignore and the binary
	// of `make build`, built with the same flags (see the Makefile). The
	// test builds its own rather than `make build`'s, which it would
	// write into the working tree.
	bctx := filepath.Join(dir, "context")
	if err := os.Mkdir(bctx, 0o755); err != nil {
		return builtImage{}, err
	}
	bin := filepath.Join(bctx, "listenq_exporter")
	ldflags := "-s -w -X github.com/prometheus/common/version.Version=" + testVersion +
		" -X github.com/prometheus/common/version.Revision=" + testRevision
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", bin, "./cmd/listenq_exporter")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return builtImage{}, fmt.Errorf("go build: %w\n%s", err, out)
	}
	if err := checkStatic(bin); err != nil {
		return builtImage{}, fmt.Errorf("%s: %w", bin, err)
	}
	// The repository's .dockerignore too: it must let the binary in.
	for _, name := range []string{"Dockerfile", ".dockerignore"} {
		b, err := os.ReadFile(filepath.Join(root, name))
		if errors.Is(err, os.ErrNotExist) && name == ".dockerignore" {
			continue
		}
		if err != nil {
			return builtImage{}, err
		}
		if err := os.WriteFile(filepath.Join(bctx, name), b, 0o644); err != nil {
			return builtImage{}, err
		}
	}

	pm, err := newPodman(dir)
	if err != nil {
		return builtImage{}, err
	}
	if out, err := pm.run(ctx, "build", "--pull=never", "--network=none",
		"--build-arg", "VERSION="+testVersion, "--build-arg", "REVISION="+testRevision,
		"-t", imageRef, bctx); err != nil {
		return builtImage{}, fmt.Errorf("podman build: %w\n%s", err, out)
	}
	out, err := pm.run(ctx, "image", "inspect", imageRef)
	if err != nil {
		return builtImage{}, fmt.Errorf("podman image inspect: %w\n%s", err, out)
	}
	var inspected []json.RawMessage
	if err := json.Unmarshal(out, &inspected); err != nil {
		return builtImage{}, fmt.Errorf("podman image inspect: %w\n%s", err, out)
	}
	if len(inspected) != 1 {
		return builtImage{}, fmt.Errorf("podman image inspect: want one image, got %d:\n%s", len(inspected), out)
	}
	archive := filepath.Join(dir, "image.tar")
	if out, err := pm.run(ctx, "save", "--format", "docker-archive", "-o", archive, imageRef); err != nil {
		return builtImage{}, fmt.Errorf("podman save: %w\n%s", err, out)
	}
	return builtImage{Archive: archive, Inspect: inspected[0], Took: time.Since(start)}, nil
}

func moduleRoot(ctx context.Context) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("the tests do not run inside a Go module (go env GOMOD is empty)")
	}
	return filepath.Dir(mod), nil
}

// checkStatic returns an error unless path is a statically linked ELF
// executable: no interpreter, no shared libraries. The image has no libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (it has an interpreter); build it with CGO_ENABLED=0")
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		return fmt.Errorf("needs shared libraries %v; build it with CGO_ENABLED=0", libs)
	}
	return nil
}

// podman runs podman with all its state under one directory: a
// CONTAINERS_CONF for this machine (no default ulimits, which it may not
// raise without CAP_SYS_RESOURCE; cgroupfs, there being no systemd; no
// event log), storage (vfs: plain directories, no mounts) and run
// directories and TMPDIR. podman also writes a few files at fixed paths
// whatever its flags (the network run directory /run/containers/networks,
// the blob info cache under /var/lib/containers/cache): it runs in a
// private mount namespace with empty tmpfs on /run and /var/lib, so they go
// with it and nothing is left on the machine.
type podman struct {
	dir  string
	conf string
}

func newPodman(dir string) (*podman, error) {
	p := &podman{dir: filepath.Join(dir, "podman")}
	for _, d := range []string{"root", "runroot", "tmp"} {
		if err := os.MkdirAll(filepath.Join(p.dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	p.conf = filepath.Join(p.dir, "containers.conf")
	conf := "[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"none\"\n"
	return p, os.WriteFile(p.conf, []byte(conf), 0o600)
}

func (p *podman) run(ctx context.Context, args ...string) ([]byte, error) {
	const script = `mount -t tmpfs -o mode=0755 lqimage /run && mount -t tmpfs -o mode=0755 lqimage /var/lib && exec "$@"`
	argv := append([]string{
		"--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
		"podman",
		"--root", filepath.Join(p.dir, "root"),
		"--runroot", filepath.Join(p.dir, "runroot"),
		"--tmpdir", filepath.Join(p.dir, "tmp"),
		"--storage-driver", "vfs",
	}, args...)
	cmd := exec.CommandContext(ctx, "unshare", argv...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+p.conf, "TMPDIR="+filepath.Join(p.dir, "tmp"))
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return append(out, stderr.Bytes()...), err
	}
	return out, nil
}

// TestImageConfig: the image built from the Dockerfile runs the exporter as
// its entrypoint, as an unprivileged user, exposes the exporter's port,
// carries the version and revision it was built with, and holds the
// exporter binary and nothing else.
func TestImageConfig(t *testing.T) {
	img := buildImage(t)
	t.Logf("image built in %v", img.Took.Round(time.Millisecond))
	var inspect struct {
		Os, Architecture string
		Config           struct {
			User         string
			Entrypoint   []string
			Cmd          []string
			ExposedPorts map[string]any
			Labels       map[string]string
		}
		RootFS struct{ Layers []string }
	}
	if err := json.Unmarshal(img.Inspect, &inspect); err != nil {
		t.Fatalf("podman image inspect: %v", err)
	}
	c := inspect.Config
	if uid, _, _ := strings.Cut(c.User, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("User = %q, want a non-root user by default", c.User)
	}
	if c.User != "65534:65534" {
		t.Errorf("User = %q, want 65534:65534 (nobody)", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{binaryPath}) || len(c.Cmd) != 0 {
		t.Errorf("Entrypoint %q, Cmd %q: want [%s] and no Cmd, so arguments go to the exporter", c.Entrypoint, c.Cmd, binaryPath)
	}
	if _, ok := c.ExposedPorts["9637/tcp"]; !ok || len(c.ExposedPorts) != 1 {
		t.Errorf("ExposedPorts = %v, want 9637/tcp only", c.ExposedPorts)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.version":  testVersion,
		"org.opencontainers.image.revision": testRevision,
	} {
		if got := c.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if inspect.Os != "linux" || len(inspect.RootFS.Layers) != 1 {
		t.Errorf("os %q, %d layers: want linux, one layer", inspect.Os, len(inspect.RootFS.Layers))
	}

	// The one layer: the binary, which is static and is the one built.
	files := layerFiles(t, img.Archive)
	var names []string
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"bin/", strings.TrimPrefix(binaryPath, "/")}) {
		t.Errorf("the image holds %q, want the exporter and its directory only", names)
	}
	bin := files[strings.TrimPrefix(binaryPath, "/")]
	if bin == nil {
		t.Fatalf("no %s in the image", binaryPath)
	}
	f, err := os.CreateTemp(t.TempDir(), "exporter")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bin); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := checkStatic(f.Name()); err != nil {
		t.Errorf("%s in the image: %v", binaryPath, err)
	}
	if !bytes.Contains(bin, []byte(testRevision)) {
		t.Errorf("%s in the image does not carry the revision %s", binaryPath, testRevision)
	}
}

// layerFiles returns the files of the image in a docker-archive (one
// layer expected), by name, with the contents of regular files (nil for
// others).
func layerFiles(t *testing.T, archive string) map[string][]byte {
	t.Helper()
	entries := tarEntries(t, archive)
	var manifest []struct{ Layers []string }
	if err := json.Unmarshal(entries["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("%s: manifest.json: want one image (%v)", archive, err)
	}
	files := map[string][]byte{}
	for _, l := range manifest[0].Layers {
		layer, ok := entries[l]
		if !ok {
			t.Fatalf("%s: no layer %s", archive, l)
		}
		tr := tar.NewReader(bytes.NewReader(layer))
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: layer %s: %v", archive, l, err)
			}
			var data []byte
			if h.Typeflag == tar.TypeReg {
				if data, err = io.ReadAll(tr); err != nil {
					t.Fatal(err)
				}
			}
			files[strings.TrimPrefix(h.Name, "./")] = data
		}
	}
	return files
}

// tarEntries returns the regular files of the tar at path by name.
func tarEntries(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			out[h.Name] = b
		}
	}
}
