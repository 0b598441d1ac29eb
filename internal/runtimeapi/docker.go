package runtimeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"
)

// dockerListURL lists the running containers. The path carries no API
// version: the daemon then answers with the newest version it has, which
// every Docker since API 1.24 (and 20.10 in particular) accepts, while a
// pinned version would be refused by daemons older than the pin. The host
// part is not used: every request goes to the socket.
const dockerListURL = "http://docker/containers/json"

type dockerClient struct {
	path      string
	timeout   time.Duration
	transport *http.Transport
	http      *http.Client
}

// dockerContainer is the part of a /containers/json item that we read.
type dockerContainer struct {
	ID     string            `json:"Id"`
	Names  []string          `json:"Names"`
	Labels map[string]string `json:"Labels"`
}

// NewDocker returns a Client for the Docker Engine API on the unix socket at
// socketPath (usually /var/run/docker.sock). It does not connect until List.
// Each List is bounded by timeout (DefaultTimeout when timeout <= 0).
func NewDocker(socketPath string, timeout time.Duration) Client {
	if abs, err := filepath.Abs(socketPath); err == nil {
		socketPath = abs
	}
	timeout = orDefault(timeout)
	path := socketPath
	dialer := &net.Dialer{Timeout: timeout}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", path)
		},
		MaxIdleConns:          1,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: timeout,
		DisableCompression:    true,
	}
	return &dockerClient{
		path:      socketPath,
		timeout:   timeout,
		transport: tr,
		http:      &http.Client{Transport: tr, Timeout: timeout},
	}
}

func (c *dockerClient) Runtime() string  { return "docker" }
func (c *dockerClient) Endpoint() string { return c.path }

func (c *dockerClient) Close() error {
	c.transport.CloseIdleConnections()
	return nil
}

// List asks GET /containers/json for the running containers. Containers
// labelled by the kubelet (dockershim, cri-dockerd) also give Pods: one per
// io.kubernetes.pod.uid, named by the pod name and namespace labels, whose
// SandboxID is the pause container's ID (io.kubernetes.docker.type
// "podsandbox") or the io.kubernetes.sandbox.id label of its containers.
func (c *dockerClient) List(ctx context.Context) (Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, dockerListURL, http.NoBody)
	if err != nil {
		return Snapshot{}, c.errorf(err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return Snapshot{}, c.errorf(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return Snapshot{}, c.errorf(err)
	}
	if resp.StatusCode != http.StatusOK {
		return Snapshot{}, c.errorf(fmt.Errorf("%s: %s", resp.Status, dockerMessage(body)))
	}
	if len(body) > maxResponseBytes {
		return Snapshot{}, c.errorf(fmt.Errorf("answer larger than %d bytes", maxResponseBytes))
	}
	var ctrs []dockerContainer
	if err := json.Unmarshal(body, &ctrs); err != nil {
		return Snapshot{}, c.errorf(fmt.Errorf("decoding the answer: %w", err))
	}
	return dockerSnapshot(ctrs), nil
}

func (c *dockerClient) errorf(err error) error {
	return fmt.Errorf("docker %s: GET /containers/json: %w", c.path, err)
}

// dockerMessage returns the message of a Docker error body
// ({"message": "..."}) on one line, or a short excerpt of a body that is not
// one.
func dockerMessage(body []byte) string {
	var e struct {
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		msg = e.Message
	}
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		msg = "empty answer"
	}
	return msg
}

func dockerSnapshot(ctrs []dockerContainer) Snapshot {
	var snap Snapshot
	podAt := map[string]int{} // pod UID → index in snap.Pods
	for _, ct := range ctrs {
		l := ct.Labels // reading a nil map is fine
		isSandbox := l[labelDockerType] == "podsandbox"
		sandbox := l[labelSandboxID]
		if isSandbox && ct.ID != "" {
			sandbox = ct.ID
		}
		uid := l[labelPodUID]
		snap.Containers = append(snap.Containers, Container{
			ID:        ct.ID,
			Name:      firstNonEmpty(l[labelContainerName], dockerName(ct.Names)),
			SandboxID: sandbox,
			PodUID:    uid,
		})
		if uid == "" {
			continue
		}
		p := Pod{UID: uid, Namespace: l[labelPodNamespace], Name: l[labelPodName], SandboxID: sandbox}
		i, ok := podAt[uid]
		if !ok {
			podAt[uid] = len(snap.Pods)
			snap.Pods = append(snap.Pods, p)
			continue
		}
		q := &snap.Pods[i]
		q.Namespace = firstNonEmpty(q.Namespace, p.Namespace)
		q.Name = firstNonEmpty(q.Name, p.Name)
		if isSandbox {
			q.SandboxID = firstNonEmpty(p.SandboxID, q.SandboxID)
		} else {
			q.SandboxID = firstNonEmpty(q.SandboxID, p.SandboxID)
		}
	}
	return snap
}

// dockerName returns a container's own name from its Names ("/web"), not a
// legacy link alias ("/other/web"), without the leading slash.
func dockerName(names []string) string {
	for _, n := range names {
		n = strings.TrimPrefix(n, "/")
		if n != "" && !strings.Contains(n, "/") {
			return n
		}
	}
	if len(names) > 0 {
		return strings.TrimPrefix(names[0], "/")
	}
	return ""
}
