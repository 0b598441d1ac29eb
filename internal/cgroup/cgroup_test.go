package cgroup

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pathCases are cgroup paths as real systems show them. Each comment says
// where the form (and, unless noted, the IDs) was seen.
var pathCases = []struct {
	name string
	path string
	want Ref
}{
	// --- Kubernetes, cgroupfs driver ---
	{
		// Qard/container-info test fixture (copied by Datadog's tracers).
		name: "cgroupfs besteffort bare id",
		path: "/kubepods/besteffort/pod74c13223-5a00-11e9-b385-42010a80018d/34dc0b5e626f2c5c4c5170e34b10e7654ce36f0fcd532739f4445baabea03376",
		want: Ref{ContainerID: "34dc0b5e626f2c5c4c5170e34b10e7654ce36f0fcd532739f4445baabea03376", PodUID: "74c13223-5a00-11e9-b385-42010a80018d"},
	},
	{
		// cri-o/cri-o#811: early CRI-O under cgroupfs, before it prefixed crio-.
		name: "cgroupfs burstable bare id",
		path: "/kubepods/burstable/pod58662905-8ccc-11e7-a695-c85b76cda386/1659f887a192f3515dd9b91a41d274abf29ca49de3d2330869131b2d93b45b94",
		want: Ref{ContainerID: "1659f887a192f3515dd9b91a41d274abf29ca49de3d2330869131b2d93b45b94", PodUID: "58662905-8ccc-11e7-a695-c85b76cda386"},
	},
	{
		// scylladb/scylla-operator cpuset paths: GKE, guaranteed pod.
		name: "cgroupfs guaranteed bare id",
		path: "/kubepods/podfc060df5-82a2-4a5e-86c0-40aec54b2a09/e3e0fc65ca5a88c9f47078aa0f097053f4c0620b2134a903c124a9b015386505",
		want: Ref{ContainerID: "e3e0fc65ca5a88c9f47078aa0f097053f4c0620b2134a903c124a9b015386505", PodUID: "fc060df5-82a2-4a5e-86c0-40aec54b2a09"},
	},
	{
		// google/cadvisor container/crio factory_test: CRI-O under cgroupfs.
		name: "cgroupfs guaranteed crio",
		path: "/kubepods/pod068e8fa0-9213-11e7-a01f-507b9d4141fa/crio-81e5c2990803c383229c9680ce964738d5e566d97f5bd436ac34808d2ec75d5f",
		want: Ref{ContainerID: "81e5c2990803c383229c9680ce964738d5e566d97f5bd436ac34808d2ec75d5f", PodUID: "068e8fa0-9213-11e7-a01f-507b9d4141fa", Runtime: "cri-o"},
	},
	{
		// Same cadvisor test: the conmon cgroup next to the container.
		name: "cgroupfs crio conmon",
		path: "/kubepods/pod068e8fa0-9213-11e7-a01f-507b9d4141fa/crio-conmon-81e5c2990803c383229c9680ce964738d5e566d97f5bd436ac34808d2ec75d5f",
		want: Ref{PodUID: "068e8fa0-9213-11e7-a01f-507b9d4141fa", Runtime: "cri-o"},
	},
	{
		// A kind node's /proc/PID/cgroup, pasted in a kind walkthrough:
		// kubelet runs with --cgroup-root=/kubelet.
		name: "kind cgroupfs",
		path: "/kubelet/kubepods/besteffort/pod0ec90011-b5ae-4efc-8a54-d9fc34119605/f5cfbbf0ab83c29c42f4c1e84f12ca91ef77a2c39ee9b753b48cfbb743958947",
		want: Ref{ContainerID: "f5cfbbf0ab83c29c42f4c1e84f12ca91ef77a2c39ee9b753b48cfbb743958947", PodUID: "0ec90011-b5ae-4efc-8a54-d9fc34119605"},
	},
	{
		// Same source, a static pod (UID is the 32-hex config hash).
		name: "kind cgroupfs static pod",
		path: "/kubelet/kubepods/burstable/pod69dd939498054a211c3461b2a9cc8d26/abf0a53a75b96b2e700f9d6bd9ae72047f103aeed41cd69f4b44e22a5a5993fd",
		want: Ref{ContainerID: "abf0a53a75b96b2e700f9d6bd9ae72047f103aeed41cd69f4b44e22a5a5993fd"},
	},
	{
		// PodSandboxConfig CgroupParent logged by containerd on kind: the
		// pod's own cgroup, with no container.
		name: "pod cgroup only",
		path: "/kubelet/kubepods/besteffort/podb9ba097d-5dff-4c9d-ab9e-8287801185d5",
		want: Ref{PodUID: "b9ba097d-5dff-4c9d-ab9e-8287801185d5"},
	},
	{
		// Form seen through a cgroup namespace (cgroup_namespaces(7)) by a
		// reader in another pod of a cgroupfs node; IDs from the GKE case.
		name: "cgroupfs relative to another pod",
		path: "/../../../burstable/podfc060df5-82a2-4a5e-86c0-40aec54b2a09/e3e0fc65ca5a88c9f47078aa0f097053f4c0620b2134a903c124a9b015386505",
		want: Ref{ContainerID: "e3e0fc65ca5a88c9f47078aa0f097053f4c0620b2134a903c124a9b015386505", PodUID: "fc060df5-82a2-4a5e-86c0-40aec54b2a09"},
	},

	// --- Kubernetes, systemd driver ---
	{
		// grafana/pyroscope ebpf discovery test, a v1 cpuset line.
		name: "systemd burstable containerd",
		path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod471203d1_984f_477e_9c35_db96487ffe5e.slice/cri-containerd-a534eb629135e43beb13213976e37bb2ab95cba4c0d1d0b4e27c6bc4d8091b83.scope",
		want: Ref{ContainerID: "a534eb629135e43beb13213976e37bb2ab95cba4c0d1d0b4e27c6bc4d8091b83", PodUID: "471203d1-984f-477e-9c35-db96487ffe5e", Runtime: "containerd"},
	},
	{
		// open-telemetry JS k8s resource detector test: guaranteed pod.
		name: "systemd guaranteed containerd",
		path: "/kubepods.slice/kubepods-podf57400dc_94ce_4806_a52e_d2726f448f15.slice/cri-containerd-44f639a16a22e394061fb35d2138ef9391c2131db9bf5ae742ef4e447e824887.scope",
		want: Ref{ContainerID: "44f639a16a22e394061fb35d2138ef9391c2131db9bf5ae742ef4e447e824887", PodUID: "f57400dc-94ce-4806-a52e-d2726f448f15", Runtime: "containerd"},
	},
	{
		// opencontainers/runc#4620, /proc/PID/cgroup of a calico-node container.
		name: "systemd burstable crio",
		path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope",
		want: Ref{ContainerID: "5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c", PodUID: "a5c1f8d5-1919-434d-add7-4afaafdaef89", Runtime: "cri-o"},
	},
	{
		// openshift/microshift#697, systemd-cgls output.
		name: "systemd besteffort crio",
		path: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podc8bad552_5c99_4d4f_b71c_c426c0cde014.slice/crio-15b6e0c6490cad17fcf69eb837794349b4df96f84ba96c6be9828fe281c055a9.scope",
		want: Ref{ContainerID: "15b6e0c6490cad17fcf69eb837794349b4df96f84ba96c6be9828fe281c055a9", PodUID: "c8bad552-5c99-4d4f-b71c-c426c0cde014", Runtime: "cri-o"},
	},
	{
		// microshift#697 moved conmon into the pod slice (CRI-O's
		// conmon_cgroup = "pod"); IDs reused from the case above.
		name: "systemd crio conmon in pod",
		path: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podc8bad552_5c99_4d4f_b71c_c426c0cde014.slice/crio-conmon-15b6e0c6490cad17fcf69eb837794349b4df96f84ba96c6be9828fe281c055a9.scope",
		want: Ref{PodUID: "c8bad552-5c99-4d4f-b71c-c426c0cde014", Runtime: "cri-o"},
	},
	{
		// microshift#697 before the change: conmon in system.slice.
		name: "systemd crio conmon in system.slice",
		path: "/system.slice/crio-conmon-e0c85fe7644a858988d9687c2e0736a7d31922740d0f3e001c6b2e0aa7e5f528.scope",
		want: Ref{Runtime: "cri-o"},
	},
	{
		// scylla-operator cpuset paths: minikube with CRI-O, guaranteed pod.
		name: "systemd guaranteed crio",
		path: "/kubepods.slice/kubepods-pod74298416_16b6_47bb_ae8f_01ee4f91c525.slice/crio-4a839ac8074c771bd0f6d3732e4d5acd3e27acb818ae6895d767f06198a19596.scope",
		want: Ref{ContainerID: "4a839ac8074c771bd0f6d3732e4d5acd3e27acb818ae6895d767f06198a19596", PodUID: "74298416-16b6-47bb-ae8f-01ee4f91c525", Runtime: "cri-o"},
	},
	{
		// scylla-operator cpuset paths: AWS / minikube with Docker.
		name: "systemd guaranteed docker",
		path: "/kubepods.slice/kubepods-pode0c9e8dc_4bfa_4d34_9e03_746a0fab90a5.slice/docker-7b4acc0e8a0d0090396906d500710f121851c487ca1a9f889215200bc377b5fb.scope",
		want: Ref{ContainerID: "7b4acc0e8a0d0090396906d500710f121851c487ca1a9f889215200bc377b5fb", PodUID: "e0c9e8dc-4bfa-4d34-9e03-746a0fab90a5", Runtime: "docker"},
	},
	{
		// pyroscope test and neuvector cgroup_test: cgroup v2 seen through
		// a cgroup namespace, so kubepods.slice is replaced by "..".
		name: "systemd relative docker",
		path: "/../../kubepods-besteffort-pod88f6f4e3_59c0_4ce8_9ecf_391c8b5a60ad.slice/docker-656959d9ee87a0b131c601ce9d9f8f76b1dda60e8608c503b5979d849cbdc714.scope",
		want: Ref{ContainerID: "656959d9ee87a0b131c601ce9d9f8f76b1dda60e8608c503b5979d849cbdc714", PodUID: "88f6f4e3-59c0-4ce8-9ecf-391c8b5a60ad", Runtime: "docker"},
	},
	{
		// containerd/nri#227, a kind node with the systemd driver
		// (cgroup root kubelet.slice).
		name: "kind systemd",
		path: "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod1e597579_417e_482f_bf65_5fe170c3aebd.slice/cri-containerd-a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e.scope",
		want: Ref{ContainerID: "a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e", PodUID: "1e597579-417e-482f-bf65-5fe170c3aebd", Runtime: "containerd"},
	},
	{
		// The same kind node seen from its host: the node is itself a
		// Docker container (node ID made up); the pod is the answer.
		name: "kind node seen from host",
		path: "/system.slice/docker-1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a7988.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod1e597579_417e_482f_bf65_5fe170c3aebd.slice/cri-containerd-a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e.scope",
		want: Ref{ContainerID: "a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e", PodUID: "1e597579-417e-482f-bf65-5fe170c3aebd", Runtime: "containerd"},
	},
	{
		// DataDog/datadog-agent cgroups reader test: a static pod.
		name: "systemd static pod",
		path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podc704ef4c297ab11032b83ce52cbfc87b.slice/cri-containerd-2327a2aec169e25cf05f2a901486b7463fdb513ae097fc0ae6a3ca94381ddc42.scope",
		want: Ref{ContainerID: "2327a2aec169e25cf05f2a901486b7463fdb513ae097fc0ae6a3ca94381ddc42", Runtime: "containerd"},
	},
	{
		// Same Datadog test: Kubernetes with Docker nested in a Podman
		// container; the pod's container wins over the outer one.
		name: "k8s nested in podman",
		path: "/libpod_parent/libpod-6dc3fdffbf66b1239d55e98da9aaa759ea51ed35d04eb09d19ebd78963aa26c2/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda2acd1bccd50fd7790183537181f658e.slice/docker-1575e8b4a92a9c340a657f3df4ddc0f6a6305c200879f3898b26368ad019b503.scope",
		want: Ref{ContainerID: "1575e8b4a92a9c340a657f3df4ddc0f6a6305c200879f3898b26368ad019b503", Runtime: "docker"},
	},
	{
		// Same Datadog test: a mix kubelet never writes (systemd names
		// without .slice); only the ID is trusted.
		name: "unrecognised pod naming",
		path: "/kubepods/kubepods-besteffort/kubepods-besteffort-podb3922967_14e1_4867_9388_461bac94b37e/2327a2aec169e25cf05f2a901486b7463fdb513ae097fc0ae6a3ca94381ddc41",
		want: Ref{ContainerID: "2327a2aec169e25cf05f2a901486b7463fdb513ae097fc0ae6a3ca94381ddc41"},
	},
	{
		// open-telemetry/opentelemetry-java#4507: containerd's
		// SystemdCgroup with a cgroupfs kubelet leaves runc's
		// "slice:prefix:id" verbatim.
		name: "verbatim systemd cgroupsPath",
		path: "/kubepods-besteffort-pod0125ec2f_b64a_4868_8f5b_94b56cbab864.slice:cri-containerd:ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459",
		want: Ref{ContainerID: "ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459", PodUID: "0125ec2f-b64a-4868-8f5b-94b56cbab864", Runtime: "containerd"},
	},
	{
		// Same issue, the blkio line of the same process.
		name: "verbatim systemd cgroupsPath under containerd.service",
		path: "/system.slice/containerd.service/kubepods-besteffort-pod0125ec2f_b64a_4868_8f5b_94b56cbab864.slice:cri-containerd:ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459",
		want: Ref{ContainerID: "ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459", PodUID: "0125ec2f-b64a-4868-8f5b-94b56cbab864", Runtime: "containerd"},
	},

	// --- Docker ---
	{
		// ctrsploit/ctrsploit#280, /proc/1/cgroup inside a container.
		name: "docker cgroupfs",
		path: "/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d",
		want: Ref{ContainerID: "2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d", Runtime: "docker"},
	},
	{
		// neuvector/neuvector share/system cgroup_test, CentOS host.
		name: "docker systemd",
		path: "/system.slice/docker-9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d.scope",
		want: Ref{ContainerID: "9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d", Runtime: "docker"},
	},
	{
		// Docker-in-Docker under cgroup v1 (IDs from the htop-dev/htop#1036
		// and ctrsploit cases): the outer container is the host's.
		name: "docker in docker",
		path: "/docker/ff90ed5efd657539ce42198e0d61661d62f2a5d8de9439e2aeb046fb1ef4e0af/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d",
		want: Ref{ContainerID: "ff90ed5efd657539ce42198e0d61661d62f2a5d8de9439e2aeb046fb1ef4e0af", Runtime: "docker"},
	},
	{
		// neuvector cgroup_test, Debian host: Docker with cgroup parent "/".
		name: "bare id at root",
		path: "/4f797c539e6c745de61a93ca3ff892358ecbcaccd8414d5db545c38428142970",
		want: Ref{ContainerID: "4f797c539e6c745de61a93ca3ff892358ecbcaccd8414d5db545c38428142970"},
	},
	{
		// Amazon ECS (EC2 launch type), from a PHP APM tracer's ECS test.
		name: "ecs",
		path: "/ecs/test-ecs-classic/5a0d5ceddf6c44c1928d367a815d890f/38fac3e99302b3622be089dd41e7ccf38aff368a86cc339972075136ee2710ce",
		want: Ref{ContainerID: "38fac3e99302b3622be089dd41e7ccf38aff368a86cc339972075136ee2710ce"},
	},

	// --- Podman ---
	{
		// falcosecurity/libs#1613, systemd-cgls with crun's /container leaf.
		name: "podman machine.slice",
		path: "/machine.slice/libpod-a2bc7b153f034b17f358cde43a7f8c7475147e8a0d1b2573c26473244ec44ce4.scope/container",
		want: Ref{ContainerID: "a2bc7b153f034b17f358cde43a7f8c7475147e8a0d1b2573c26473244ec44ce4", Runtime: "podman"},
	},
	{
		// Same falco PR: the container's conmon.
		name: "podman conmon",
		path: "/machine.slice/libpod-conmon-a2bc7b153f034b17f358cde43a7f8c7475147e8a0d1b2573c26473244ec44ce4.scope",
		want: Ref{Runtime: "podman"},
	},
	{
		// containers/podman#20423, rootless (as root's user manager).
		name: "podman rootless machine.slice",
		path: "/user.slice/user-0.slice/user@0.service/machine.slice/libpod-cf21d19260ace8544fe8b769fc2638bf2c0873dfbfff0b6253f0569b26a1d5eb.scope/container",
		want: Ref{ContainerID: "cf21d19260ace8544fe8b769fc2638bf2c0873dfbfff0b6253f0569b26a1d5eb", Runtime: "podman"},
	},
	{
		// containers/podman#29582, rootless with --cgroup-parent=user.slice
		// (ID there is elided; made up here).
		name: "podman rootless user.slice",
		path: "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-0d3e5f7a9b1c2d4e6f8a0b2c4d6e8f0a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e.scope/container",
		want: Ref{ContainerID: "0d3e5f7a9b1c2d4e6f8a0b2c4d6e8f0a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e", Runtime: "podman"},
	},
	{
		// "CgroupPath" in a pasted podman inspect output (cgroupfs).
		name: "podman cgroupfs",
		path: "/libpod_parent/libpod-cf594798841275880f780c2aa55954b2d218b92a7c82df039aef02e2f4fe83f1",
		want: Ref{ContainerID: "cf594798841275880f780c2aa55954b2d218b92a7c82df039aef02e2f4fe83f1", Runtime: "podman"},
	},
	{
		// Podman pod under cgroupfs: libpod names the pod cgroup by the
		// bare pod ID (libpod/runtime_pod_linux.go); IDs made up.
		name: "podman pod cgroupfs",
		path: "/libpod_parent/9f8e7d6c5b4a39281f0e9d8c7b6a59483f2e1d0c9b8a79685f4e3d2c1b0a9988/libpod-cf594798841275880f780c2aa55954b2d218b92a7c82df039aef02e2f4fe83f1",
		want: Ref{ContainerID: "cf594798841275880f780c2aa55954b2d218b92a7c82df039aef02e2f4fe83f1", Runtime: "podman"},
	},
	{
		// Podman pod under systemd: machine-libpod_pod_<pod>.slice (same
		// libpod source); IDs made up.
		name: "podman pod systemd",
		path: "/machine.slice/machine-libpod_pod_9f8e7d6c5b4a39281f0e9d8c7b6a59483f2e1d0c9b8a79685f4e3d2c1b0a9988.slice/libpod-a2bc7b153f034b17f358cde43a7f8c7475147e8a0d1b2573c26473244ec44ce4.scope",
		want: Ref{ContainerID: "a2bc7b153f034b17f358cde43a7f8c7475147e8a0d1b2573c26473244ec44ce4", Runtime: "podman"},
	},
	{
		// A cephadm daemon run with podman --cgroups=split, from a C++
		// container-matcher test; the ceph slice's UUID is not a pod.
		name: "podman split payload",
		path: "/system.slice/system-ceph-f952f5be-565c-11f0-ab72-0affea283157.slice/ceph-f952f5be-565c-11f0-ab72-0affea283157@mon.ip-10-0-25-96.service/libpod-payload-9cc35a907a1e4e7ac8c021758b2bb28db60b3a787115f9114a641bf44f8ba99b",
		want: Ref{ContainerID: "9cc35a907a1e4e7ac8c021758b2bb28db60b3a787115f9114a641bf44f8ba99b", Runtime: "podman"},
	},

	// --- containerd without Kubernetes ---
	{
		// Google Cloud Shell, "cat /proc/$$/cgroup" in a write-up.
		name: "containerd k8s.io namespace",
		path: "/k8s.io/3d8f6f63ac932eaea905aceb8f4549b019a92f4917365b6eb0011af11d809476",
		want: Ref{ContainerID: "3d8f6f63ac932eaea905aceb8f4549b019a92f4917365b6eb0011af11d809476", Runtime: "containerd"},
	},
	{
		// ctr's default namespace (falcosecurity/libs containerd matcher);
		// ID made up.
		name: "containerd default namespace",
		path: "/default/5b2e6a1f0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f",
		want: Ref{ContainerID: "5b2e6a1f0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f", Runtime: "containerd"},
	},
	{
		// nerdctl with the systemd driver sets "system.slice:nerdctl:<id>",
		// which runc makes this scope; ID made up.
		name: "nerdctl systemd",
		path: "/system.slice/nerdctl-5b2e6a1f0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f.scope",
		want: Ref{ContainerID: "5b2e6a1f0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f", Runtime: "containerd"},
	},

	// --- not a container, or not one to trust ---
	{name: "empty", path: ""},
	{name: "root", path: "/"},
	{name: "init.scope", path: "/init.scope"},
	{name: "login session", path: "/user.slice/user-0.slice/session-3.scope"},
	{name: "system service", path: "/system.slice/nginx.service"},
	{
		// ctrsploit#280: the hybrid unified line of a Docker container.
		name: "containerd.service",
		path: "/system.slice/containerd.service",
	},
	{
		// pyroscope test: a host session seen through a cgroup namespace.
		name: "relative session",
		path: "/../../user.slice/user-501.slice/session-3.scope",
	},
	{
		// A compose unit: docker- prefix, no 64-hex ID, no .scope.
		name: "docker-compose unit",
		path: `/system.slice/system-docker\x2dcompose.slice/docker-compose@myapp.service`,
	},
	{
		// google/cadvisor containerd factory_test: a rootfs mount unit
		// embedding an ID.
		name: "containerd rootfs mount",
		path: "/system.slice/run-containerd-io.containerd.runtime.v1.linux-k8s.io-14ae50f1d3ada102aec3ab00168fdafb2dc0986d79ca9e8d5b75581fa89e9fea-rootfs.mount",
	},
	{
		// A scope with an ID-like name in the wrong suffix.
		name: "docker mount unit",
		path: "/system.slice/docker-9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d.mount",
	},
	{name: "short id", path: "/docker/2403ccfe427f"},
	{name: "uppercase id", path: "/docker/2403CCFE427F1DC7B6120DCCB9AC58C2F8456950380D587A9F33EA7F00DD303D"},
	{name: "qos slice only", path: "/kubepods.slice/kubepods-burstable.slice"},
	{name: "qos cgroupfs only", path: "/kubepods/besteffort"},
	{
		// pod<uid> outside kubepods is not trusted as a pod.
		name: "pod name outside kubepods",
		path: "/pod74c13223-5a00-11e9-b385-42010a80018d/x",
	},

	// --- partly recognisable ---
	{
		name: "pod with unknown child",
		path: "/kubepods/besteffort/pod74c13223-5a00-11e9-b385-42010a80018d/not-a-container",
		want: Ref{PodUID: "74c13223-5a00-11e9-b385-42010a80018d"},
	},
	{
		name: "pod name not a uuid",
		path: "/kubepods/besteffort/podnot-a-uuid/34dc0b5e626f2c5c4c5170e34b10e7654ce36f0fcd532739f4445baabea03376",
		want: Ref{ContainerID: "34dc0b5e626f2c5c4c5170e34b10e7654ce36f0fcd532739f4445baabea03376"},
	},
	{
		// cgroup v2 marks a removed cgroup " (deleted)" (zombie members).
		name: "deleted cgroup",
		path: "/kubepods.slice/kubepods-podf57400dc_94ce_4806_a52e_d2726f448f15.slice/cri-containerd-44f639a16a22e394061fb35d2138ef9391c2131db9bf5ae742ef4e447e824887.scope (deleted)",
		want: Ref{ContainerID: "44f639a16a22e394061fb35d2138ef9391c2131db9bf5ae742ef4e447e824887", PodUID: "f57400dc-94ce-4806-a52e-d2726f448f15", Runtime: "containerd"},
	},
}

func TestParsePath(t *testing.T) {
	for _, tc := range pathCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParsePath(tc.path); got != tc.want {
				t.Errorf("ParsePath(%q)\n got %+v\nwant %+v", tc.path, got, tc.want)
			}
		})
	}
}

// TestPathCaseIDs guards the table itself: a mistyped ID would make a
// "reject" case pass for the wrong reason.
func TestPathCaseIDs(t *testing.T) {
	for _, tc := range pathCases {
		if id := tc.want.ContainerID; id != "" && !isContainerID(id) {
			t.Errorf("%s: want.ContainerID %q is not 64 lowercase hex", tc.name, id)
		}
		if uid := tc.want.PodUID; uid != "" && !isUUID(uid) {
			t.Errorf("%s: want.PodUID %q is not a UUID", tc.name, uid)
		}
	}
}

// v1File is a cgroup v1 /proc/PID/cgroup in the shape of the one in
// opencontainers/runc#4620 (CRI-O, systemd driver): hierarchies the runtime
// does not manage ("files", "rdma") stay at "/".
const v1File = `13:freezer:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope
12:cpuset:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope
11:files:/
10:rdma:/
9:pids:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope
8:memory:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope
7:cpu,cpuacct:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope
1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope
`

// hybridDockerFile is ctrsploit#280: v1 hierarchies name the Docker
// container, the unified one only says containerd.service.
const hybridDockerFile = `12:net_cls,net_prio:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d
11:freezer:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d
10:rdma:/
9:blkio:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d
8:memory:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d
7:perf_event:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d
6:hugetlb:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d
5:cpuset:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d
4:devices:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d
3:pids:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d
2:cpu,cpuacct:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d
1:name=systemd:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d
0::/system.slice/containerd.service
`

func TestParse(t *testing.T) {
	const (
		crioID   = "5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c"
		crioPod  = "a5c1f8d5-1919-434d-add7-4afaafdaef89"
		dockerID = "2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d"
		ctrdID   = "a534eb629135e43beb13213976e37bb2ab95cba4c0d1d0b4e27c6bc4d8091b83"
		ctrdPod  = "471203d1-984f-477e-9c35-db96487ffe5e"
		otherID  = "9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d"
	)
	ctrdPath := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod471203d1_984f_477e_9c35_db96487ffe5e.slice/cri-containerd-" + ctrdID + ".scope"
	cases := []struct {
		name    string
		content string
		want    Ref
	}{
		{name: "v1", content: v1File, want: Ref{ContainerID: crioID, PodUID: crioPod, Runtime: "cri-o"}},
		{name: "v2", content: "0::" + ctrdPath + "\n", want: Ref{ContainerID: ctrdID, PodUID: ctrdPod, Runtime: "containerd"}},
		{name: "v2 without newline", content: "0::" + ctrdPath, want: Ref{ContainerID: ctrdID, PodUID: ctrdPod, Runtime: "containerd"}},
		{name: "v2 host process", content: "0::/system.slice/sshd.service\n"},
		{name: "hybrid, container only in v1", content: hybridDockerFile, want: Ref{ContainerID: dockerID, Runtime: "docker"}},
		{
			// Hybrid where both agree in form but the unified line is
			// preferred when it names a container.
			name:    "hybrid, unified names a container",
			content: "3:pids:/docker/" + otherID + "\n1:name=systemd:/docker/" + otherID + "\n0::" + ctrdPath + "\n",
			want:    Ref{ContainerID: ctrdID, PodUID: ctrdPod, Runtime: "containerd"},
		},
		{
			// The unified line only knows the pod; a v1 line knows more.
			name:    "hybrid, v1 knows more than unified",
			content: "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod471203d1_984f_477e_9c35_db96487ffe5e.slice\n5:memory:" + ctrdPath + "\n",
			want:    Ref{ContainerID: ctrdID, PodUID: ctrdPod, Runtime: "containerd"},
		},
		{
			// Equal information: pids beats memory beats cpu beats
			// name=systemd, whatever the order of lines.
			name:    "v1 preference order",
			content: "1:name=systemd:/docker/" + otherID + "\n2:cpu,cpuacct:/docker/" + otherID + "\n8:memory:/docker/" + dockerID + "\n9:pids:/docker/" + dockerID + "\n",
			want:    Ref{ContainerID: dockerID, Runtime: "docker"},
		},
		{
			name:    "v1 preference order without pids",
			content: "1:name=systemd:/docker/" + dockerID + "\n2:cpu,cpuacct:/docker/" + otherID + "\n",
			want:    Ref{ContainerID: otherID, Runtime: "docker"},
		},
		{
			name:    "junk lines ignored",
			content: "garbage\n\nx:pids:/docker/" + otherID + "\n3:pids:relative/docker/" + otherID + "\n4::/docker/" + otherID + "\n5:memory:/docker/" + dockerID + "\n",
			want:    Ref{ContainerID: dockerID, Runtime: "docker"},
		},
		{name: "empty", content: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Parse([]byte(tc.content)); got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestRead(t *testing.T) {
	root := t.TempDir()
	writeProc := func(pid, content string) {
		t.Helper()
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeProc("1", "0::/init.scope\n")
	writeProc("4242", v1File)

	got, err := Read(root, 4242)
	if err != nil {
		t.Fatal(err)
	}
	want := Ref{ContainerID: "5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c", PodUID: "a5c1f8d5-1919-434d-add7-4afaafdaef89", Runtime: "cri-o"}
	if got != want {
		t.Errorf("Read(4242) = %+v, want %+v", got, want)
	}

	if got, err := Read(root, 1); err != nil || got != (Ref{}) {
		t.Errorf("Read(1) = %+v, %v; want zero Ref, nil", got, err)
	}
	if _, err := Read(root, 7); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read of a missing pid: err = %v, want fs.ErrNotExist", err)
	}
	if _, err := Read(root, 0); err == nil || !strings.Contains(err.Error(), "invalid pid") {
		t.Errorf("Read(0): err = %v, want invalid pid", err)
	}
}

// TestReadSelf reads the test process's own cgroup: whatever it is, Read
// must succeed on a real procfs.
func TestReadSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/cgroup"); err != nil {
		t.Skip("no /proc/self/cgroup:", err)
	}
	ref, err := Read("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("this process: %+v", ref)
}
