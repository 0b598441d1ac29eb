// Package runtimeapi asks the node's container runtime for the names behind
// container IDs and pod UIDs, without any access to the Kubernetes API.
//
// Two kinds of runtime are spoken to, each over a unix socket:
//
//   - CRI runtimes (containerd, CRI-O, cri-dockerd) over gRPC with the
//     Kubernetes CRI v1 RuntimeService: Version names the runtime,
//     ListPodSandbox gives the pods (sandbox ID, pod UID, namespace, name)
//     and ListContainers the containers (ID, name, sandbox ID). See NewCRI.
//   - The Docker Engine API over HTTP: GET /containers/json gives the running
//     containers' IDs, names and labels. Containers started by dockershim or
//     cri-dockerd carry the Kubernetes labels io.kubernetes.pod.uid,
//     io.kubernetes.pod.name, io.kubernetes.pod.namespace,
//     io.kubernetes.container.name and io.kubernetes.sandbox.id, from which
//     the pods are read, so a Docker-on-Kubernetes node still gets pod names.
//     See NewDocker.
//
// The API:
//
//	type Pod struct{ UID, Namespace, Name, SandboxID string }
//	type Container struct{ ID, Name, SandboxID, PodUID string }
//	type Snapshot struct{ Pods []Pod; Containers []Container }
//
//	type Client interface {
//		Runtime() string  // "containerd", "cri-o", "docker", ...
//		Endpoint() string // the socket path
//		List(ctx context.Context) (Snapshot, error)
//		Close() error
//	}
//	func NewCRI(socketPath string, timeout time.Duration) (Client, error)
//	func NewDocker(socketPath string, timeout time.Duration) Client
//
//	type Endpoint struct{ Kind, Path string } // Kind is KindCRI or KindDocker
//	func Detect(rootfs string) []Endpoint
//	func ParseEndpoint(s string) (Endpoint, error)
//	func (e Endpoint) NewClient(timeout time.Duration) (Client, error)
//
//	type Directory struct{ ... }
//	func NewDirectory(clients []Client, minRefresh time.Duration, logger *slog.Logger) *Directory
//	func (d *Directory) Pod(ctx context.Context, uid string) (Pod, string, bool)
//	func (d *Directory) Container(ctx context.Context, id string) (Container, string, bool)
//	func (d *Directory) Refresh(ctx context.Context)
//	func (d *Directory) Refreshes() uint64
//	func (d *Directory) Status() []ClientStatus
//
//	type ClientStatus struct {
//		Runtime, Endpoint string
//		Checked, Up       bool // called yet; last call succeeded
//		LastSuccess       time.Time
//		LastErrorTime     time.Time
//		LastError         error
//		Pods, Containers  int // what the last successful call listed
//	}
//
// A Client makes one runtime round trip per List, bounded by its timeout.
// The Directory is what the exporter asks: it caches the runtimes' answers
// and calls them again only when asked for an ID it does not know, at most
// once per minRefresh, with concurrent callers sharing one refresh. A
// refresh replaces what each answering runtime listed before, so memory
// follows the live pods and containers.
//
// Nothing here invents a value: a field the runtime left empty (or a CRI
// message without metadata) stays "".
//
// # Endpoint syntax
//
// ParseEndpoint accepts, for a flag such as --runtime.endpoint:
//
//	unix:///run/containerd/containerd.sock  CRI at that path
//	/run/crio/crio.sock                     CRI at that path
//	cri:///var/run/docker.sock              CRI at that path, whatever its name
//	docker:///var/run/docker.sock           Docker Engine API at that path
//
// A path (bare or unix://) means CRI unless its file name is "docker.sock",
// which is Docker's own socket and never speaks CRI: then it means Docker,
// so DOCKER_HOST's usual value unix:///var/run/docker.sock works as given.
// The cri:// and docker:// schemes choose the kind explicitly. Paths must be
// absolute and fit in a unix socket address (at most 107 bytes). The path is
// used as given: it is not joined with a rootfs.
package runtimeapi

import (
	"context"
	"time"
)

// Kinds of runtime endpoint.
const (
	KindCRI    = "cri"
	KindDocker = "docker"
)

// DefaultTimeout bounds one List when a constructor is given a timeout <= 0.
const DefaultTimeout = 2 * time.Second

// maxResponseBytes caps one runtime answer (a gRPC message or the Docker
// JSON body). A node at the kubelet's pod limit lists a few hundred
// sandboxes and containers, a few MiB at most; this leaves ample room
// without letting a broken runtime make us allocate without bound.
const maxResponseBytes = 64 << 20

// Pod is a pod as a runtime reports it. For CRI it is a pod sandbox;
// for Docker it is read from the Kubernetes labels of its containers.
type Pod struct {
	UID       string
	Namespace string
	Name      string
	// SandboxID is the runtime's ID of the pod sandbox (for Docker, of the
	// pause container), "" when the runtime did not say.
	SandboxID string
}

// Container is a container as a runtime reports it.
type Container struct {
	ID string
	// Name is the Kubernetes container name (CRI metadata, or Docker's
	// io.kubernetes.container.name label), else for a plain Docker
	// container its Docker name without the leading slash.
	Name string
	// SandboxID is the pod sandbox the container runs in, "" when none.
	SandboxID string
	// PodUID is filled when the runtime says: for CRI through the sandbox
	// the container runs in, for Docker through the io.kubernetes.pod.uid
	// label.
	PodUID string
}

// Snapshot is everything one runtime listed in one List call.
type Snapshot struct {
	Pods       []Pod
	Containers []Container
}

// Client lists what one container runtime runs. Implementations are safe
// for concurrent use, and List returns within the client's timeout (or
// sooner if ctx ends first).
type Client interface {
	// Runtime names the runtime: "containerd", "cri-o", "docker", or what
	// a CRI runtime calls itself in its Version answer. Before a CRI
	// runtime has answered, it is a guess from the socket path ("cri" when
	// the path gives no hint).
	Runtime() string
	// Endpoint is the socket path the client talks to.
	Endpoint() string
	// List asks the runtime for its pods and containers.
	List(ctx context.Context) (Snapshot, error)
	// Close releases the client's connection.
	Close() error
}

func orDefault(timeout time.Duration) time.Duration {
	if timeout <= 0 {
		return DefaultTimeout
	}
	return timeout
}
