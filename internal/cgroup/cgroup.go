// Package cgroup tells which container, and which Kubernetes pod, a process
// belongs to, from its cgroup membership (/proc/PID/cgroup).
//
// Container runtimes and the kubelet put the container ID and the pod UID
// into the names of the cgroups they create, so the cgroup path is the one
// source of container identity that needs no runtime socket, no API
// credentials and no dependency: a plain read of procfs, which an exporter
// already does. This package only decodes those names. Turning an ID into a
// container name, a pod name or a namespace is left to a later step that can
// ask the runtime or the API server; the ID and UID found here are the keys
// for that lookup.
//
// Layouts recognised, under any prefix (a parent slice, a kind node's
// "/kubelet" or "/kubelet.slice" root, a "/../.." seen through a cgroup
// namespace), in cgroup v1 and v2 alike:
//
//   - Kubernetes, cgroupfs driver: kubepods[/besteffort|/burstable]/pod<uid>
//     and, below it, the container as a bare <id> (containerd, dockershim),
//     crio-<id> or crio-conmon-<id>.
//   - Kubernetes, systemd driver: [<root>-]kubepods[-besteffort|-burstable]-pod<uid_with_underscores>.slice
//     and, below it, cri-containerd-<id>.scope, crio-<id>.scope,
//     docker-<id>.scope or crio-conmon-<id>.scope; also the verbatim
//     "<slice>:<prefix>:<id>" form left by a driver mismatch.
//   - Docker: /docker/<id> (cgroupfs), docker-<id>.scope (systemd).
//   - Podman: libpod-<id>.scope (systemd, optionally with a "/container"
//     leaf), libpod-<id> (cgroupfs, e.g. /libpod_parent/libpod-<id>),
//     libpod-payload-<id> (--cgroups=split), libpod-conmon-<id>[.scope].
//   - containerd without Kubernetes: /<namespace>/<id> (ctr, nerdctl with
//     cgroupfs), nerdctl-<id>.scope (nerdctl with systemd).
//   - Any other cgroup named by a bare 64-hex ID (e.g. ECS, a custom
//     --cgroup-parent): the ID, with Runtime left empty.
//
// It is strict on purpose: a container ID must be 64 lowercase hex digits and
// a pod UID must be UUID-shaped, so a unit that only looks like a container
// (docker-compose@x.service, a containerd rootfs .mount) is not taken for
// one. A path recognised only in part yields the part that can be trusted.
//
// Decisions a caller should know:
//
//   - A conmon cgroup (crio-conmon-, libpod-conmon-) is the runtime's
//     monitor, not the container: it yields the pod UID and the Runtime but
//     no ContainerID. ContainerID is the field that says "in a container".
//   - A static pod's UID is a 32-hex config hash, not a UUID, and is not the
//     UID of its mirror pod in the API; PodUID stays empty for it, while the
//     container below it is still reported.
//   - When containers nest, a Kubernetes pod anywhere on the path wins (so a
//     kind node seen from its host reports the pod, not the node container);
//     otherwise the outermost container wins, because it is the one the
//     host's runtime knows.
package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Ref is what a cgroup path says about a process's container.
type Ref struct {
	ContainerID string // full container ID as the runtime names it (usually 64 lowercase hex); "" when none
	PodUID      string // Kubernetes pod UID in its canonical dashed form (8-4-4-4-12); "" when none
	Runtime     string // "containerd", "cri-o", "docker", "podman" or "" when the layout does not say
}

// Parse reads the whole content of /proc/PID/cgroup (cgroup v1: many
// "ID:controllers:path" lines; v2: "0::path"; hybrid: both). It prefers the
// v2 unified line when it names a container, else the line that yields the
// most information, ties going to the v2 line, then to the "pids",
// "memory", "cpu" and "name=systemd" hierarchies in that order. Lines it
// cannot parse are ignored.
func Parse(content []byte) Ref {
	var best Ref
	bestRank := -1
	for line := range strings.SplitSeq(string(content), "\n") {
		controllers, path, ok := splitLine(line)
		if !ok {
			continue
		}
		ref := ParsePath(path)
		unified := controllers == ""
		// In hybrid mode the v1 hierarchies can lag behind (or be left at
		// "/" by a runtime that only manages the unified one), so a
		// container named on the unified line is the answer.
		if unified && ref.ContainerID != "" {
			return ref
		}
		if r := rank(ref, controllers, unified); r > bestRank {
			best, bestRank = ref, r
		}
	}
	return best
}

// Read reads /proc/PID/cgroup under procRoot (e.g. "/proc" or "/host/proc")
// and parses it. The error is the one from reading the file, so a process
// that has exited can be told apart with errors.Is(err, fs.ErrNotExist).
func Read(procRoot string, pid int) (Ref, error) {
	if pid <= 0 {
		return Ref{}, fmt.Errorf("cgroup: invalid pid %d", pid)
	}
	content, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return Ref{}, err
	}
	return Parse(content), nil
}

// splitLine splits "hierarchy-ID:controllers:path". The path is the rest of
// the line, since a cgroup name may itself contain a colon. The unified
// hierarchy is the line with an empty controller list (ID 0).
func splitLine(line string) (controllers, path string, ok bool) {
	id, rest, ok := strings.Cut(line, ":")
	if !ok || !isDigits(id) {
		return "", "", false
	}
	controllers, path, ok = strings.Cut(rest, ":")
	if !ok || !strings.HasPrefix(path, "/") || (controllers == "" && id != "0") {
		return "", "", false
	}
	return controllers, path, true
}

// rank orders candidate lines: information first, then which hierarchy it
// came from. The hierarchies preferred are those every runtime places a
// container in; cpuset or net_cls are sometimes left at "/".
func rank(ref Ref, controllers string, unified bool) int {
	info := 0
	if ref.ContainerID != "" {
		info += 4
	}
	if ref.PodUID != "" {
		info += 2
	}
	if ref.Runtime != "" {
		info++
	}
	return info*8 + hierarchyPreference(controllers, unified)
}

func hierarchyPreference(controllers string, unified bool) int {
	if unified {
		return 5
	}
	best := 0
	for c := range strings.SplitSeq(controllers, ",") {
		switch c {
		case "pids":
			best = max(best, 4)
		case "memory":
			best = max(best, 3)
		case "cpu":
			best = max(best, 2)
		case "name=systemd":
			best = max(best, 1)
		}
	}
	return best
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
