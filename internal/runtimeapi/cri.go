package runtimeapi

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	runtimev1 "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Kubernetes labels the kubelet puts on what it starts, through CRI and
// through dockershim or cri-dockerd alike.
const (
	labelPodUID        = "io.kubernetes.pod.uid"
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelContainerName = "io.kubernetes.container.name"
	labelSandboxID     = "io.kubernetes.sandbox.id"
	labelDockerType    = "io.kubernetes.docker.type"
)

// reconnectMaxDelay caps gRPC's reconnect backoff. The runtime is a local
// socket, so retrying is cheap, and a restarted runtime should be noticed
// within seconds rather than gRPC's default two minutes.
const reconnectMaxDelay = 5 * time.Second

type criClient struct {
	path    string
	timeout time.Duration
	conn    *grpc.ClientConn
	rt      runtimev1.RuntimeServiceClient

	mu   sync.Mutex
	name string // RuntimeName from the first successful Version
}

// NewCRI returns a Client for the CRI runtime listening on the unix socket
// at socketPath. It does not connect: an absent or unreachable socket is not
// an error here but shows on List, which reconnects as needed. Each List is
// bounded by timeout (DefaultTimeout when timeout <= 0). It fails only for a
// path that cannot make a gRPC target.
func NewCRI(socketPath string, timeout time.Duration) (Client, error) {
	if socketPath == "" {
		return nil, errors.New("cri: empty socket path")
	}
	abs, err := filepath.Abs(socketPath)
	if err != nil {
		return nil, fmt.Errorf("cri %s: %w", socketPath, err)
	}
	timeout = orDefault(timeout)
	bo := backoff.DefaultConfig
	bo.MaxDelay = reconnectMaxDelay
	conn, err := grpc.NewClient("unix://"+abs,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxResponseBytes)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: timeout}),
	)
	if err != nil {
		return nil, fmt.Errorf("cri %s: %w", abs, err)
	}
	return &criClient{
		path:    abs,
		timeout: timeout,
		conn:    conn,
		rt:      runtimev1.NewRuntimeServiceClient(conn),
	}, nil
}

func (c *criClient) Endpoint() string { return c.path }

func (c *criClient) Runtime() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.name != "" {
		return c.name
	}
	return guessRuntime(c.path)
}

// guessRuntime names a CRI runtime from its socket path, for the time
// before it has answered Version.
func guessRuntime(path string) string {
	p := strings.ToLower(path)
	switch {
	case strings.Contains(p, "containerd"):
		return "containerd"
	case strings.Contains(p, "crio"), strings.Contains(p, "cri-o"):
		return "cri-o"
	case strings.Contains(p, "docker"):
		return "docker" // cri-dockerd
	}
	return KindCRI
}

func (c *criClient) Close() error { return c.conn.Close() }

// List asks Version (until the runtime has named itself), ListPodSandbox
// and ListContainers, all within one timeout.
//
// Pods holds one Pod per pod UID: when the runtime keeps several sandboxes
// of a pod (a recreated sandbox and its stopped predecessor) the ready one,
// else the newest, stands for it. A sandbox without a UID is a Pod of its
// own with UID "". A container's PodUID comes from its sandbox, or failing
// that from its io.kubernetes.pod.uid label.
func (c *criClient) List(ctx context.Context) (Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	c.mu.Lock()
	named := c.name != ""
	c.mu.Unlock()
	if !named {
		v, err := c.rt.Version(ctx, &runtimev1.VersionRequest{})
		if err != nil {
			return Snapshot{}, c.errorf("Version", err)
		}
		if n := v.GetRuntimeName(); n != "" {
			c.mu.Lock()
			c.name = n
			c.mu.Unlock()
		}
	}
	sbs, err := c.rt.ListPodSandbox(ctx, &runtimev1.ListPodSandboxRequest{})
	if err != nil {
		return Snapshot{}, c.errorf("ListPodSandbox", err)
	}
	ctrs, err := c.rt.ListContainers(ctx, &runtimev1.ListContainersRequest{})
	if err != nil {
		return Snapshot{}, c.errorf("ListContainers", err)
	}
	return criSnapshot(sbs.GetItems(), ctrs.GetContainers()), nil
}

func (c *criClient) errorf(call string, err error) error {
	return fmt.Errorf("cri %s: %s: %w", c.path, call, err)
}

func criSnapshot(sbs []*runtimev1.PodSandbox, ctrs []*runtimev1.Container) Snapshot {
	var snap Snapshot
	uidOf := make(map[string]string, len(sbs)) // sandbox ID → pod UID
	best := make(map[string]int, len(sbs))     // pod UID → index in snap.Pods
	chosen := make([]*runtimev1.PodSandbox, 0, len(sbs))
	for _, sb := range sbs {
		if sb == nil {
			continue
		}
		p := criPod(sb)
		if p.SandboxID != "" && p.UID != "" {
			uidOf[p.SandboxID] = p.UID
		}
		if p.UID == "" {
			snap.Pods = append(snap.Pods, p)
			chosen = append(chosen, sb)
			continue
		}
		i, ok := best[p.UID]
		if !ok {
			best[p.UID] = len(snap.Pods)
			snap.Pods = append(snap.Pods, p)
			chosen = append(chosen, sb)
			continue
		}
		if betterSandbox(sb, chosen[i]) {
			snap.Pods[i], chosen[i] = p, sb
		}
	}
	for _, ct := range ctrs {
		if ct == nil {
			continue
		}
		sandbox := ct.GetPodSandboxId()
		uid := uidOf[sandbox]
		if uid == "" {
			uid = ct.GetLabels()[labelPodUID]
		}
		snap.Containers = append(snap.Containers, Container{
			ID:        ct.GetId(),
			Name:      ct.GetMetadata().GetName(),
			SandboxID: sandbox,
			PodUID:    uid,
		})
	}
	return snap
}

// criPod reads a sandbox's pod identity from its metadata, falling back to
// the kubelet's labels on the sandbox for fields the metadata lacks.
func criPod(sb *runtimev1.PodSandbox) Pod {
	md, labels := sb.GetMetadata(), sb.GetLabels()
	return Pod{
		UID:       firstNonEmpty(md.GetUid(), labels[labelPodUID]),
		Namespace: firstNonEmpty(md.GetNamespace(), labels[labelPodNamespace]),
		Name:      firstNonEmpty(md.GetName(), labels[labelPodName]),
		SandboxID: sb.GetId(),
	}
}

// betterSandbox reports whether a should stand for its pod rather than b:
// a ready sandbox beats one that is not, then the newer one wins.
func betterSandbox(a, b *runtimev1.PodSandbox) bool {
	aReady := a.GetState() == runtimev1.PodSandboxState_SANDBOX_READY
	bReady := b.GetState() == runtimev1.PodSandboxState_SANDBOX_READY
	if aReady != bReady {
		return aReady
	}
	return a.GetCreatedAt() > b.GetCreatedAt()
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
