package runtimeapi

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// serveDocker serves h on a unix socket named docker.sock until the test
// ends and returns its path.
func serveDocker(t *testing.T, h http.Handler) string {
	t.Helper()
	path := filepath.Join(shortDir(t), "docker.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return path
}

func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(body))
	}
}

// dockerPS is a /containers/json answer in the Engine API's shape: the
// sandbox (pause) and app container of a pod started by cri-dockerd, with
// the kubelet's labels, a plain container, and one with a legacy link alias
// listed before its own name.
const dockerPS = `[
  {
    "Id": "4e1f0c7a9b2d",
    "Names": ["/k8s_nginx_web-7d4b9_shop_0b5e6c2a-1f3d-4e5a-9c7b-2d8e4f6a1b3c_0"],
    "Image": "nginx:1.27",
    "ImageID": "sha256:5ef79149e0ec84a7a9f9284c3f91aa3c20608f8391f5445eabe92ef07dbda03c",
    "Command": "/docker-entrypoint.sh nginx -g 'daemon off;'",
    "Created": 1718000100,
    "Ports": [],
    "Labels": {
      "io.kubernetes.container.logpath": "/var/log/pods/shop_web-7d4b9_0b5e6c2a-1f3d-4e5a-9c7b-2d8e4f6a1b3c/nginx/0.log",
      "io.kubernetes.container.name": "nginx",
      "io.kubernetes.docker.type": "container",
      "io.kubernetes.pod.name": "web-7d4b9",
      "io.kubernetes.pod.namespace": "shop",
      "io.kubernetes.pod.uid": "0b5e6c2a-1f3d-4e5a-9c7b-2d8e4f6a1b3c",
      "io.kubernetes.sandbox.id": "9a8b7c6d5e4f",
      "maintainer": "NGINX Docker Maintainers <docker-maint@nginx.com>"
    },
    "State": "running",
    "Status": "Up 3 hours",
    "HostConfig": {"NetworkMode": "container:9a8b7c6d5e4f"},
    "NetworkSettings": {"Networks": {}},
    "Mounts": []
  },
  {
    "Id": "9a8b7c6d5e4f",
    "Names": ["/k8s_POD_web-7d4b9_shop_0b5e6c2a-1f3d-4e5a-9c7b-2d8e4f6a1b3c_0"],
    "Image": "registry.k8s.io/pause:3.9",
    "ImageID": "sha256:e6f1816883972d4be47bd48879a08919b96afcd344132622e4d444987919323c",
    "Command": "/pause",
    "Created": 1718000090,
    "Ports": [],
    "Labels": {
      "annotation.kubernetes.io/config.source": "api",
      "io.kubernetes.container.name": "POD",
      "io.kubernetes.docker.type": "podsandbox",
      "io.kubernetes.pod.name": "web-7d4b9",
      "io.kubernetes.pod.namespace": "shop",
      "io.kubernetes.pod.uid": "0b5e6c2a-1f3d-4e5a-9c7b-2d8e4f6a1b3c"
    },
    "State": "running",
    "Status": "Up 3 hours",
    "HostConfig": {"NetworkMode": "none"},
    "NetworkSettings": {"Networks": {"none": {"NetworkID": "b1c2d3", "IPAddress": ""}}},
    "Mounts": []
  },
  {
    "Id": "c0ffee123456",
    "Names": ["/nginx-proxy"],
    "Image": "nginx:latest",
    "ImageID": "sha256:2b7d6430f78d432f89109b29d88d4c36c868cdbf15dc31d2132ceaa02b993763",
    "Command": "nginx -g 'daemon off;'",
    "Created": 1718000000,
    "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}],
    "Labels": {"com.docker.compose.project": "edge", "com.docker.compose.service": "proxy"},
    "State": "running",
    "Status": "Up 5 hours",
    "HostConfig": {"NetworkMode": "edge_default"},
    "NetworkSettings": {"Networks": {"edge_default": {"NetworkID": "7ea2", "IPAddress": "172.18.0.2", "IPPrefixLen": 16}}},
    "Mounts": [{"Type": "bind", "Source": "/srv/nginx", "Destination": "/etc/nginx", "Mode": "ro", "RW": false, "Propagation": "rprivate"}]
  },
  {
    "Id": "ab12cd34ef56",
    "Names": ["/web/db", "/db"],
    "Image": "postgres:16",
    "Command": "docker-entrypoint.sh postgres",
    "Created": 1717999000,
    "Labels": {},
    "State": "running",
    "Status": "Up 6 hours"
  }
]`

func TestDockerList(t *testing.T) {
	var gotMethod, gotPath atomic.Value
	path := serveDocker(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotMethod.Store(r.Method)
		gotPath.Store(r.URL.Path)
		answer(http.StatusOK, dockerPS)(w, r)
	}))
	c := NewDocker(path, time.Second)
	defer c.Close()
	if c.Runtime() != "docker" || c.Endpoint() != path {
		t.Errorf("Runtime, Endpoint = %q, %q; want docker, %q", c.Runtime(), c.Endpoint(), path)
	}
	snap, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if gotMethod.Load() != http.MethodGet || gotPath.Load() != "/containers/json" {
		t.Errorf("request = %v %v, want GET /containers/json", gotMethod.Load(), gotPath.Load())
	}
	const uid = "0b5e6c2a-1f3d-4e5a-9c7b-2d8e4f6a1b3c"
	wantPods := []Pod{{UID: uid, Namespace: "shop", Name: "web-7d4b9", SandboxID: "9a8b7c6d5e4f"}}
	if !reflect.DeepEqual(snap.Pods, wantPods) {
		t.Errorf("Pods =\n%+v\nwant\n%+v", snap.Pods, wantPods)
	}
	wantCtrs := []Container{
		{ID: "4e1f0c7a9b2d", Name: "nginx", SandboxID: "9a8b7c6d5e4f", PodUID: uid},
		{ID: "9a8b7c6d5e4f", Name: "POD", SandboxID: "9a8b7c6d5e4f", PodUID: uid},
		{ID: "c0ffee123456", Name: "nginx-proxy"},
		{ID: "ab12cd34ef56", Name: "db"},
	}
	if !reflect.DeepEqual(snap.Containers, wantCtrs) {
		t.Errorf("Containers =\n%+v\nwant\n%+v", snap.Containers, wantCtrs)
	}
}

func TestDockerPodFromAppContainersOnly(t *testing.T) {
	// No sandbox container listed: the pod comes from its containers'
	// labels, the sandbox from io.kubernetes.sandbox.id, and fields missing
	// from the first container are filled from the next.
	path := serveDocker(t, answer(http.StatusOK, `[
		{"Id": "a1", "Names": ["/k8s_a"], "Labels": {"io.kubernetes.pod.uid": "u1", "io.kubernetes.container.name": "a"}},
		{"Id": "b2", "Names": ["/k8s_b"], "Labels": {"io.kubernetes.pod.uid": "u1", "io.kubernetes.pod.name": "p", "io.kubernetes.pod.namespace": "n", "io.kubernetes.sandbox.id": "s1"}},
		{"Id": "c3", "Names": null, "Labels": null}
	]`))
	c := NewDocker(path, time.Second)
	defer c.Close()
	snap, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantPods := []Pod{{UID: "u1", Namespace: "n", Name: "p", SandboxID: "s1"}}
	if !reflect.DeepEqual(snap.Pods, wantPods) {
		t.Errorf("Pods = %+v, want %+v", snap.Pods, wantPods)
	}
	wantCtrs := []Container{
		{ID: "a1", Name: "a", PodUID: "u1"},
		{ID: "b2", Name: "k8s_b", SandboxID: "s1", PodUID: "u1"},
		{ID: "c3"},
	}
	if !reflect.DeepEqual(snap.Containers, wantCtrs) {
		t.Errorf("Containers = %+v, want %+v", snap.Containers, wantCtrs)
	}
}

func TestDockerBadAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   string // in the error; "" for no error
	}{
		{"garbage", http.StatusOK, "<html>not json", "decoding"},
		{"truncated", http.StatusOK, `[{"Id": "abc", "Names": ["/x"]`, "decoding"},
		{"wrong shape", http.StatusOK, `{"Id": 1}`, "decoding"},
		{"wrong field type", http.StatusOK, `[{"Id": 12, "Names": "/x"}]`, "decoding"},
		{"server error", http.StatusInternalServerError, `{"message": "something broke\nbadly"}`, "500 Internal Server Error: something broke badly"},
		{"old API", http.StatusBadRequest, `{"message":"client version 1.99 is too new"}`, "client version 1.99 is too new"},
		{"empty error", http.StatusNotFound, ``, "404 Not Found: empty answer"},
		{"null", http.StatusOK, `null`, ""},
		{"none", http.StatusOK, `[]`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewDocker(serveDocker(t, answer(tc.status, tc.body)), time.Second)
			defer c.Close()
			snap, err := c.List(context.Background())
			if tc.want == "" {
				if err != nil || len(snap.Pods)+len(snap.Containers) != 0 {
					t.Fatalf("List = %+v, %v; want nothing and no error", snap, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("List succeeded with %+v", snap)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line containing %q", err, tc.want)
			}
		})
	}
}

func TestDockerTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	path := serveDocker(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	c := NewDocker(path, 200*time.Millisecond)
	defer c.Close()
	start := time.Now()
	if _, err := c.List(context.Background()); err == nil {
		t.Fatal("List of a daemon that never answers succeeded")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("List took %v with a 200ms timeout", took)
	}
}

func TestDockerUnreachable(t *testing.T) {
	c := NewDocker(filepath.Join(shortDir(t), "docker.sock"), 500*time.Millisecond)
	defer c.Close()
	start := time.Now()
	_, err := c.List(context.Background())
	if err == nil {
		t.Fatal("List of an absent socket succeeded")
	}
	if !strings.Contains(err.Error(), "docker.sock") {
		t.Errorf("error %q does not name the socket", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("List took %v", took)
	}
}

func TestDockerName(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{nil, ""},
		{[]string{}, ""},
		{[]string{"/web"}, "web"},
		{[]string{"/app/db", "/db"}, "db"},
		{[]string{"/app/db"}, "app/db"},
		{[]string{"noslash"}, "noslash"},
	} {
		if got := dockerName(tc.names); got != tc.want {
			t.Errorf("dockerName(%q) = %q, want %q", tc.names, got, tc.want)
		}
	}
}
