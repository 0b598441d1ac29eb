package runtimeapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	runtimev1 "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeClient is a Client answering from its fields.
type fakeClient struct {
	name, endpoint string

	mu    sync.Mutex
	snap  Snapshot
	err   error
	calls int
}

func (f *fakeClient) Runtime() string  { return f.name }
func (f *fakeClient) Endpoint() string { return f.endpoint }
func (f *fakeClient) Close() error     { return nil }

func (f *fakeClient) List(context.Context) (Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return Snapshot{}, f.err
	}
	return f.snap, nil
}

func (f *fakeClient) set(snap Snapshot, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snap, f.err = snap, err
}

func (f *fakeClient) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// clock is a settable time source for the Directory.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func withClock(d *Directory) *clock {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	d.now = c.now
	return c
}

// logBuffer collects log lines from concurrent writers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var ctx = context.Background()

func wantPod(t *testing.T, d *Directory, uid string, want Pod, wantRuntime string) {
	t.Helper()
	got, rt, ok := d.Pod(ctx, uid)
	if !ok || got != want || rt != wantRuntime {
		t.Errorf("Pod(%q) = %+v, %q, %v; want %+v, %q, true", uid, got, rt, ok, want, wantRuntime)
	}
}

func wantNoPod(t *testing.T, d *Directory, uid string) {
	t.Helper()
	if got, rt, ok := d.Pod(ctx, uid); ok {
		t.Errorf("Pod(%q) = %+v, %q; want a miss", uid, got, rt)
	}
}

// TestDirectoryOverCRI drives a Directory over the fake CRI server and counts
// the runtime calls behind each lookup.
func TestDirectoryOverCRI(t *testing.T) {
	f := &fakeCRI{runtimeName: "containerd"}
	f.set([]*runtimev1.PodSandbox{
		sandbox("sb-a", "uid-a", "ns", "pod-a", ready, 1),
		sandbox("sb-b", "uid-b", "ns", "pod-b", ready, 2),
	}, []*runtimev1.Container{
		container("c-a", "sb-a", "app"),
		container("c-b", "sb-b", "app"),
	})
	c := newCRI(t, startCRI(t, f), time.Second)
	d := NewDirectory([]Client{c}, time.Minute, nil)
	clk := withClock(d)
	lists := func() int64 { return f.sandboxLists.Load() }

	// The first lookup fills the cache.
	wantPod(t, d, "uid-a", Pod{UID: "uid-a", Namespace: "ns", Name: "pod-a", SandboxID: "sb-a"}, "containerd")
	if lists() != 1 {
		t.Fatalf("%d ListPodSandbox calls after the first lookup, want 1", lists())
	}
	// Known IDs answer from the cache, however often asked.
	for range 5 {
		wantPod(t, d, "uid-b", Pod{UID: "uid-b", Namespace: "ns", Name: "pod-b", SandboxID: "sb-b"}, "containerd")
		ct, rt, ok := d.Container(ctx, "c-a")
		if want := (Container{ID: "c-a", Name: "app", SandboxID: "sb-a", PodUID: "uid-a"}); !ok || ct != want || rt != "containerd" {
			t.Errorf("Container(c-a) = %+v, %q, %v; want %+v", ct, rt, ok, want)
		}
	}
	if lists() != 1 {
		t.Fatalf("%d ListPodSandbox calls after lookups of known IDs, want still 1", lists())
	}

	// pod-b goes, pod-c comes. Inside minRefresh the miss answers from the
	// cache without calling.
	f.set([]*runtimev1.PodSandbox{
		sandbox("sb-a", "uid-a", "ns", "pod-a", ready, 1),
		sandbox("sb-c", "uid-c", "ns", "pod-c", ready, 3),
	}, []*runtimev1.Container{container("c-a", "sb-a", "app"), container("c-c", "sb-c", "app")})
	clk.advance(30 * time.Second)
	wantNoPod(t, d, "uid-c")
	if _, _, ok := d.Container(ctx, "c-c"); ok {
		t.Error("Container(c-c) found before a refresh")
	}
	if lists() != 1 {
		t.Fatalf("%d ListPodSandbox calls for misses inside minRefresh, want still 1", lists())
	}
	wantPod(t, d, "uid-b", Pod{UID: "uid-b", Namespace: "ns", Name: "pod-b", SandboxID: "sb-b"}, "containerd")

	// Past minRefresh a miss refreshes once: pod-c is found, pod-b forgotten.
	clk.advance(31 * time.Second)
	wantPod(t, d, "uid-c", Pod{UID: "uid-c", Namespace: "ns", Name: "pod-c", SandboxID: "sb-c"}, "containerd")
	if lists() != 2 {
		t.Fatalf("%d ListPodSandbox calls, want 2", lists())
	}
	wantNoPod(t, d, "uid-b")
	wantNoPod(t, d, "uid-nobody")
	if _, _, ok := d.Container(ctx, "c-b"); ok {
		t.Error("Container(c-b) still found after its pod went")
	}
	if lists() != 2 {
		t.Fatalf("%d ListPodSandbox calls after misses inside minRefresh, want still 2", lists())
	}
	if n := len(d.pods) + len(d.containers); n != 4 {
		t.Errorf("the cache holds %d entries, want 4 (2 pods, 2 containers)", n)
	}
	if d.Refreshes() != 2 {
		t.Errorf("Refreshes = %d, want 2", d.Refreshes())
	}

	// Empty keys never match and never call.
	wantNoPod(t, d, "")
	if _, _, ok := d.Container(ctx, ""); ok || lists() != 2 {
		t.Errorf("Container(\"\") found %v, %d calls", ok, lists())
	}

	st := d.Status()
	if len(st) != 1 || !st[0].Checked || !st[0].Up || st[0].Runtime != "containerd" || st[0].Endpoint != c.Endpoint() ||
		st[0].Pods != 2 || st[0].Containers != 2 || st[0].LastError != nil || st[0].LastSuccess.IsZero() {
		t.Errorf("Status = %+v", st)
	}
}

func TestDirectorySharesOneRefresh(t *testing.T) {
	f := &fakeCRI{runtimeName: "containerd", delay: 300 * time.Millisecond}
	f.set([]*runtimev1.PodSandbox{sandbox("sb-a", "uid-a", "ns", "pod-a", ready, 1)}, nil)
	// minRefresh 0: only the sharing keeps the callers to one refresh.
	d := NewDirectory([]Client{newCRI(t, startCRI(t, f), 5*time.Second)}, 0, nil)

	start := make(chan struct{})
	var wg sync.WaitGroup
	found := make([]bool, 16)
	for i := range found {
		uid := "uid-a"
		if i%2 == 1 {
			uid = fmt.Sprintf("uid-unknown-%d", i)
		}
		wg.Go(func() {
			<-start
			_, _, found[i] = d.Pod(ctx, uid)
		})
	}
	close(start)
	wg.Wait()
	for i, ok := range found {
		if ok != (i%2 == 0) {
			t.Errorf("lookup %d found = %v", i, ok)
		}
	}
	if n := f.sandboxLists.Load(); n != 1 {
		t.Errorf("%d ListPodSandbox calls for 16 concurrent lookups, want 1", n)
	}
	if d.Refreshes() != 1 {
		t.Errorf("Refreshes = %d, want 1", d.Refreshes())
	}
}

func TestDirectorySlowRuntime(t *testing.T) {
	f := &fakeCRI{runtimeName: "containerd", delay: 10 * time.Second}
	c := newCRI(t, startCRI(t, f), 300*time.Millisecond)
	d := NewDirectory([]Client{c}, time.Minute, nil)

	start := time.Now()
	wantNoPod(t, d, "uid-a")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("lookup took %v with a 300ms runtime timeout", took)
	}
	st := d.Status()[0]
	if !st.Checked || st.Up || st.LastError == nil || st.LastErrorTime.IsZero() {
		t.Errorf("Status = %+v, want down with the error", st)
	}
}

func TestDirectoryLookupHonoursContext(t *testing.T) {
	f := &fakeCRI{runtimeName: "containerd", delay: 10 * time.Second}
	c := newCRI(t, startCRI(t, f), time.Second)
	d := NewDirectory([]Client{c}, time.Minute, nil)

	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, _, ok := d.Pod(cctx, "uid-a"); ok {
		t.Error("found a pod")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("lookup took %v with a 100ms context", took)
	}
	// The refresh goes on without the caller and ends within the runtime
	// timeout; a Refresh joins it rather than starting another.
	d.Refresh(ctx)
	if d.Refreshes() != 1 {
		t.Errorf("Refreshes = %d, want 1", d.Refreshes())
	}
	if st := d.Status()[0]; st.Up || st.LastError == nil {
		t.Errorf("Status = %+v, want down", st)
	}
}

func TestDirectoryFailuresLoggedOnceAndRecovery(t *testing.T) {
	var logs logBuffer
	good := &fakeClient{name: "containerd", endpoint: "/run/containerd/containerd.sock"}
	good.set(Snapshot{Pods: []Pod{{UID: "u1", Name: "p1", Namespace: "ns", SandboxID: "s1"}}}, nil)
	flaky := &fakeClient{name: "docker", endpoint: "/var/run/docker.sock"}
	flaky.set(Snapshot{}, errors.New("dial unix /var/run/docker.sock: connect: no such file or directory"))
	d := NewDirectory([]Client{good, flaky}, time.Minute, logs.logger())
	clk := withClock(d)

	for range 3 {
		d.Refresh(ctx)
		clk.advance(time.Second)
	}
	if n := logs.count("not answering"); n != 1 {
		t.Errorf("%d 'not answering' lines for 3 failed calls, want 1:\n%s", n, logs.buf.String())
	}
	st := d.Status()
	if !st[0].Up || st[1].Up || !st[1].Checked {
		t.Fatalf("Status = %+v; want containerd up, docker down", st)
	}
	if st[1].Runtime != "docker" || st[1].Endpoint != "/var/run/docker.sock" ||
		st[1].LastError == nil || !strings.Contains(st[1].LastError.Error(), "no such file") ||
		!st[1].LastErrorTime.Equal(clk.now().Add(-time.Second)) || !st[1].LastSuccess.IsZero() {
		t.Errorf("docker status = %+v", st[1])
	}
	wantPod(t, d, "u1", Pod{UID: "u1", Name: "p1", Namespace: "ns", SandboxID: "s1"}, "containerd")

	// Docker comes up and lists a pod.
	flaky.set(Snapshot{Pods: []Pod{{UID: "u2", Name: "p2"}}}, nil)
	d.Refresh(ctx)
	d.Refresh(ctx)
	if n := logs.count("answering again"); n != 1 {
		t.Errorf("%d 'answering again' lines, want 1:\n%s", n, logs.buf.String())
	}
	wantPod(t, d, "u2", Pod{UID: "u2", Name: "p2"}, "docker")
	st = d.Status()
	if !st[1].Up || st[1].LastError == nil || st[1].LastSuccess.IsZero() {
		t.Errorf("docker status after recovery = %+v; want up, last error kept", st[1])
	}

	// Failing again logs again, once; what it listed last is kept meanwhile.
	flaky.set(Snapshot{}, context.DeadlineExceeded)
	d.Refresh(ctx)
	d.Refresh(ctx)
	if n := logs.count("not answering"); n != 2 {
		t.Errorf("%d 'not answering' lines in all, want 2:\n%s", n, logs.buf.String())
	}
	if !errors.Is(d.Status()[1].LastError, context.DeadlineExceeded) {
		t.Errorf("LastError = %v, want the latest error", d.Status()[1].LastError)
	}
	wantPod(t, d, "u2", Pod{UID: "u2", Name: "p2"}, "docker")
	if n := logs.count("level=WARN"); n != 2 {
		t.Errorf("%d warnings, want 2", n)
	}
}

func TestDirectoryEarlierClientWins(t *testing.T) {
	// cri-dockerd and dockerd list the same container: the first client given
	// answers for it; each answers for what only it lists.
	cri := &fakeClient{name: "docker-cri", endpoint: "/run/cri-dockerd.sock"}
	cri.set(Snapshot{Containers: []Container{{ID: "c1", Name: "app", PodUID: "u1"}}}, nil)
	dock := &fakeClient{name: "docker", endpoint: "/var/run/docker.sock"}
	dock.set(Snapshot{Containers: []Container{{ID: "c1", Name: "k8s_app_x"}, {ID: "c2", Name: "plain"}, {ID: ""}}}, nil)
	d := NewDirectory([]Client{cri, dock}, time.Minute, nil)

	if ct, rt, ok := d.Container(ctx, "c1"); !ok || rt != "docker-cri" || ct.Name != "app" {
		t.Errorf("Container(c1) = %+v, %q, %v; want the first client's", ct, rt, ok)
	}
	if ct, rt, ok := d.Container(ctx, "c2"); !ok || rt != "docker" || ct.Name != "plain" {
		t.Errorf("Container(c2) = %+v, %q, %v", ct, rt, ok)
	}
	if cri.callCount() != 1 || dock.callCount() != 1 {
		t.Errorf("calls = %d, %d; want 1 each", cri.callCount(), dock.callCount())
	}
	if len(d.containers) != 2 {
		t.Errorf("cache holds %d containers, want 2 (no empty ID)", len(d.containers))
	}
}

// TestDirectoryRuntimeRecovers stops a real CRI server's socket from
// existing, then serves it: the Directory notices both ways.
func TestDirectoryRuntimeRecovers(t *testing.T) {
	var logs logBuffer
	path := filepath.Join(shortDir(t), "containerd.sock")
	c := newCRI(t, path, 500*time.Millisecond)
	d := NewDirectory([]Client{c}, 0, logs.logger())

	wantNoPod(t, d, "uid-a")
	wantNoPod(t, d, "uid-a")
	if st := d.Status()[0]; !st.Checked || st.Up || st.Runtime != "containerd" {
		t.Fatalf("Status before the runtime exists = %+v", st)
	}

	f := &fakeCRI{runtimeName: "containerd"}
	f.set([]*runtimev1.PodSandbox{sandbox("sb-a", "uid-a", "ns", "pod-a", ready, 1)}, nil)
	serveCRI(t, f, path)
	// gRPC reconnects after its backoff (capped at reconnectMaxDelay).
	deadline := time.Now().Add(3 * reconnectMaxDelay)
	for {
		if _, _, ok := d.Pod(ctx, "uid-a"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod not found %v after the runtime came up; status %+v", 3*reconnectMaxDelay, d.Status())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := d.Status()[0]; !st.Up || st.LastError == nil {
		t.Errorf("Status = %+v, want up with the old error kept", st)
	}
	if n, m := logs.count("not answering"), logs.count("answering again"); n != 1 || m != 1 {
		t.Errorf("%d 'not answering' and %d 'answering again' lines, want 1 each:\n%s", n, m, logs.buf.String())
	}
}

func TestDirectoryWithoutClients(t *testing.T) {
	d := NewDirectory(nil, time.Minute, nil)
	wantNoPod(t, d, "uid")
	if len(d.Status()) != 0 {
		t.Errorf("Status = %+v", d.Status())
	}
}

func TestDirectoryOverDocker(t *testing.T) {
	c := NewDocker(serveDocker(t, answer(200, dockerPS)), time.Second)
	defer c.Close()
	d := NewDirectory([]Client{c}, time.Minute, nil)
	wantPod(t, d, "0b5e6c2a-1f3d-4e5a-9c7b-2d8e4f6a1b3c",
		Pod{UID: "0b5e6c2a-1f3d-4e5a-9c7b-2d8e4f6a1b3c", Namespace: "shop", Name: "web-7d4b9", SandboxID: "9a8b7c6d5e4f"}, "docker")
	if ct, rt, ok := d.Container(ctx, "c0ffee123456"); !ok || rt != "docker" || ct.Name != "nginx-proxy" || ct.PodUID != "" {
		t.Errorf("Container = %+v, %q, %v", ct, rt, ok)
	}
}
