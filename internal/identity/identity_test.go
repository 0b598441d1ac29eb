package identity

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/runtimeapi"
)

const (
	podUID    = "6a4c8f1e-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
	sandboxID = "1111111111111111111111111111111111111111111111111111111111111111"
	appID     = "2222222222222222222222222222222222222222222222222222222222222222"
	dockerID  = "3333333333333333333333333333333333333333333333333333333333333333"
	newID     = "4444444444444444444444444444444444444444444444444444444444444444"
)

// fakeRuntime is a runtimeapi.Client answering from a fixed snapshot.
type fakeRuntime struct {
	snap  runtimeapi.Snapshot
	err   error
	calls atomic.Int32
}

func (f *fakeRuntime) Runtime() string  { return "containerd" }
func (f *fakeRuntime) Endpoint() string { return "/run/fake.sock" }
func (f *fakeRuntime) Close() error     { return nil }
func (f *fakeRuntime) List(context.Context) (runtimeapi.Snapshot, error) {
	f.calls.Add(1)
	return f.snap, f.err
}

// procs writes a fixture procfs whose processes are in the given cgroups.
func procs(t *testing.T, cgroups map[int]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, path := range cgroups {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		content := "12:pids:" + path + "\n1:name=systemd:" + path + "\n"
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestNamespace(t *testing.T) {
	root := procs(t, map[int]string{
		10: "/kubepods/besteffort/pod" + podUID + "/" + sandboxID, // the pod's sandbox
		11: "/kubepods/besteffort/pod" + podUID + "/" + appID,     // its app
		12: "/user.slice/user-0.slice/session-1.scope",            // an operator's nsenter'd tool
		20: "/docker/" + dockerID,
		30: "/kubepods/besteffort/pod" + "9f0e1d2c-3b4a-4c5d-8e6f-7a8b9c0d1e2f" + "/" + newID,
		40: "/system.slice/sshd.service",
	})
	rt := &fakeRuntime{snap: runtimeapi.Snapshot{
		Pods: []runtimeapi.Pod{{UID: podUID, Namespace: "team-a", Name: "web-1", SandboxID: sandboxID}},
		Containers: []runtimeapi.Container{
			{ID: appID, Name: "app", SandboxID: sandboxID, PodUID: podUID},
			{ID: dockerID, Name: "nginx-demo"},
		},
	}}
	r := New(root, runtimeapi.NewDirectory([]runtimeapi.Client{rt}, time.Hour, nil), time.Second)
	for _, tc := range []struct {
		name    string
		pids    []int
		want    netns.Identity
		settled bool
	}{
		{"pod with a debugging tool inside", []int{10, 11, 12}, netns.Identity{Namespace: "team-a", Pod: "web-1", PodUID: podUID, Runtime: "containerd"}, true},
		{"the tool alone is no pod", []int{12}, netns.Identity{}, true},
		{"docker container, no pod", []int{20}, netns.Identity{Runtime: "containerd"}, true},
		{"pod the runtime does not list yet", []int{30}, netns.Identity{PodUID: "9f0e1d2c-3b4a-4c5d-8e6f-7a8b9c0d1e2f"}, false},
		{"host process", []int{40}, netns.Identity{}, true},
		{"no process (ip netns add)", nil, netns.Identity{}, true},
		{"processes that exited", []int{98, 99}, netns.Identity{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, settled := r.Namespace(netns.Found{PIDs: tc.pids})
			if got != tc.want || settled != tc.settled {
				t.Errorf("Namespace = %+v, %v; want %+v, %v", got, settled, tc.want, tc.settled)
			}
		})
	}
	for pid, want := range map[int]string{11: "app", 20: "nginx-demo", 12: "", 40: ""} {
		if got, settled := r.Container(pid); got != want || !settled {
			t.Errorf("Container(%d) = %q, %v; want %q, settled", pid, got, settled, want)
		}
	}
	if got, settled := r.Container(30); got != "" || settled {
		t.Errorf("Container of a container the runtime does not know = %q, %v; want \"\", unsettled", got, settled)
	}
	// Everything above came from one listing: misses inside the refresh
	// interval answer from the cache.
	if n := rt.calls.Load(); n != 1 {
		t.Errorf("runtime listed %d times, want 1", n)
	}
}

// Without a runtime, or with one that fails, a pod's namespace still gets
// its UID from the cgroups, and nothing blocks.
func TestNamespaceWithoutRuntime(t *testing.T) {
	root := procs(t, map[int]string{10: "/kubepods/besteffort/pod" + podUID + "/" + sandboxID})
	want := netns.Identity{PodUID: podUID}
	if got, settled := New(root, nil, time.Second).Namespace(netns.Found{PIDs: []int{10}}); got != want || !settled {
		t.Errorf("no runtime: %+v, %v; want %+v, settled", got, settled, want)
	}
	down := &fakeRuntime{err: errors.New("connection refused")}
	r := New(root, runtimeapi.NewDirectory([]runtimeapi.Client{down}, time.Hour, nil), time.Second)
	if got, settled := r.Namespace(netns.Found{PIDs: []int{10}}); got != want || settled {
		t.Errorf("runtime down: %+v, %v; want %+v, unsettled", got, settled, want)
	}
}
