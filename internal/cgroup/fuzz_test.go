package cgroup

import (
	"slices"
	"testing"
)

// FuzzParse checks that no input panics and that whatever comes out keeps
// the promises of Ref: a 64-hex ID, a UUID-shaped pod UID, a known runtime.
func FuzzParse(f *testing.F) {
	f.Add([]byte(v1File))
	f.Add([]byte(hybridDockerFile))
	for _, tc := range pathCases {
		f.Add([]byte("0::" + tc.path + "\n"))
	}
	f.Add([]byte("0::/a:b:c\n1:x::/:::\n"))
	f.Fuzz(func(t *testing.T, content []byte) {
		checkRef(t, Parse(content))
		checkRef(t, ParsePath(string(content)))
	})
}

func checkRef(t *testing.T, ref Ref) {
	t.Helper()
	if ref.ContainerID != "" && !isContainerID(ref.ContainerID) {
		t.Errorf("ContainerID %q is not 64 lowercase hex", ref.ContainerID)
	}
	if ref.PodUID != "" && !isUUID(ref.PodUID) {
		t.Errorf("PodUID %q is not a UUID", ref.PodUID)
	}
	runtimes := []string{"", runtimeContainerd, runtimeCRIO, runtimeDocker, runtimePodman}
	if !slices.Contains(runtimes, ref.Runtime) {
		t.Errorf("Runtime %q is not a known runtime", ref.Runtime)
	}
}
