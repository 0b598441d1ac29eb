package cgroup

import "strings"

const (
	runtimeContainerd = "containerd"
	runtimeCRIO       = "cri-o"
	runtimeDocker     = "docker"
	runtimePodman     = "podman"
)

// namedForm is one "<prefix><id>" cgroup name a runtime gives a container.
// The systemd driver makes it a "<prefix><id>.scope" unit; the cgroupfs
// driver uses the bare name. Each form is accepted only with the suffix
// the runtime is known to use, so that a name merely starting with
// "docker-" is not enough.
type namedForm struct {
	prefix  string
	runtime string
	scope   bool // "<prefix><id>.scope" exists (systemd driver)
	bare    bool // "<prefix><id>" exists (cgroupfs driver)
	monitor bool // the runtime's monitor (conmon), not the container
}

var namedForms = []namedForm{
	{prefix: "cri-containerd-", runtime: runtimeContainerd, scope: true},
	{prefix: "nerdctl-", runtime: runtimeContainerd, scope: true},
	{prefix: "crio-conmon-", runtime: runtimeCRIO, scope: true, bare: true, monitor: true},
	{prefix: "crio-", runtime: runtimeCRIO, scope: true, bare: true},
	{prefix: "docker-", runtime: runtimeDocker, scope: true},
	{prefix: "libpod-conmon-", runtime: runtimePodman, scope: true, bare: true, monitor: true},
	{prefix: "libpod-payload-", runtime: runtimePodman, bare: true},
	{prefix: "libpod-", runtime: runtimePodman, scope: true, bare: true},
}

// member is what one cgroup name says: a container (id set) or a monitor
// process of the runtime (id empty).
type member struct {
	id      string
	runtime string
}

// ParsePath reads one cgroup path (as in the third field of a
// /proc/PID/cgroup line).
func ParsePath(path string) Ref {
	segs := segments(path)
	for i := range segs {
		uid, ok := podSegment(segs, i)
		if !ok {
			continue
		}
		// A pod cgroup that says nothing (a static pod with no container
		// below it) should not hide a container further up the path.
		if ref := podRef(uid, segs, i); ref != (Ref{}) {
			return ref
		}
		break
	}
	return firstContainer(segs)
}

// podRef describes the pod at segs[i] and the container directly below
// it. Only the direct child counts: kubelet places containers there, and
// anything deeper belongs to whatever runs inside the container.
func podRef(uid string, segs []string, i int) Ref {
	ref := Ref{PodUID: uid}
	if i+1 < len(segs) {
		if m, ok := containerSegment(segs[i+1], segs[i]); ok {
			ref.ContainerID, ref.Runtime = m.id, m.runtime
		}
	}
	return ref
}

// firstContainer returns the outermost container on the path, which is the
// one the host's runtime created; a monitor seen before it only lends its
// runtime when no container is found at all.
func firstContainer(segs []string) Ref {
	var monitor Ref
	for i, name := range segs {
		parent := ""
		if i > 0 {
			parent = segs[i-1]
		}
		m, ok := containerSegment(name, parent)
		switch {
		case !ok:
		case m.id != "":
			return Ref{ContainerID: m.id, Runtime: m.runtime}
		case monitor.Runtime == "":
			monitor.Runtime = m.runtime
		}
	}
	return monitor
}

// segments splits a cgroup path into names. A deleted cgroup is shown
// by the kernel with a " (deleted)" suffix; ".." stays, as the trace of
// an ancestor hidden by the reader's cgroup namespace.
func segments(path string) []string {
	path = strings.TrimSuffix(path, " (deleted)")
	var segs []string
	for name := range strings.SplitSeq(path, "/") {
		if name == "" || name == "." {
			continue
		}
		segs = append(segs, expandSystemdPath(name)...)
	}
	return segs
}

// expandSystemdPath turns runc's systemd cgroupsPath "slice:prefix:name",
// found verbatim in cgroupfs paths when the runtime's and kubelet's cgroup
// drivers disagree, into the "slice" and "prefix-name.scope" it stands for.
func expandSystemdPath(name string) []string {
	parts := strings.Split(name, ":")
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return []string{name}
	}
	scope := parts[1] + "-" + parts[2] + ".scope"
	if parts[0] == "" {
		return []string{scope}
	}
	return []string{parts[0], scope}
}

// containerSegment tells whether a cgroup name (with its parent's name)
// is a container's cgroup or a runtime monitor's.
func containerSegment(name, parent string) (member, bool) {
	if isContainerID(name) {
		return bareID(name, parent)
	}
	for _, f := range namedForms {
		rest, found := strings.CutPrefix(name, f.prefix)
		if !found {
			continue
		}
		id, scoped := strings.CutSuffix(rest, ".scope")
		if !isContainerID(id) || (scoped && !f.scope) || (!scoped && !f.bare) {
			continue
		}
		if f.monitor {
			return member{runtime: f.runtime}, true
		}
		return member{id: id, runtime: f.runtime}, true
	}
	return member{}, false
}

// bareID judges a cgroup named by nothing but an ID, which only its parent
// can attribute to a runtime.
func bareID(id, parent string) (member, bool) {
	switch parent {
	case "libpod_parent":
		// Podman's cgroupfs pod cgroup: the ID is a pod's, and its
		// containers are libpod-<id> below it.
		return member{}, false
	case "docker":
		return member{id: id, runtime: runtimeDocker}, true
	case "default", "k8s.io":
		// containerd's default and CRI namespaces: ctr, nerdctl and CRI
		// without a cgroup parent use /<namespace>/<id>.
		return member{id: id, runtime: runtimeContainerd}, true
	}
	return member{id: id}, true
}

// podSegment tells whether segs[i] is a kubelet pod cgroup and returns the
// pod's UID when it is UUID-shaped.
func podSegment(segs []string, i int) (string, bool) {
	if name, ok := strings.CutSuffix(segs[i], ".slice"); ok {
		return systemdPod(name)
	}
	return cgroupfsPod(segs[i], segs[:i])
}

// systemdPod reads "[<root>-]kubepods[-<qos>]-pod<uid>" (".slice" removed):
// kubelet's systemd driver flattens the cgroupfs path into the unit name and
// escapes the UID's dashes as underscores, since a dash means nesting.
func systemdPod(name string) (string, bool) {
	i := strings.LastIndex(name, "-pod")
	if i < 0 || !isKubepodsSlice(name[:i]) {
		return "", false
	}
	raw := name[i+len("-pod"):]
	if strings.Contains(raw, "-") {
		return "", false
	}
	return podUID(strings.ReplaceAll(raw, "_", "-"))
}

func isKubepodsSlice(name string) bool {
	name = strings.TrimSuffix(name, "-besteffort")
	name = strings.TrimSuffix(name, "-burstable")
	return name == "kubepods" || strings.HasSuffix(name, "-kubepods")
}

// cgroupfsPod reads "pod<uid>", which on its own is too plain a name to
// trust: it must sit in kubepods or in its besteffort/burstable child.
// ".." stands for such an ancestor hidden by the reader's cgroup namespace.
func cgroupfsPod(name string, ancestors []string) (string, bool) {
	raw, ok := strings.CutPrefix(name, "pod")
	if !ok || !underKubepods(ancestors) {
		return "", false
	}
	return podUID(raw)
}

func underKubepods(ancestors []string) bool {
	n := len(ancestors)
	if n == 0 {
		return false
	}
	switch ancestors[n-1] {
	case "kubepods", "..":
		return true
	case "besteffort", "burstable":
		return n >= 2 && (ancestors[n-2] == "kubepods" || ancestors[n-2] == "..")
	}
	return false
}

// podUID accepts a UUID, and a static pod's 32-hex config hash as a pod
// without a usable UID (it is not the mirror pod's UID in the API).
func podUID(raw string) (string, bool) {
	switch {
	case isUUID(raw):
		return raw, true
	case len(raw) == 32 && isLowerHex(raw):
		return "", true
	}
	return "", false
}

func isContainerID(s string) bool {
	return len(s) == 64 && isLowerHex(s)
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isLowerHexDigit(s[i]) {
				return false
			}
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for i := range len(s) {
		if !isLowerHexDigit(s[i]) {
			return false
		}
	}
	return true
}

func isLowerHexDigit(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f')
}
