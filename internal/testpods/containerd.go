package testpods

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criNamespace is the containerd namespace of the CRI plugin.
const criNamespace = "k8s.io"

// cniResultsDir is where containerd 1.6 (libcni) caches CNI results,
// whatever its root.
const cniResultsDir = "/var/lib/cni/results"

// Containerd is a containerd with its CRI plugin, running in a private
// network namespace with its state in a temporary directory.
type Containerd struct {
	Socket    string                          // its gRPC (CRI) unix socket
	NetnsPath string                          // the private network namespace it runs in
	PID       int                             // the containerd process
	Runtime   runtimeapi.RuntimeServiceClient // a CRI client on Socket
	Images    runtimeapi.ImageServiceClient   // a CRI image client on Socket
	dir       string                          // its config, state and logs
	network   string                          // name of its CNI network
	snapshot  string                          // its snapshotter
	conn      *grpc.ClientConn
	proc      *process
	stopped   atomic.Bool // set when cleanup starts: the pods are its to remove
}

// Container is a container of a pod: its name and command, which runs in
// Image (App.Command for the app).
type Container struct {
	Name    string
	Command []string
}

// Pod is a pod run by Containerd.RunPod.
type Pod struct {
	UID          string            // metadata uid, a random UUID
	Namespace    string            // Kubernetes namespace
	Name         string            // pod name
	SandboxID    string            // CRI pod sandbox ID
	SandboxPID   int               // the sandbox ("pause") process
	NetnsPath    string            // the pod's network namespace, /var/run/netns/cni-<uuid>
	ContainerIDs map[string]string // CRI container ID by container name
	PIDs         map[string]int    // the process of each container, by container name

	c      *Containerd
	remove sync.Once
}

// StartContainerd starts containerd 1.6 with its CRI plugin (cgroupfs
// driver, bridge CNI network on a private range) in a new network
// namespace, imports Image and waits until the CRI API is ready. Everything
// is stopped and removed when the test ends.
func StartContainerd(t testing.TB) *Containerd {
	t.Helper()
	requireTools(t, tool{"ctr", "containerd"})
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniDir, p)); err != nil {
			msg := fmt.Sprintf("CNI plugin %s: %v", p, err)
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s; apt-get install containernetworking-plugins (CI=true, so this is a failure, not a skip)", msg)
			}
			t.Skipf("%s (apt-get install containernetworking-plugins); skipping. With CI=true this fails.", msg)
		}
	}
	art := buildFiles(t)
	start := time.Now()

	// Unix socket paths are at most 107 bytes: a short directory.
	dir, err := os.MkdirTemp("", "lqc")
	if err != nil {
		t.Fatal(err)
	}
	c := &Containerd{dir: dir, network: "lqtest-" + filepath.Base(dir)[3:], snapshot: "overlayfs"}
	if onOverlay(dir) {
		c.snapshot = "native"
	}
	c.Socket = filepath.Join(dir, "c.sock")
	var removeNetns func() error
	var releaseShared func()
	t.Cleanup(func() {
		for _, err := range c.cleanup(t, removeNetns) {
			t.Error(err)
		}
		if releaseShared != nil {
			releaseShared()
		}
	})
	releaseShared = holdShared(t)

	c.NetnsPath = filepath.Join(dir, "netns")
	if removeNetns, err = newNetns(c.NetnsPath); err != nil {
		t.Fatal(err)
	}
	cniConf := filepath.Join(dir, "cni")
	if err := os.Mkdir(cniConf, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cniConf, "10-lqtest.conflist"), c.cniConfig(), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(config, containerdConfig(dir, c.Socket, c.criConfig(cniConf)), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "containerd.log")
	if c.proc, err = startDaemon(c.NetnsPath, logPath, "containerd", "--config", config); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	c.PID = c.proc.pid
	failf := func(format string, args ...any) {
		t.Helper()
		log, _ := os.ReadFile(logPath)
		t.Fatalf("containerd: "+format+"\ncontainerd log:\n%s", append(args, tail(log, 4000))...)
	}

	c.conn, err = grpc.NewClient("unix://"+c.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		failf("gRPC client: %v", err)
	}
	c.Runtime = runtimeapi.NewRuntimeServiceClient(c.conn)
	c.Images = runtimeapi.NewImageServiceClient(c.conn)
	err = waitFor(startTimeout, func() (bool, error) {
		if err := c.proc.exited(); err != nil {
			return false, err
		}
		if _, err := os.Stat(c.Socket); err != nil {
			return false, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := c.Runtime.Status(ctx, &runtimeapi.StatusRequest{})
		if err != nil {
			return false, err
		}
		for _, cond := range st.GetStatus().GetConditions() {
			if !cond.GetStatus() {
				return false, fmt.Errorf("condition %s: %s %s", cond.GetType(), cond.GetReason(), cond.GetMessage())
			}
		}
		return true, nil
	})
	if err != nil {
		failf("not ready: %v", err)
	}

	out, err := run(2*time.Minute, "ctr", "--address", c.Socket, "--namespace", criNamespace,
		"images", "import", "--snapshotter", c.snapshot, art.oci)
	if err != nil {
		failf("ctr images import: %v\n%s", err, out)
	}
	// The CRI plugin learns of the image from an event: wait for it.
	err = waitFor(startTimeout, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := c.Images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: Image}})
		return err == nil && st.GetImage() != nil, err
	})
	if err != nil {
		failf("image %s not seen by the CRI plugin: %v", Image, err)
	}
	t.Logf("containerd (pid %d) ready on %s in %v", c.PID, c.Socket, time.Since(start).Round(time.Millisecond))
	return c
}

// containerdConfig returns a containerd 1.6 configuration with its root,
// state and socket in dir, without the plugins that would touch the host
// (opt would create /opt/containerd), plus extra (TOML) and the plugins in
// disable.
func containerdConfig(dir, socket, extra string, disable ...string) []byte {
	disabled := append([]string{
		"io.containerd.internal.v1.opt",
		"io.containerd.snapshotter.v1.aufs",
		"io.containerd.snapshotter.v1.btrfs",
		"io.containerd.snapshotter.v1.devmapper",
		"io.containerd.snapshotter.v1.zfs",
		"io.containerd.tracing.processor.v1.otlp",
	}, disable...)
	quoted := make([]string, len(disabled))
	for i, d := range disabled {
		quoted[i] = strconv.Quote(d)
	}
	return fmt.Appendf(nil, `version = 2
root = %q
state = %q
oom_score = 0
disabled_plugins = [%s]

[grpc]
  address = %q
%s`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), strings.Join(quoted, ", "), socket, extra)
}

// criConfig is the CRI plugin's configuration: Image as the sandbox
// image, no OOM score below containerd's own (raising it needs
// CAP_SYS_RESOURCE), cgroupfs, runc's state in the temporary directory,
// the streaming server on loopback in the private namespace, and the CNI
// configuration in cniConf.
func (c *Containerd) criConfig(cniConf string) string {
	return fmt.Sprintf(`
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[1]q
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = %[5]q
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[2]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[3]q
    conf_dir = %[4]q
    max_conf_num = 1
`, Image, filepath.Join(c.dir, "runc"), cniDir, cniConf, c.snapshot)
}

// startDaemon starts argv in the network namespace at netns with nsenter
// (which execs argv, so the PID is argv's), its output going to logPath.
func startDaemon(netns, logPath string, argv ...string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=" + netns, "--"}, argv...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	return startProcess(cmd)
}

// cniConfig is a bridge network on a private range, in the private
// namespace, without gateway, masquerading or iptables; host-local keeps
// its leases in the temporary directory. containerd adds loopback itself.
func (c *Containerd) cniConfig() []byte {
	b, _ := json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       c.network,
		"plugins": []any{map[string]any{
			"type":        "bridge",
			"bridge":      "lqcni0",
			"isGateway":   false,
			"ipMasq":      false,
			"hairpinMode": false,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": "10.88.0.0/16"}}},
				"dataDir": filepath.Join(c.dir, "ipam"),
			},
		}},
	}, "", "  ")
	return b
}

// cleanup removes the pods left, stops containerd and removes everything
// it created, as far as it got; removeNetns may be nil.
func (c *Containerd) cleanup(t testing.TB, removeNetns func() error) []error {
	c.stopped.Store(true)
	var errs []error
	if c.Runtime != nil && c.proc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		resp, err := c.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err == nil {
			for _, sb := range resp.GetItems() {
				if err := c.removeSandbox(ctx, sb.GetId()); err != nil {
					errs = append(errs, err)
				}
				_ = removeCgroup(podCgroup(sb.GetMetadata().GetUid()))
			}
		}
		cancel()
	}
	if c.conn != nil {
		_ = c.conn.Close()
	}
	if c.proc != nil {
		if err := c.proc.stop(stopTimeout); err != nil {
			errs = append(errs, fmt.Errorf("stop containerd (pid %d): %w", c.PID, err))
		}
		if n := killShims(c.Socket); n > 0 {
			t.Logf("containerd left %d shims; killed them", n)
		}
	}
	if err := unmountUnder(c.dir); err != nil {
		errs = append(errs, err)
	}
	if removeNetns != nil {
		if err := removeNetns(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, err)
	}
	// libcni names its cache files <network>-<container id>-<interface>.
	if ents, err := os.ReadDir(cniResultsDir); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), c.network+"-") {
				if err := os.Remove(filepath.Join(cniResultsDir, e.Name())); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errs
}

func (c *Containerd) removeSandbox(ctx context.Context, id string) error {
	if _, err := c.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("stop pod sandbox %s: %w", id, err)
	}
	if _, err := c.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("remove pod sandbox %s: %w", id, err)
	}
	return nil
}

// podCgroup is the kubelet's cgroup (cgroupfs driver) of a BestEffort pod.
func podCgroup(uid string) string { return "/kubepods/besteffort/pod" + uid }

// RunPod runs a pod named name in Kubernetes namespace namespace, with a
// new random UID and the given containers, the way the kubelet does: its
// cgroup is /kubepods/besteffort/pod<uid>, its containers' cgroups are
// below it, named by container ID, and they carry the kubelet's
// io.kubernetes.* labels. Each container that runs the app (its command
// starts with AppPath) has filled its queues when RunPod returns. The pod
// is removed when the test ends, if Remove has not removed it before.
func (c *Containerd) RunPod(t testing.TB, namespace, name string, containers ...Container) *Pod {
	t.Helper()
	start := time.Now()
	p := &Pod{
		UID:          newUUID(),
		Namespace:    namespace,
		Name:         name,
		ContainerIDs: map[string]string{},
		PIDs:         map[string]int{},
		c:            c,
	}
	logDir := filepath.Join(c.dir, "pods", namespace+"_"+name+"_"+p.UID)
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		t.Fatal(err)
	}
	nsOpts := &runtimeapi.NamespaceOption{
		Network: runtimeapi.NamespaceMode_POD,
		Pid:     runtimeapi.NamespaceMode_CONTAINER,
		Ipc:     runtimeapi.NamespaceMode_POD,
	}
	podLabels := map[string]string{
		"io.kubernetes.pod.name":      name,
		"io.kubernetes.pod.namespace": namespace,
		"io.kubernetes.pod.uid":       p.UID,
	}
	sbConfig := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: namespace, Uid: p.UID},
		Hostname:     name,
		LogDirectory: logDir,
		Labels:       podLabels,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    podCgroup(p.UID),
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: nsOpts},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := c.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbConfig})
	t.Cleanup(func() { p.Remove(t) })
	if err != nil {
		t.Fatalf("run pod %s/%s: %v", namespace, name, err)
	}
	p.SandboxID = resp.GetPodSandboxId()

	c.readSandbox(ctx, t, p)
	if p.NetnsPath == "" {
		t.Fatalf("pod %s/%s: no network namespace path in the sandbox status", namespace, name)
	}

	for _, ctr := range containers {
		labels := map[string]string{"io.kubernetes.container.name": ctr.Name}
		for k, v := range podLabels {
			labels[k] = v
		}
		created, err := c.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: p.SandboxID,
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: ctr.Name},
				Image:    &runtimeapi.ImageSpec{Image: Image},
				Command:  ctr.Command,
				Labels:   labels,
				LogPath:  ctr.Name + ".log",
				Linux: &runtimeapi.LinuxContainerConfig{
					SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: nsOpts},
				},
			},
			SandboxConfig: sbConfig,
		})
		if err != nil {
			t.Fatalf("pod %s/%s: create container %s: %v", namespace, name, ctr.Name, err)
		}
		id := created.GetContainerId()
		p.ContainerIDs[ctr.Name] = id
		if _, err := c.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("pod %s/%s: start container %s: %v", namespace, name, ctr.Name, err)
		}
	}
	for _, ctr := range containers {
		id := p.ContainerIDs[ctr.Name]
		logPath := filepath.Join(logDir, ctr.Name+".log")
		if len(ctr.Command) > 0 && ctr.Command[0] == AppPath {
			err := waitFor(readyTimeout, func() (bool, error) {
				log, _ := os.ReadFile(logPath)
				if hasReady(string(log)) {
					return true, nil
				}
				if cst, err := c.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id}); err == nil &&
					cst.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_EXITED {
					return false, permanentError{fmt.Errorf("exited with code %d", cst.GetStatus().GetExitCode())}
				}
				return false, nil
			})
			if err != nil {
				log, _ := os.ReadFile(logPath)
				t.Fatalf("pod %s/%s: container %s did not print %s: %v\nits log:\n%s", namespace, name, ctr.Name, readyWord, err, tail(log, 4000))
			}
		}
		cst, err := c.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
		if err != nil {
			t.Fatalf("pod %s/%s: container %s status: %v", namespace, name, ctr.Name, err)
		}
		var info struct {
			Pid int `json:"pid"`
		}
		if err := json.Unmarshal([]byte(cst.GetInfo()["info"]), &info); err != nil || info.Pid <= 0 {
			t.Fatalf("pod %s/%s: container %s: no pid in its status info (%v): %s", namespace, name, ctr.Name, err, cst.GetInfo()["info"])
		}
		p.PIDs[ctr.Name] = info.Pid
	}
	t.Logf("pod %s/%s (uid %s) running in %v", namespace, name, p.UID, time.Since(start).Round(time.Millisecond))
	return p
}

// Remove stops and removes the pod through the CRI API (unless containerd
// has been stopped already, which removes its pods first), then makes sure
// that nothing of it is left: its processes (ended by PID), its cgroups and
// its network namespace bind mount. Later calls do nothing.
func (p *Pod) Remove(t testing.TB) {
	t.Helper()
	p.remove.Do(func() {
		var errs []error
		if p.SandboxID != "" && !p.c.stopped.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := p.c.removeSandbox(ctx, p.SandboxID); err != nil {
				errs = append(errs, err)
			}
			cancel()
		}
		if err := removeCgroup(podCgroup(p.UID)); err != nil {
			errs = append(errs, err)
		}
		if p.NetnsPath != "" {
			if err := unmountUnder(p.NetnsPath); err != nil {
				errs = append(errs, err)
			}
			if err := os.Remove(p.NetnsPath); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		for _, err := range errs {
			t.Errorf("remove pod %s/%s: %v", p.Namespace, p.Name, err)
		}
	})
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// tail returns the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// readSandbox sets p's sandbox PID and network namespace path from the
// verbose sandbox status containerd gives.
func (c *Containerd) readSandbox(ctx context.Context, t testing.TB, p *Pod) {
	t.Helper()
	st, err := c.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.SandboxID, Verbose: true})
	if err != nil {
		t.Fatalf("pod %s/%s: sandbox status: %v", p.Namespace, p.Name, err)
	}
	var sbInfo struct {
		Pid         int `json:"pid"`
		RuntimeSpec struct {
			Linux struct {
				Namespaces []struct {
					Type string `json:"type"`
					Path string `json:"path"`
				} `json:"namespaces"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &sbInfo); err != nil {
		t.Fatalf("pod %s/%s: sandbox status info: %v", p.Namespace, p.Name, err)
	}
	p.SandboxPID = sbInfo.Pid
	for _, ns := range sbInfo.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			p.NetnsPath = ns.Path
		}
	}
}
