package runtimeapi

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	long := "/" + strings.Repeat("d", maxSocketPath) // one byte too many
	for _, tc := range []struct {
		in   string
		want Endpoint
		err  string // in the error; "" for none
	}{
		{in: "unix:///run/containerd/containerd.sock", want: Endpoint{KindCRI, "/run/containerd/containerd.sock"}},
		{in: "/run/crio/crio.sock", want: Endpoint{KindCRI, "/run/crio/crio.sock"}},
		{in: "  /var/run/crio/crio.sock\n", want: Endpoint{KindCRI, "/var/run/crio/crio.sock"}},
		{in: "UNIX:///run/k3s/containerd/containerd.sock", want: Endpoint{KindCRI, "/run/k3s/containerd/containerd.sock"}},
		{in: "unix:///run//crio/../crio/crio.sock", want: Endpoint{KindCRI, "/run/crio/crio.sock"}},
		{in: "docker:///var/run/docker.sock", want: Endpoint{KindDocker, "/var/run/docker.sock"}},
		{in: "docker:///run/user/1000/docker-rootless.sock", want: Endpoint{KindDocker, "/run/user/1000/docker-rootless.sock"}},
		// Docker's own socket speaks no CRI: a path to it means Docker.
		{in: "/var/run/docker.sock", want: Endpoint{KindDocker, "/var/run/docker.sock"}},
		{in: "unix:///var/run/docker.sock", want: Endpoint{KindDocker, "/var/run/docker.sock"}},
		{in: "cri:///var/run/docker.sock", want: Endpoint{KindCRI, "/var/run/docker.sock"}},
		{in: "unix:///run/cri-dockerd.sock", want: Endpoint{KindCRI, "/run/cri-dockerd.sock"}},
		{in: "/" + strings.Repeat("d", maxSocketPath-1), want: Endpoint{KindCRI, "/" + strings.Repeat("d", maxSocketPath-1)}},

		{in: "", err: "empty runtime endpoint"},
		{in: "   ", err: "empty runtime endpoint"},
		{in: "run/crio/crio.sock", err: "must be absolute"},
		{in: "containerd.sock", err: "must be absolute"},
		{in: "unix://run/containerd/containerd.sock", err: "three slashes"},
		{in: "docker://", err: "three slashes"},
		{in: "unix:/run/containerd/containerd.sock", err: "SCHEME:///PATH"},
		{in: "tcp://127.0.0.1:2375", err: `unsupported scheme "tcp"`},
		{in: "npipe:////./pipe/docker_engine", err: `unsupported scheme "npipe"`},
		{in: "http://localhost/containers", err: `unsupported scheme "http"`},
		{in: "unix:///", err: "no socket path"},
		{in: "/", err: "no socket path"},
		{in: long, err: "at most 107"},
		{in: "unix://run\n/x", err: "three slashes"},
	} {
		got, err := ParseEndpoint(tc.in)
		if tc.err == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParseEndpoint(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
				continue
			}
			back, err := ParseEndpoint(got.String())
			if err != nil || back != got {
				t.Errorf("ParseEndpoint(%q.String() = %q) = %+v, %v; want it back", tc.in, got.String(), back, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("ParseEndpoint(%q) = %+v, want an error", tc.in, got)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.err) || strings.Contains(msg, "\n") {
			t.Errorf("ParseEndpoint(%q) error %q: want one line containing %q", tc.in, msg, tc.err)
		}
		if strings.TrimSpace(tc.in) != "" && !strings.Contains(msg, `"`) {
			t.Errorf("ParseEndpoint(%q) error %q does not quote the value", tc.in, msg)
		}
	}
}

func TestEndpointNewClient(t *testing.T) {
	for _, e := range []Endpoint{{KindCRI, "/run/containerd/containerd.sock"}, {KindDocker, "/var/run/docker.sock"}} {
		c, err := e.NewClient(0)
		if err != nil {
			t.Fatalf("%v.NewClient: %v", e, err)
		}
		if c.Endpoint() != e.Path {
			t.Errorf("%v.NewClient().Endpoint() = %q", e, c.Endpoint())
		}
		c.Close()
	}
	if _, isCRI := mustClient(t, Endpoint{KindCRI, "/run/crio/crio.sock"}).(*criClient); !isCRI {
		t.Error("a cri endpoint did not make a CRI client")
	}
	if _, isDocker := mustClient(t, Endpoint{KindDocker, "/run/docker.sock"}).(*dockerClient); !isDocker {
		t.Error("a docker endpoint did not make a Docker client")
	}
	if c, err := (Endpoint{"rkt", "/run/rkt.sock"}).NewClient(0); err == nil {
		c.Close()
		t.Error("an unknown kind made a client")
	}
}

func mustClient(t *testing.T, e Endpoint) Client {
	t.Helper()
	c, err := e.NewClient(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// mkSocket leaves a unix socket file at root+path, as a runtime would.
func mkSocket(t *testing.T, root, path string) {
	t.Helper()
	full := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: full, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
}

func mkFile(t *testing.T, root, path string) {
	t.Helper()
	full := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mkLink(t *testing.T, root, path, target string) {
	t.Helper()
	full := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, full); err != nil {
		t.Fatal(err)
	}
}

func TestDetect(t *testing.T) {
	t.Run("empty root", func(t *testing.T) {
		if got := Detect(shortDir(t)); len(got) != 0 {
			t.Errorf("Detect = %v, want nothing", got)
		}
	})

	t.Run("containerd and cri-o, docker.sock a regular file", func(t *testing.T) {
		root := shortDir(t)
		mkSocket(t, root, "/run/containerd/containerd.sock")
		mkSocket(t, root, "/run/crio/crio.sock")
		mkFile(t, root, "/run/docker.sock") // not a socket: ignored
		// /var/run -> /run, absolute as on the host: it must resolve inside
		// root, so /var/run/crio/crio.sock is the same socket, reported once.
		mkLink(t, root, "/var/run", "/run")
		want := []Endpoint{
			{KindCRI, filepath.Join(root, "/run/containerd/containerd.sock")},
			{KindCRI, filepath.Join(root, "/run/crio/crio.sock")},
		}
		if got := Detect(root); !reflect.DeepEqual(got, want) {
			t.Errorf("Detect =\n%v\nwant\n%v", got, want)
		}
	})

	t.Run("docker behind a relative link", func(t *testing.T) {
		root := shortDir(t)
		mkSocket(t, root, "/run/docker.sock")
		mkLink(t, root, "/var/run", "../run")
		mkFile(t, root, "/var/x") // /var exists as a real directory
		want := []Endpoint{{KindDocker, filepath.Join(root, "/run/docker.sock")}}
		if got := Detect(root); !reflect.DeepEqual(got, want) {
			t.Errorf("Detect = %v, want %v", got, want)
		}
	})

	t.Run("links do not escape root", func(t *testing.T) {
		root := shortDir(t)
		outside := shortDir(t)
		mkSocket(t, outside, "/crio.sock")
		// Both would reach the socket outside root if followed naively.
		mkLink(t, root, "/run/crio/crio.sock", filepath.Join(outside, "crio.sock"))
		mkLink(t, root, "/var/run/crio/crio.sock", strings.Repeat("../", 20)+strings.TrimPrefix(outside, "/")+"/crio.sock")
		// A loop must end, not hang.
		mkLink(t, root, "/run/containerd", "/run/containerd")
		if got := Detect(root); len(got) != 0 {
			t.Errorf("Detect = %v, want nothing", got)
		}
	})

	t.Run("socket behind a link to a socket", func(t *testing.T) {
		root := shortDir(t)
		mkSocket(t, root, "/run/k3s/containerd/containerd.sock")
		mkLink(t, root, "/run/containerd/containerd.sock", "/run/k3s/containerd/containerd.sock")
		want := []Endpoint{{KindCRI, filepath.Join(root, "/run/k3s/containerd/containerd.sock")}}
		if got := Detect(root); !reflect.DeepEqual(got, want) {
			t.Errorf("Detect = %v, want %v", got, want)
		}
	})
}
