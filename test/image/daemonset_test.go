package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/listenq/listenq_exporter/internal/testbin"
	"github.com/listenq/listenq_exporter/internal/testpods"
)

// daemonSetFile is the manifest whose pod the test runs, from the module
// root.
const daemonSetFile = "deploy/kubernetes/daemonset.yaml"

// TestDaemonSetPod runs the DaemonSet's pod, built from
// deploy/kubernetes/daemonset.yaml the way the kubelet would, with the
// image the Dockerfile makes, in a real containerd (internal/testpods),
// next to two app pods with full listen queues: one started before the
// exporter, one after. The exporter must show both pods' listeners with
// their namespace, pod and container. Then the same pod without
// CAP_SYS_ADMIN must not see into the pods' network namespaces, and
// without the CRI socket's mount must not name them: what the manifest
// grants is needed, and the test fails if it is taken away.
//
// Where "the node" is: the harness runs containerd in a private network
// namespace of its own, in the machine's PID namespace and in the tests'
// mount namespace (mountnsMain: a slave of the machine's, for
// HostToContainer), so
// hostNetwork puts the exporter in that namespace, the node's loopback
// is that namespace's, and the test scrapes the exporter there, at the
// address the DaemonSet gives (--web.listen-address=:9637, kept as it is:
// the namespace is new, nothing else listens on 9637 in it, and one
// exporter pod runs at a time). hostPID is the machine's PID namespace,
// which is also where the pods' processes are. The hostPath volumes are
// mapped to where this containerd has them (see nodePaths): /proc and
// /run/netns are the machine's (containerd bind-mounts the pods'
// namespaces in /run/netns whatever its root), and the CRI socket
// /run/containerd/containerd.sock is the harness's own socket, mounted at
// the path the DaemonSet gives (/host/run/containerd/containerd.sock). So
// the exporter finds it under --path.rootfs=/host as on a node, and the
// test passes no --runtime.endpoint.
func TestDaemonSetPod(t *testing.T) {
	img := buildImage(t)
	ds := loadDaemonSet(t)
	if !mountnsInside() {
		t.Fatal("TestMain did not run the tests in their own mount namespace (see mountnsMain)")
	}
	c := testpods.StartContainerd(t)
	c.ImportImage(t, img.Archive, imageRef)

	webApp := testpods.App{TCP: "127.0.0.1:8080", TCPBacklog: 4, Unix: "/tmp/app.sock", UnixBacklog: 2}
	apiApp := testpods.App{TCP: "127.0.0.1:8080", TCPBacklog: 7, Unix: "/tmp/app.sock", UnixBacklog: 3}
	web := c.RunPod(t, "team-a", "web-1", testpods.Container{Name: "app", Command: webApp.Command()})

	t.Run("as deployed", func(t *testing.T) {
		checkNamed(t, c, ds, "listenq-exporter-a1b2c", web, webApp, apiApp)
	})

	// Without a capability the manifest grants, the exporter still runs
	// and serves, but cannot enter the pods' network namespaces (it logs
	// why): nothing of them shows. So the test above depends on the
	// grant; remove it from the manifest and the test fails.
	t.Run("without SYS_ADMIN", func(t *testing.T) {
		spec := loadDaemonSet(t)
		sc := spec.container(t).SecurityContext
		if !slices.Contains(sc.Capabilities.Add, "SYS_ADMIN") {
			t.Fatalf("the DaemonSet does not add SYS_ADMIN (capabilities.add %q): the exporter cannot read pods' namespaces", sc.Capabilities.Add)
		}
		sc.Capabilities.Add = slices.DeleteFunc(sc.Capabilities.Add, func(c string) bool { return c == "SYS_ADMIN" })
		ex := runExporterPod(t, c, spec, "listenq-exporter-d3e4f")
		// It says so at start, then serves its own namespace only.
		const why = "cannot enter other network namespaces"
		ex.waitScrape(t, 30*time.Second, "the exporter to log "+why, func(s *testbin.Scrape) bool {
			return strings.Contains(ex.pod.ContainerLog(ex.name), why) &&
				len(s.Find("listenq_runtime_up", map[string]string{"runtime": "containerd"})) == 1
		})
		// Past a namespace refresh (every 10 s by default; the manifest
		// keeps the default), nothing of the pods shows.
		time.Sleep(11 * time.Second)
		body, err := getIn(ex.netns, ex.url)
		if err != nil {
			t.Fatal(err)
		}
		for name, ss := range testbin.ParseScrape(t, body).Series {
			for _, x := range ss {
				if x.Labels["pod"] == "web-1" || x.Labels["netns"] == filepath.Base(web.NetnsPath) {
					t.Errorf("without SYS_ADMIN the exporter still reads web-1's namespace: %s%v", name, x.Labels)
				}
			}
		}
	})

	// Without the CRI socket's mount the exporter still reads every
	// pod's listeners but cannot name them: the names come from the
	// runtime, through that mount.
	t.Run("without the CRI socket", func(t *testing.T) {
		spec := loadDaemonSet(t)
		ctr := spec.container(t)
		n := len(ctr.VolumeMounts)
		ctr.VolumeMounts = slices.DeleteFunc(ctr.VolumeMounts, func(vm volumeMount) bool {
			return strings.HasSuffix(vm.MountPath, "/containerd.sock")
		})
		if len(ctr.VolumeMounts) != n-1 {
			t.Fatalf("the DaemonSet does not mount the containerd socket: the exporter cannot name pods")
		}
		ex := runExporterPod(t, c, spec, "listenq-exporter-g5h6i")
		var got *testbin.Scrape
		want := map[string]string{"netns": filepath.Base(web.NetnsPath), "proto": "unix", "listener": webApp.Unix}
		ex.waitScrape(t, 60*time.Second, "web-1's listener", func(s *testbin.Scrape) bool {
			got = s
			return len(s.Find("listenq_queue_limit", want)) == 1
		})
		for _, l := range got.Find("listenq_queue_limit", want) {
			if l.Labels["namespace"] != "" || l.Labels["pod"] != "" || l.Labels["container"] != "" {
				t.Errorf("without the CRI socket the exporter still names web-1's listener: %v", l.Labels)
			}
		}
		// Unnamed because there is no runtime to ask, not because naming
		// a new pod takes a while.
		for _, up := range got.Find("listenq_runtime_up", nil) {
			if up.Value == 1 {
				t.Errorf("without the CRI socket a runtime still answers: listenq_runtime_up%v", up.Labels)
			}
		}
	})
}

// checkNamed runs the exporter pod of ds and starts the pod api-1 (running
// apiApp) after it: the exporter must show web-1's and api-1's listeners
// with their namespace, pod and container, as ss sees them in each pod,
// and each pod's namespace under its /run/netns name.
func checkNamed(t *testing.T, c *testpods.Containerd, ds *daemonSet, podName string, web *testpods.Pod, webApp, apiApp testpods.App) {
	t.Helper()
	ex := runExporterPod(t, c, ds, podName)
	// HostToContainer propagation shows the exporter a pod whose
	// namespace containerd mounts in /run/netns after it started.
	api := c.RunPod(t, "team-b", "api-1", testpods.Container{Name: "server", Command: apiApp.Command()})
	defer api.Remove(t)

	var got *testbin.Scrape
	ex.waitScrape(t, 90*time.Second, "both pods' listeners named", func(s *testbin.Scrape) bool {
		got = s
		return len(s.Find("listenq_queue_limit", map[string]string{"pod": "web-1", "container": "app", "proto": "unix"})) == 1 &&
			len(s.Find("listenq_queue_limit", map[string]string{"pod": "api-1", "container": "server", "proto": "unix"})) == 1
	})
	for _, p := range []struct {
		pod       *testpods.Pod
		container string
		app       testpods.App
	}{{web, "app", webApp}, {api, "server", apiApp}} {
		ids := map[string]string{"namespace": p.pod.Namespace, "pod": p.pod.Name, "netns": filepath.Base(p.pod.NetnsPath)}
		ss := testpods.NsenterSS(t, p.pod.NetnsPath, "-ltnx")
		for _, l := range []struct{ proto, addr string }{{"tcp", p.app.TCP}, {"unix", p.app.Unix}} {
			recvQ, sendQ := testpods.ListenQueue(t, ss, l.addr)
			want := testbin.Labels(ids, map[string]string{"container": p.container, "proto": l.proto, "listener": l.addr})
			if v := got.One(t, "listenq_queue_length", want).Value; v != float64(recvQ) || recvQ == 0 {
				t.Errorf("%s/%s %s: length %v, ss Recv-Q %d (want equal, non-zero)", p.pod.Namespace, p.pod.Name, l.addr, v, recvQ)
			}
			if v := got.One(t, "listenq_queue_limit", want).Value; v != float64(sendQ) {
				t.Errorf("%s/%s %s: limit %v, ss Send-Q %d", p.pod.Namespace, p.pod.Name, l.addr, v, sendQ)
			}
		}
		got.One(t, "listenq_netns_info", testbin.Labels(ids, map[string]string{"pod_uid": p.pod.UID, "runtime": "containerd"}))
	}
	if v := got.One(t, "listenq_runtime_up", map[string]string{"runtime": "containerd"}).Value; v != 1 {
		t.Errorf("listenq_runtime_up = %v, want 1", v)
	}
	// The image's binary is the one built for it.
	got.One(t, "listenq_exporter_build_info", map[string]string{"version": testVersion, "revision": testRevision})
	ex.checkProcess(t)
}

// daemonSet is what the test reads of the manifest: the pod template's
// spec, as plain data (unmarshalled again for each use, so a test may
// change its copy).
type daemonSet struct {
	Kind string `yaml:"kind"`
	Spec struct {
		Template struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	HostNetwork bool        `yaml:"hostNetwork"`
	HostPID     bool        `yaml:"hostPID"`
	HostIPC     bool        `yaml:"hostIPC"`
	Containers  []container `yaml:"containers"`
	Volumes     []struct {
		Name     string `yaml:"name"`
		HostPath *struct {
			Path string `yaml:"path"`
			Type string `yaml:"type"`
		} `yaml:"hostPath"`
	} `yaml:"volumes"`
}

type container struct {
	Name            string   `yaml:"name"`
	Image           string   `yaml:"image"`
	Command         []string `yaml:"command"`
	Args            []string `yaml:"args"`
	SecurityContext struct {
		RunAsUser                *int64 `yaml:"runAsUser"`
		RunAsGroup               *int64 `yaml:"runAsGroup"`
		ReadOnlyRootFilesystem   bool   `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Add  []string `yaml:"add"`
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	Env []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	VolumeMounts []volumeMount `yaml:"volumeMounts"`
}

type volumeMount struct {
	Name             string `yaml:"name"`
	MountPath        string `yaml:"mountPath"`
	ReadOnly         bool   `yaml:"readOnly"`
	MountPropagation string `yaml:"mountPropagation"`
}

// The fields of the pod spec, container and security context the test
// turns into CRI configuration, and those it may ignore (scheduling, or
// done by the kubelet rather than the runtime). Any other field fails the
// test: it would change how the pod runs, and the test must learn it.
var (
	podFields = map[string]bool{
		"hostNetwork": true, "hostPID": true, "hostIPC": true, "containers": true, "volumes": true,
		// scheduling and API-side only
		"tolerations": false, "nodeSelector": false, "affinity": false, "priorityClassName": false,
		"serviceAccountName": false, "automountServiceAccountToken": false, "terminationGracePeriodSeconds": false,
	}
	containerFields = map[string]bool{
		"name": true, "image": true, "command": true, "args": true, "securityContext": true,
		"env": true, "resources": true, "volumeMounts": true,
		// informational, or the kubelet's
		"ports": false, "imagePullPolicy": false, "livenessProbe": false, "readinessProbe": false, "startupProbe": false,
	}
	securityFields = map[string]bool{
		"runAsUser": true, "runAsGroup": true, "readOnlyRootFilesystem": true,
		"allowPrivilegeEscalation": true, "capabilities": true,
	}
)

// loadDaemonSet reads the manifest and checks it has only fields the test
// knows how to run.
func loadDaemonSet(t *testing.T) *daemonSet {
	t.Helper()
	root, err := moduleRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, daemonSetFile))
	if err != nil {
		t.Fatal(err)
	}
	ds := &daemonSet{}
	if err := yaml.Unmarshal(b, ds); err != nil {
		t.Fatalf("%s: %v", daemonSetFile, err)
	}
	if ds.Kind != "DaemonSet" || len(ds.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%s: want a DaemonSet with one container, got kind %q with %d", daemonSetFile, ds.Kind, len(ds.Spec.Template.Spec.Containers))
	}
	var raw struct {
		Spec struct {
			Template struct {
				Spec map[string]any `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	pod := raw.Spec.Template.Spec
	checkFields(t, "spec.template.spec", pod, podFields)
	ctrs, _ := pod["containers"].([]any)
	for _, c := range ctrs {
		m, _ := c.(map[any]any)
		checkFields(t, "containers[]", m, containerFields)
		if sc, ok := m["securityContext"].(map[any]any); ok {
			checkFields(t, "containers[].securityContext", sc, securityFields)
		}
	}
	return ds
}

func checkFields[K comparable](t *testing.T, where string, m map[K]any, known map[string]bool) {
	t.Helper()
	for k := range m {
		if _, ok := known[fmt.Sprint(k)]; !ok {
			t.Errorf("%s: %s.%v is not modelled by this test; teach runExporterPod what it means", daemonSetFile, where, k)
		}
	}
}

func (ds *daemonSet) container(t *testing.T) *container {
	t.Helper()
	return &ds.Spec.Template.Spec.Containers[0]
}

// nodePaths maps a hostPath of the manifest to where the harness's
// containerd and this machine have it (see TestDaemonSetPod).
func nodePaths(c *testpods.Containerd) map[string]string {
	return map[string]string{
		"/proc":                           "/proc",
		"/run/netns":                      "/run/netns",
		"/run/containerd/containerd.sock": c.Socket,
	}
}

// exporterPod is a running exporter pod.
type exporterPod struct {
	pod   *testpods.Pod
	name  string // the container's name
	c     *testpods.Containerd
	url   string // its metrics, in containerd's network namespace
	netns string // containerd's network namespace, the pod's "node" network
	spec  *container
}

// runExporterPod turns the DaemonSet's pod into CRI configuration the way
// the kubelet does (host namespaces, hostPath mounts with their
// propagation, security context, environment, resources), runs it with the
// test's image and waits until the exporter serves. It is removed when the
// test ends.
func runExporterPod(t *testing.T, c *testpods.Containerd, ds *daemonSet, podName string) *exporterPod {
	t.Helper()
	spec := ds.Spec.Template.Spec
	ctr := ds.container(t)
	mode := func(host bool) runtimeapi.NamespaceMode {
		if host {
			return runtimeapi.NamespaceMode_NODE
		}
		return runtimeapi.NamespaceMode_POD
	}
	nsOpts := &runtimeapi.NamespaceOption{
		Network: mode(spec.HostNetwork),
		Pid:     mode(spec.HostPID),
		Ipc:     mode(spec.HostIPC),
	}
	if !spec.HostPID {
		nsOpts.Pid = runtimeapi.NamespaceMode_CONTAINER
	}
	if !spec.HostNetwork {
		t.Fatal("the DaemonSet's pod does not use the node's network; this test scrapes it there")
	}

	// Volumes: hostPath only, mapped to this machine's paths, checked
	// as the kubelet checks their type.
	paths := nodePaths(c)
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath == nil {
			t.Fatalf("volume %s is not a hostPath; this test runs hostPath volumes only", v.Name)
		}
		p, ok := paths[v.HostPath.Path]
		if !ok {
			t.Fatalf("volume %s: hostPath %s is not mapped to this machine (nodePaths)", v.Name, v.HostPath.Path)
		}
		st, err := os.Stat(p)
		switch {
		case v.HostPath.Type == "DirectoryOrCreate" && errors.Is(err, os.ErrNotExist):
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case err != nil:
			t.Fatalf("volume %s: hostPath %s (here %s): %v", v.Name, v.HostPath.Path, p, err)
		case v.HostPath.Type == "Socket" && st.Mode()&os.ModeSocket == 0,
			strings.HasPrefix(v.HostPath.Type, "Directory") && !st.IsDir():
			t.Fatalf("volume %s: %s is not a %s", v.Name, p, v.HostPath.Type)
		}
		hostPaths[v.Name] = p
	}
	var mounts []*runtimeapi.Mount
	for _, vm := range ctr.VolumeMounts {
		p, ok := hostPaths[vm.Name]
		if !ok {
			t.Fatalf("volumeMount %s: no such volume", vm.Name)
		}
		prop := runtimeapi.MountPropagation_PROPAGATION_PRIVATE
		switch vm.MountPropagation {
		case "", "None":
		case "HostToContainer":
			prop = runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER
		case "Bidirectional":
			prop = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
		default:
			t.Fatalf("volumeMount %s: mountPropagation %q", vm.Name, vm.MountPropagation)
		}
		mounts = append(mounts, &runtimeapi.Mount{ContainerPath: vm.MountPath, HostPath: p, Readonly: vm.ReadOnly, Propagation: prop})
	}

	var envs []*runtimeapi.KeyValue
	for _, e := range ctr.Env {
		envs = append(envs, &runtimeapi.KeyValue{Key: e.Name, Value: []byte(e.Value)})
	}
	res := &runtimeapi.LinuxContainerResources{}
	if v, ok := ctr.Resources.Limits["memory"]; ok {
		res.MemoryLimitInBytes = bytesQuantity(t, v)
	}
	if v, ok := ctr.Resources.Requests["cpu"]; ok {
		// The kubelet's milliCPUToShares.
		res.CpuShares = max(2, milliCPU(t, v)*1024/1000)
	}
	sc := ctr.SecurityContext
	sec := &runtimeapi.LinuxContainerSecurityContext{
		Capabilities:     &runtimeapi.Capability{AddCapabilities: sc.Capabilities.Add, DropCapabilities: sc.Capabilities.Drop},
		NamespaceOptions: nsOpts,
		ReadonlyRootfs:   sc.ReadOnlyRootFilesystem,
		// The kubelet's default: no_new_privs unless allowed.
		NoNewPrivs: sc.AllowPrivilegeEscalation == nil || !*sc.AllowPrivilegeEscalation,
	}
	if sc.RunAsUser != nil {
		sec.RunAsUser = &runtimeapi.Int64Value{Value: *sc.RunAsUser}
	}
	if sc.RunAsGroup != nil {
		sec.RunAsGroup = &runtimeapi.Int64Value{Value: *sc.RunAsGroup}
	}

	// The manifest's image is the release's name; the pod runs the image
	// the test built from the Dockerfile.
	pod := c.RunPodConfig(t, &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: podName, Namespace: "monitoring"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: nsOpts},
		},
	}, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: ctr.Name},
		Image:    &runtimeapi.ImageSpec{Image: imageRef},
		Command:  ctr.Command,
		Args:     ctr.Args,
		Envs:     envs,
		Mounts:   mounts,
		Linux:    &runtimeapi.LinuxContainerConfig{Resources: res, SecurityContext: sec},
	})
	ex := &exporterPod{pod: pod, name: ctr.Name, c: c, netns: c.NetnsPath, spec: ctr,
		url: "http://" + net.JoinHostPort("127.0.0.1", listenPort(t, ctr.Args)) + "/metrics"}
	// Removed before the next subtest runs its own on the same port.
	t.Cleanup(func() { pod.Remove(t) })
	ex.waitScrape(t, 30*time.Second, "the exporter to serve", func(*testbin.Scrape) bool { return true })
	return ex
}

// listenPort is the port of the DaemonSet's --web.listen-address.
func listenPort(t *testing.T, args []string) string {
	t.Helper()
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--web.listen-address="); ok {
			_, port, err := net.SplitHostPort(v)
			if err != nil {
				t.Fatalf("--web.listen-address=%s: %v", v, err)
			}
			return port
		}
	}
	return "9637" // the exporter's default
}

// bytesQuantity parses a Kubernetes memory quantity: 128Mi, 1Gi, 100.
func bytesQuantity(t *testing.T, s string) int64 {
	t.Helper()
	mult := int64(1)
	for suffix, m := range map[string]int64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30} {
		if v, ok := strings.CutSuffix(s, suffix); ok {
			s, mult = v, m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("memory quantity %q: %v", s, err)
	}
	return n * mult
}

// milliCPU parses a Kubernetes CPU quantity (10m, 0.5, 2) into
// thousandths of a CPU.
func milliCPU(t *testing.T, s string) int64 {
	t.Helper()
	if v, ok := strings.CutSuffix(s, "m"); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("cpu quantity %q: %v", s, err)
		}
		return n
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("cpu quantity %q: %v", s, err)
	}
	return int64(f * 1000)
}

// waitScrape scrapes the exporter until ok says the scrape is complete,
// for at most timeout; it fails the test, with the exporter's log, if the
// exporter exits or the time runs out.
func (ex *exporterPod) waitScrape(t *testing.T, timeout time.Duration, what string, ok func(*testbin.Scrape) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		body, err := getIn(ex.netns, ex.url)
		if err == nil {
			if ok(testbin.ParseScrape(t, body)) {
				return
			}
		}
		if ex.exited() || time.Now().After(deadline) {
			t.Fatalf("waiting for %s: last scrape of %s (error %v):\n%s\nexporter log:\n%s",
				what, ex.url, err, body, ex.pod.ContainerLog(ex.name))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (ex *exporterPod) exited() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := ex.c.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ex.pod.ContainerIDs[ex.name]})
	return err == nil && st.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_EXITED
}

// capNames are the capabilities by bit number.
var capNames = strings.Fields(`CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID
	SETPCAP LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
	SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE
	SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN
	SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE`)

// checkProcess checks, from the machine's /proc, that the exporter runs
// as the manifest says: its user, exactly the capabilities it adds (all
// others dropped), no_new_privs, a read-only root and the node's network
// namespace (containerd's).
func (ex *exporterPod) checkProcess(t *testing.T) {
	t.Helper()
	pid := ex.pod.PIDs[ex.name]
	if pid == 0 {
		t.Fatal("no PID for the exporter container")
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	field := func(name string) string {
		for line := range strings.Lines(string(status)) {
			if v, ok := strings.CutPrefix(line, name+":"); ok {
				return strings.TrimSpace(v)
			}
		}
		t.Fatalf("/proc/%d/status has no %s", pid, name)
		return ""
	}
	if uid := strings.Fields(field("Uid")); ex.spec.SecurityContext.RunAsUser != nil && uid[1] != strconv.FormatInt(*ex.spec.SecurityContext.RunAsUser, 10) {
		t.Errorf("the exporter runs as uid %s, want %d", uid[1], *ex.spec.SecurityContext.RunAsUser)
	}
	capEff, err := strconv.ParseUint(field("CapEff"), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for bit, name := range capNames {
		if capEff&(1<<bit) != 0 {
			got = append(got, name)
		}
	}
	want := slices.Clone(ex.spec.SecurityContext.Capabilities.Add)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Contains(ex.spec.SecurityContext.Capabilities.Drop, "ALL") || !slices.Equal(got, want) {
		t.Errorf("effective capabilities %v, want exactly the added %v (drop ALL)", got, want)
	}
	if nnp := field("NoNewPrivs"); nnp != "1" {
		t.Errorf("NoNewPrivs = %s, want 1 (allowPrivilegeEscalation: false)", nnp)
	}
	mountinfo, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(mountinfo)) {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			if ro := slices.Contains(strings.Split(f[5], ","), "ro"); ro != ex.spec.SecurityContext.ReadOnlyRootFilesystem {
				t.Errorf("root mounted %s, readOnlyRootFilesystem %v", f[5], ex.spec.SecurityContext.ReadOnlyRootFilesystem)
			}
		}
	}
	a, errA := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid))
	b, errB := os.Stat(ex.netns)
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		t.Errorf("the exporter is not in the node's (containerd's) network namespace (%v, %v)", errA, errB)
	}
}

// getIn fetches url from inside the network namespace at netnsPath.
func getIn(netnsPath, url string) (string, error) {
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialIn(ctx, netnsPath, network, addr)
			},
		},
	}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(body), nil
}

// dialIn dials addr with a socket created in the network namespace at
// netnsPath: the calling goroutine's thread enters it for the socket call
// and comes back (a socket stays in the namespace it was made in). If the
// thread cannot come back it stays locked, and exits with the goroutine.
func dialIn(ctx context.Context, netnsPath, network, addr string) (net.Conn, error) {
	target, err := os.Open(netnsPath)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer self.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter %s: %w", netnsPath, err)
	}
	conn, dialErr := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("return from %s: %w", netnsPath, err)
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}
