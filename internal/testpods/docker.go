package testpods

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dockerAPI is the Engine API version of dockerd 20.10.
const dockerAPI = "/v1.41"

// Docker is a dockerd running in a private network namespace with its
// data and exec roots in a temporary directory, and a containerd of its
// own beside it (as Debian runs them).
type Docker struct {
	Socket    string // its Engine API unix socket
	NetnsPath string // the private network namespace it and its containerd run in
	PID       int    // the dockerd process
	dir       string // their configuration, data, state and logs
	ctrdSock  string // its containerd's socket
	client    *http.Client
	proc      *process
	ctrd      *process
	stopped   atomic.Bool // set when cleanup starts: the containers are its to remove
}

// DockerContainer is a container run by Docker.Run.
type DockerContainer struct {
	ID        string // full container ID
	Name      string // name, without the leading slash
	PID       int    // its process
	NetnsPath string // its network namespace (docker's sandbox key)

	d      *Docker
	remove sync.Once
}

// StartDocker starts dockerd 20.10 (cgroupfs driver, no bridge, no
// iptables) in a new network namespace, imports Image and waits until the
// Engine API answers. Everything is stopped and removed when the test
// ends.
func StartDocker(t testing.TB) *Docker {
	t.Helper()
	requireTools(t, tool{"dockerd", "docker.io"})
	art := buildFiles(t)
	start := time.Now()

	dir, err := os.MkdirTemp("", "lqd")
	if err != nil {
		t.Fatal(err)
	}
	d := &Docker{dir: dir, ctrdSock: filepath.Join(dir, "c.sock")}
	d.Socket = filepath.Join(dir, "d.sock")
	d.NetnsPath = filepath.Join(dir, "netns")
	var removeNetns func() error
	var releaseShared func()
	t.Cleanup(func() {
		for _, err := range d.cleanup(t, removeNetns) {
			t.Error(err)
		}
		if releaseShared != nil {
			releaseShared()
		}
	})
	releaseShared = holdShared(t)
	if removeNetns, err = newNetns(d.NetnsPath); err != nil {
		t.Fatal(err)
	}

	ctrdDir := filepath.Join(dir, "containerd")
	if err := os.Mkdir(ctrdDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctrdConfig := filepath.Join(ctrdDir, "config.toml")
	if err := os.WriteFile(ctrdConfig, containerdConfig(ctrdDir, d.ctrdSock, "", "io.containerd.grpc.v1.cri"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctrdLog := filepath.Join(ctrdDir, "containerd.log")
	if d.ctrd, err = startDaemon(d.NetnsPath, ctrdLog, "containerd", "--config", ctrdConfig); err != nil {
		t.Fatalf("start containerd for dockerd: %v", err)
	}
	err = waitFor(startTimeout, func() (bool, error) {
		if err := d.ctrd.exited(); err != nil {
			return false, err
		}
		_, err := os.Stat(d.ctrdSock)
		return err == nil, err
	})
	if err != nil {
		log, _ := os.ReadFile(ctrdLog)
		t.Fatalf("containerd for dockerd: not ready: %v\ncontainerd log:\n%s", err, tail(log, 4000))
	}

	storage := "overlay2"
	if onOverlay(dir) {
		storage = "vfs"
	}
	// The trust key would otherwise go to /etc/docker/key.json.
	config, _ := json.MarshalIndent(map[string]any{
		"data-root":           filepath.Join(dir, "data"),
		"exec-root":           filepath.Join(dir, "x"),
		"containerd":          d.ctrdSock,
		"deprecated-key-path": filepath.Join(dir, "key.json"),
		"pidfile":             filepath.Join(dir, "dockerd.pid"),
		"hosts":               []string{"unix://" + d.Socket},
		"bridge":              "none",
		"iptables":            false,
		"ip-forward":          false,
		"ip-masq":             false,
		"userland-proxy":      false,
		"exec-opts":           []string{"native.cgroupdriver=cgroupfs"},
		"storage-driver":      storage,
		"log-driver":          "json-file",
		"live-restore":        false,
	}, "", "  ")
	configPath := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(configPath, config, 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "dockerd.log")
	if d.proc, err = startDaemon(d.NetnsPath, logPath, "dockerd", "--config-file", configPath); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	d.PID = d.proc.pid
	failf := func(format string, args ...any) {
		t.Helper()
		log, _ := os.ReadFile(logPath)
		t.Fatalf("dockerd: "+format+"\ndockerd log:\n%s", append(args, tail(log, 4000))...)
	}

	d.client = &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var dialer net.Dialer
				return dialer.DialContext(ctx, "unix", d.Socket)
			},
		},
	}
	err = waitFor(startTimeout, func() (bool, error) {
		if err := d.proc.exited(); err != nil {
			return false, err
		}
		_, err := d.call(http.MethodGet, "/_ping", nil, nil)
		return err == nil, err
	})
	if err != nil {
		failf("not ready: %v", err)
	}

	rootfs, err := os.Open(art.rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer rootfs.Close()
	repo, tag, _ := strings.Cut(Image, ":")
	q := url.Values{"fromSrc": {"-"}, "repo": {repo}, "tag": {tag}}
	out, err := d.call(http.MethodPost, "/images/create?"+q.Encode(), rootfs, nil)
	if err == nil && bytes.Contains(out, []byte(`"error"`)) {
		err = errors.New(string(out))
	}
	if err != nil {
		failf("import %s: %v", Image, err)
	}
	t.Logf("dockerd (pid %d) ready on %s in %v", d.PID, d.Socket, time.Since(start).Round(time.Millisecond))
	return d
}

// call makes an Engine API request; a non-2xx answer is an error. body may
// be nil; a JSON answer is decoded into result if it is not nil.
func (d *Docker) call(method, path string, body io.Reader, result any) ([]byte, error) {
	req, err := http.NewRequest(method, "http://docker"+dockerAPI+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		if _, ok := body.(*os.File); ok {
			req.Header.Set("Content-Type", "application/x-tar")
		} else {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return out, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(out))
	}
	if result != nil {
		if err := json.Unmarshal(out, result); err != nil {
			return out, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return out, nil
}

// Run runs a container named name with the command argv in Image, with
// network mode none (a network namespace of its own with only loopback),
// and returns it. When argv runs the app (argv[0] is AppPath), the app
// has filled its queues when Run returns. The container is removed when
// the test ends, if Remove has not removed it before.
func (d *Docker) Run(t testing.TB, name string, argv ...string) *DockerContainer {
	t.Helper()
	start := time.Now()
	c := &DockerContainer{Name: name, d: d}
	spec, _ := json.Marshal(map[string]any{
		"Image":      Image,
		"Cmd":        argv,
		"HostConfig": map[string]any{"NetworkMode": "none"},
	})
	var created struct{ ID string }
	if _, err := d.call(http.MethodPost, "/containers/create?"+url.Values{"name": {name}}.Encode(), bytes.NewReader(spec), &created); err != nil {
		t.Fatalf("docker: create container %s: %v", name, err)
	}
	c.ID = created.ID
	t.Cleanup(func() { c.Remove(t) })
	if _, err := d.call(http.MethodPost, "/containers/"+c.ID+"/start", nil, nil); err != nil {
		t.Fatalf("docker: start container %s: %v", name, err)
	}
	if len(argv) > 0 && argv[0] == AppPath {
		var logs []byte
		err := waitFor(readyTimeout, func() (bool, error) {
			var err error
			logs, err = d.call(http.MethodGet, "/containers/"+c.ID+"/logs?stdout=1&stderr=1", nil, nil)
			if err != nil || hasReady(string(logs)) {
				return err == nil, err
			}
			var st struct{ State struct{ Running bool } }
			if _, err := d.call(http.MethodGet, "/containers/"+c.ID+"/json", nil, &st); err == nil && !st.State.Running {
				return false, permanentError{errors.New("exited")}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("docker: container %s did not print %s: %v\nits log:\n%s", name, readyWord, err, tail(demuxLogs(logs), 4000))
		}
	}
	var inspect struct {
		Name  string
		State struct {
			Running bool
			Pid     int
		}
		NetworkSettings struct{ SandboxKey string }
	}
	if _, err := d.call(http.MethodGet, "/containers/"+c.ID+"/json", nil, &inspect); err != nil {
		t.Fatalf("docker: inspect container %s: %v", name, err)
	}
	if !inspect.State.Running || inspect.State.Pid <= 0 {
		t.Fatalf("docker: container %s is not running", name)
	}
	c.Name = strings.TrimPrefix(inspect.Name, "/")
	c.PID = inspect.State.Pid
	c.NetnsPath = inspect.NetworkSettings.SandboxKey
	t.Logf("docker container %s (%.12s) running in %v", c.Name, c.ID, time.Since(start).Round(time.Millisecond))
	return c
}

// demuxLogs returns the text of the Engine API's multiplexed log stream:
// frames of a byte for the stream, three zero bytes, a big-endian 32-bit
// length and that much text.
func demuxLogs(b []byte) []byte {
	var out []byte
	for len(b) >= 8 {
		n := int(binary.BigEndian.Uint32(b[4:8]))
		if b[0] > 2 || b[1] != 0 || len(b) < 8+n {
			return append(out, b...) // not multiplexed after all
		}
		out = append(out, b[8:8+n]...)
		b = b[8+n:]
	}
	return append(out, b...)
}

// Remove removes the container (killing its process) through the Engine
// API, then makes sure its cgroup is gone. Later calls, and calls after
// dockerd was stopped (which removes its containers first), do nothing.
func (c *DockerContainer) Remove(t testing.TB) {
	t.Helper()
	c.remove.Do(func() {
		if c.d.stopped.Load() {
			return // dockerd's cleanup removed it
		}
		if _, err := c.d.call(http.MethodDelete, "/containers/"+c.ID+"?force=1&v=1", nil, nil); err != nil {
			t.Errorf("docker: remove container %s: %v", c.Name, err)
		}
		if err := removeCgroup("/docker/" + c.ID); err != nil {
			t.Errorf("docker: remove container %s: %v", c.Name, err)
		}
	})
}

// cleanup removes the containers left, stops dockerd (which stops its
// containerd) and removes everything it created, as far as it got;
// removeNetns may be nil.
func (d *Docker) cleanup(t testing.TB, removeNetns func() error) []error {
	d.stopped.Store(true)
	var errs []error
	if d.proc != nil && d.client != nil {
		var list []struct{ ID string }
		if _, err := d.call(http.MethodGet, "/containers/json?all=1", nil, &list); err == nil {
			for _, c := range list {
				if _, err := d.call(http.MethodDelete, "/containers/"+c.ID+"?force=1&v=1", nil, nil); err != nil {
					errs = append(errs, err)
				}
				_ = removeCgroup("/docker/" + c.ID)
			}
		}
		d.client.CloseIdleConnections()
	}
	if d.proc != nil {
		if err := d.proc.stop(stopTimeout); err != nil {
			errs = append(errs, fmt.Errorf("stop dockerd (pid %d): %w", d.PID, err))
		}
	}
	if d.ctrd != nil {
		if err := d.ctrd.stop(stopTimeout); err != nil {
			errs = append(errs, fmt.Errorf("stop dockerd's containerd (pid %d): %w", d.ctrd.pid, err))
		}
		if n := killShims(d.ctrdSock); n > 0 {
			t.Logf("dockerd's containerd left %d shims; killed them", n)
		}
	}
	if err := unmountUnder(d.dir); err != nil {
		errs = append(errs, err)
	}
	if removeNetns != nil {
		if err := removeNetns(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(d.dir); err != nil {
		errs = append(errs, err)
	}
	return errs
}
