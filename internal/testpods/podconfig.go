package testpods

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImportImage imports the image archive at path (what `ctr images import`
// takes: a docker-archive, as `podman save` writes, or an OCI image
// layout tar) into the CRI plugin's containerd namespace, unpacked for the
// snapshotter the CRI plugin uses, and waits until the CRI plugin knows
// ref. The image goes with containerd's temporary directory.
func (c *Containerd) ImportImage(t testing.TB, path, ref string) {
	t.Helper()
	out, err := run(2*time.Minute, "ctr", "--address", c.Socket, "--namespace", criNamespace,
		"images", "import", "--snapshotter", c.snapshot, path)
	if err != nil {
		t.Fatalf("ctr images import %s: %v\n%s", path, err, out)
	}
	err = waitFor(startTimeout, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := c.Images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		return err == nil && st.GetImage() != nil, err
	})
	if err != nil {
		t.Fatalf("image %s (imported from %s) not seen by the CRI plugin: %v\nctr said:\n%s", ref, path, err, out)
	}
}

// RunPodConfig runs a pod described by CRI configurations the caller
// writes, for pods RunPod cannot describe (a DaemonSet's pod with the
// node's namespaces, host mounts and capabilities). It fills in what the
// kubelet would and nothing else: the sandbox's metadata UID (a new random
// one; name and namespace are the caller's), its cgroup parent
// /kubepods/besteffort/pod<uid>, its log directory, the io.kubernetes.*
// pod and container labels, each container's metadata name (if unset) and
// log path <name>.log. It starts the containers and does not wait for
// them. Pod.NetnsPath is empty when the pod uses the node's network
// namespace. The pod is removed when the test ends, if Remove has not
// removed it before; ContainerLog reads its containers' logs.
func (c *Containerd) RunPodConfig(t testing.TB, sb *runtimeapi.PodSandboxConfig, ctrs ...*runtimeapi.ContainerConfig) *Pod {
	t.Helper()
	if sb.GetMetadata() == nil {
		t.Fatal("RunPodConfig: the sandbox config has no metadata (name and namespace)")
	}
	start := time.Now()
	p := &Pod{
		UID:          newUUID(),
		Namespace:    sb.GetMetadata().GetNamespace(),
		Name:         sb.GetMetadata().GetName(),
		ContainerIDs: map[string]string{},
		PIDs:         map[string]int{},
		c:            c,
	}
	sb.Metadata.Uid = p.UID
	logDir := p.logDir()
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		t.Fatal(err)
	}
	sb.LogDirectory = logDir
	podLabels := map[string]string{
		"io.kubernetes.pod.name":      p.Name,
		"io.kubernetes.pod.namespace": p.Namespace,
		"io.kubernetes.pod.uid":       p.UID,
	}
	if sb.Labels == nil {
		sb.Labels = map[string]string{}
	}
	maps.Copy(sb.Labels, podLabels)
	if sb.Linux == nil {
		sb.Linux = &runtimeapi.LinuxPodSandboxConfig{}
	}
	sb.Linux.CgroupParent = podCgroup(p.UID)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := c.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sb})
	t.Cleanup(func() { p.Remove(t) })
	if err != nil {
		t.Fatalf("run pod %s/%s: %v", p.Namespace, p.Name, err)
	}
	p.SandboxID = resp.GetPodSandboxId()
	c.readSandbox(ctx, t, p)

	for _, cc := range ctrs {
		if cc.Metadata == nil {
			t.Fatalf("pod %s/%s: a container config has no metadata (name)", p.Namespace, p.Name)
		}
		name := cc.GetMetadata().GetName()
		if cc.Labels == nil {
			cc.Labels = map[string]string{}
		}
		maps.Copy(cc.Labels, podLabels)
		cc.Labels["io.kubernetes.container.name"] = name
		cc.LogPath = name + ".log"
		created, err := c.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: p.SandboxID, Config: cc, SandboxConfig: sb,
		})
		if err != nil {
			t.Fatalf("pod %s/%s: create container %s: %v", p.Namespace, p.Name, name, err)
		}
		id := created.GetContainerId()
		p.ContainerIDs[name] = id
		if _, err := c.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("pod %s/%s: start container %s: %v\nits log:\n%s", p.Namespace, p.Name, name, err, p.ContainerLog(name))
		}
		cst, err := c.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
		if err != nil {
			t.Fatalf("pod %s/%s: container %s status: %v", p.Namespace, p.Name, name, err)
		}
		var info struct {
			Pid int `json:"pid"`
		}
		if json.Unmarshal([]byte(cst.GetInfo()["info"]), &info) == nil && info.Pid > 0 {
			p.PIDs[name] = info.Pid
		}
	}
	t.Logf("pod %s/%s (uid %s) started in %v", p.Namespace, p.Name, p.UID, time.Since(start).Round(time.Millisecond))
	return p
}

// ContainerLog returns what the pod's container name has written so far
// (in the CRI log format: a time stamp, the stream and a tag before each
// line), or "" when there is nothing.
func (p *Pod) ContainerLog(name string) string {
	b, _ := os.ReadFile(filepath.Join(p.logDir(), name+".log"))
	return string(b)
}

// logDir is the pod's log directory, as RunPod and RunPodConfig name it.
func (p *Pod) logDir() string {
	return filepath.Join(p.c.dir, "pods", p.Namespace+"_"+p.Name+"_"+p.UID)
}
