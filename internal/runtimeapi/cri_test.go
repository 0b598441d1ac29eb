package runtimeapi

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimev1 "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeCRI is a CRI RuntimeService that answers Version, ListPodSandbox and
// ListContainers from its fields and counts the calls.
type fakeCRI struct {
	runtimev1.UnimplementedRuntimeServiceServer

	mu          sync.Mutex
	runtimeName string
	sandboxes   []*runtimev1.PodSandbox
	containers  []*runtimev1.Container
	// delay makes ListPodSandbox wait that long (or until the call ends).
	delay time.Duration

	versions, sandboxLists, containerLists atomic.Int64
}

func (f *fakeCRI) Version(context.Context, *runtimev1.VersionRequest) (*runtimev1.VersionResponse, error) {
	f.versions.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	return &runtimev1.VersionResponse{
		Version:           "0.1.0",
		RuntimeName:       f.runtimeName,
		RuntimeVersion:    "1.7.0",
		RuntimeApiVersion: "v1",
	}, nil
}

func (f *fakeCRI) ListPodSandbox(ctx context.Context, _ *runtimev1.ListPodSandboxRequest) (*runtimev1.ListPodSandboxResponse, error) {
	f.sandboxLists.Add(1)
	f.mu.Lock()
	delay, items := f.delay, f.sandboxes
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &runtimev1.ListPodSandboxResponse{Items: items}, nil
}

func (f *fakeCRI) ListContainers(context.Context, *runtimev1.ListContainersRequest) (*runtimev1.ListContainersResponse, error) {
	f.containerLists.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	return &runtimev1.ListContainersResponse{Containers: f.containers}, nil
}

func (f *fakeCRI) set(sbs []*runtimev1.PodSandbox, ctrs []*runtimev1.Container) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sandboxes, f.containers = sbs, ctrs
}

// shortDir returns a fresh directory with a short path, since a unix socket
// path holds at most 107 bytes and t.TempDir's can be longer.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// serveCRI serves f on a unix socket at path until the test ends.
func serveCRI(t *testing.T, f *fakeCRI, path string) {
	t.Helper()
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimev1.RegisterRuntimeServiceServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
}

// startCRI serves f on a new socket named containerd.sock and returns its path.
func startCRI(t *testing.T, f *fakeCRI) string {
	t.Helper()
	path := filepath.Join(shortDir(t), "containerd.sock")
	serveCRI(t, f, path)
	return path
}

func newCRI(t *testing.T, path string, timeout time.Duration) Client {
	t.Helper()
	c, err := NewCRI(path, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func sandbox(id, uid, ns, name string, state runtimev1.PodSandboxState, created int64) *runtimev1.PodSandbox {
	return &runtimev1.PodSandbox{
		Id:        id,
		Metadata:  &runtimev1.PodSandboxMetadata{Name: name, Uid: uid, Namespace: ns, Attempt: 0},
		State:     state,
		CreatedAt: created,
	}
}

func container(id, sandboxID, name string) *runtimev1.Container {
	return &runtimev1.Container{
		Id:           id,
		PodSandboxId: sandboxID,
		Metadata:     &runtimev1.ContainerMetadata{Name: name},
		State:        runtimev1.ContainerState_CONTAINER_RUNNING,
	}
}

const (
	ready    = runtimev1.PodSandboxState_SANDBOX_READY
	notReady = runtimev1.PodSandboxState_SANDBOX_NOTREADY
)

func TestCRIList(t *testing.T) {
	f := &fakeCRI{runtimeName: "cri-o"}
	f.set([]*runtimev1.PodSandbox{
		sandbox("sb-web", "uid-web", "shop", "web-7d4b9", ready, 100),
		// uid-db has a stopped sandbox and its ready replacement, the
		// stopped one newer by clock skew: the ready one must stand for it.
		sandbox("sb-db-new", "uid-db", "shop", "db-0", ready, 200),
		sandbox("sb-db-old", "uid-db", "shop", "db-0", notReady, 300),
		// uid-job has two stopped sandboxes: the newer stands for it.
		sandbox("sb-job-1", "uid-job", "batch", "job-x", notReady, 10),
		sandbox("sb-job-2", "uid-job", "batch", "job-x", notReady, 20),
	}, []*runtimev1.Container{
		container("c-web", "sb-web", "nginx"),
		container("c-sidecar", "sb-web", "envoy"),
		container("c-db-old", "sb-db-old", "postgres"),
		container("c-db", "sb-db-new", "postgres"),
	})
	path := startCRI(t, f)
	c := newCRI(t, path, time.Second)

	if got := c.Runtime(); got != "containerd" {
		t.Errorf("Runtime before any call = %q, want the guess from the path, containerd", got)
	}
	if got := c.Endpoint(); got != path {
		t.Errorf("Endpoint = %q, want %q", got, path)
	}
	snap, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Runtime(); got != "cri-o" {
		t.Errorf("Runtime after List = %q, want cri-o from Version", got)
	}
	wantPods := []Pod{
		{UID: "uid-web", Namespace: "shop", Name: "web-7d4b9", SandboxID: "sb-web"},
		{UID: "uid-db", Namespace: "shop", Name: "db-0", SandboxID: "sb-db-new"},
		{UID: "uid-job", Namespace: "batch", Name: "job-x", SandboxID: "sb-job-2"},
	}
	if !reflect.DeepEqual(snap.Pods, wantPods) {
		t.Errorf("Pods =\n%+v\nwant\n%+v", snap.Pods, wantPods)
	}
	wantCtrs := []Container{
		{ID: "c-web", Name: "nginx", SandboxID: "sb-web", PodUID: "uid-web"},
		{ID: "c-sidecar", Name: "envoy", SandboxID: "sb-web", PodUID: "uid-web"},
		{ID: "c-db-old", Name: "postgres", SandboxID: "sb-db-old", PodUID: "uid-db"},
		{ID: "c-db", Name: "postgres", SandboxID: "sb-db-new", PodUID: "uid-db"},
	}
	if !reflect.DeepEqual(snap.Containers, wantCtrs) {
		t.Errorf("Containers =\n%+v\nwant\n%+v", snap.Containers, wantCtrs)
	}

	if _, err := c.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, s, ct := f.versions.Load(), f.sandboxLists.Load(), f.containerLists.Load(); v != 1 || s != 2 || ct != 2 {
		t.Errorf("after two Lists: %d Version, %d ListPodSandbox, %d ListContainers calls; want 1, 2, 2 (the name is cached)", v, s, ct)
	}
}

func TestCRINilMetadataAndEmptyFields(t *testing.T) {
	f := &fakeCRI{runtimeName: ""} // a runtime that does not name itself
	f.set([]*runtimev1.PodSandbox{
		{Id: "sb-bare"}, // no metadata, no labels
		{Id: "sb-labelled", Labels: map[string]string{
			labelPodUID: "uid-l", labelPodName: "from-labels", labelPodNamespace: "ns-l",
		}},
		{Metadata: &runtimev1.PodSandboxMetadata{}}, // everything empty
	}, []*runtimev1.Container{
		{Id: "c-bare"},
		{Id: "c-in-bare", PodSandboxId: "sb-bare"},
		{Id: "c-labelled", PodSandboxId: "sb-labelled", Metadata: &runtimev1.ContainerMetadata{}},
		// Its sandbox is not listed (it went away between the two calls):
		// the kubelet's label still tells the pod.
		{Id: "c-orphan", PodSandboxId: "sb-gone", Labels: map[string]string{labelPodUID: "uid-gone"}},
		{},
	})
	c := newCRI(t, startCRI(t, f), time.Second)
	snap, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantPods := []Pod{
		{SandboxID: "sb-bare"},
		{UID: "uid-l", Namespace: "ns-l", Name: "from-labels", SandboxID: "sb-labelled"},
		{},
	}
	if !reflect.DeepEqual(snap.Pods, wantPods) {
		t.Errorf("Pods =\n%+v\nwant\n%+v", snap.Pods, wantPods)
	}
	wantCtrs := []Container{
		{ID: "c-bare"},
		{ID: "c-in-bare", SandboxID: "sb-bare"},
		{ID: "c-labelled", SandboxID: "sb-labelled", PodUID: "uid-l"},
		{ID: "c-orphan", SandboxID: "sb-gone", PodUID: "uid-gone"},
		{},
	}
	if !reflect.DeepEqual(snap.Containers, wantCtrs) {
		t.Errorf("Containers =\n%+v\nwant\n%+v", snap.Containers, wantCtrs)
	}
	if got := c.Runtime(); got != "containerd" {
		t.Errorf("Runtime = %q, want the path's guess kept when Version names nothing", got)
	}
	if f.versions.Load() != 1 {
		t.Errorf("Version calls = %d, want 1", f.versions.Load())
	}
}

func TestCRISlowRuntimeTimesOut(t *testing.T) {
	f := &fakeCRI{runtimeName: "containerd", delay: 10 * time.Second}
	c := newCRI(t, startCRI(t, f), 200*time.Millisecond)
	start := time.Now()
	_, err := c.List(context.Background())
	took := time.Since(start)
	if err == nil {
		t.Fatal("List of a runtime slower than the timeout succeeded")
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("error code = %v (%v), want DeadlineExceeded", status.Code(err), err)
	}
	if took > 2*time.Second {
		t.Errorf("List took %v with a 200ms timeout", took)
	}
}

func TestCRICallerContextBoundsList(t *testing.T) {
	f := &fakeCRI{runtimeName: "containerd", delay: 10 * time.Second}
	c := newCRI(t, startCRI(t, f), time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.List(ctx); err == nil {
		t.Fatal("List succeeded past its context's deadline")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("List took %v with a 150ms context", took)
	}
}

func TestCRIUnreachableSockets(t *testing.T) {
	dir := shortDir(t)
	regular := filepath.Join(dir, "crio.sock")
	if err := os.WriteFile(regular, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A socket nobody listens on any more: bound, then the listener closed
	// without removing the file.
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()

	for _, tc := range []struct {
		name, path, guess string
	}{
		{"absent", filepath.Join(dir, "no", "such.sock"), KindCRI},
		{"regular file", regular, "cri-o"},
		{"stale socket", stale, KindCRI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			c, err := NewCRI(tc.path, 500*time.Millisecond)
			if err != nil {
				t.Fatalf("NewCRI: %v; want the failure to show on List", err)
			}
			defer c.Close()
			if took := time.Since(start); took > 100*time.Millisecond {
				t.Errorf("NewCRI blocked for %v", took)
			}
			if got := c.Runtime(); got != tc.guess {
				t.Errorf("Runtime = %q, want %q", got, tc.guess)
			}
			for range 2 { // the second call finds the connection already failed
				start = time.Now()
				_, err = c.List(context.Background())
				if err == nil {
					t.Fatal("List succeeded")
				}
				if took := time.Since(start); took > 2*time.Second {
					t.Errorf("List took %v with a 500ms timeout", took)
				}
			}
			if status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
				t.Errorf("error = %v, want Unavailable", err)
			}
		})
	}
}

func TestNewCRIRejectsEmptyPath(t *testing.T) {
	if c, err := NewCRI("", time.Second); err == nil {
		c.Close()
		t.Fatal("NewCRI(\"\") succeeded")
	}
}

func TestGuessRuntime(t *testing.T) {
	for path, want := range map[string]string{
		"/run/containerd/containerd.sock":     "containerd",
		"/run/k3s/containerd/containerd.sock": "containerd",
		"/var/run/crio/crio.sock":             "cri-o",
		"/run/cri-dockerd.sock":               "docker",
		"/run/custom/runtime.sock":            "cri",
	} {
		if got := guessRuntime(path); got != want {
			t.Errorf("guessRuntime(%q) = %q, want %q", path, got, want)
		}
	}
}
