// Package identity says who a network namespace and a process belong to:
// which Kubernetes pod, which container.
//
// Two sources, in order. The cgroup path of a process (package cgroup)
// carries its container ID and, under Kubernetes, its pod UID: no
// dependency, no privilege beyond reading /proc. The node's container
// runtime (package runtimeapi: CRI for containerd and CRI-O, the Docker
// Engine API) turns those IDs into names. Answers are cached there, and
// the runtime is asked again only for IDs it has not named yet.
//
// A namespace is named from its processes: the pod UID most of them carry
// wins, so a debugging tool an operator nsenter'd into a pod (a process in
// the pod's namespace but in the host's cgroups) does not change the
// answer.
package identity

import (
	"context"
	"slices"
	"time"

	"github.com/listenq/listenq_exporter/internal/cgroup"
	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/runtimeapi"
)

// maxProcesses bounds how many processes of one namespace are read to name
// it: a pod holds a handful, and the host's namespace is never named.
const maxProcesses = 64

// Resolver names namespaces and containers.
type Resolver struct {
	procRoot string
	// dir is nil when no runtime is known: IDs from cgroups only.
	dir     *runtimeapi.Directory
	timeout time.Duration
}

// New returns a Resolver reading cgroups under procRoot and asking dir
// (nil for none) for names, each lookup bounded by timeout.
func New(procRoot string, dir *runtimeapi.Directory, timeout time.Duration) *Resolver {
	return &Resolver{procRoot: procRoot, dir: dir, timeout: timeout}
}

// Namespace returns who the namespace f belongs to, and whether that answer
// is settled: false while a runtime has not yet named a pod or container
// its processes' cgroups point to (a pod being created), so the caller can
// wait a bounded time before labelling series with it.
func (r *Resolver) Namespace(f netns.Found) (netns.Identity, bool) {
	uid, ids, runtime := r.readCgroups(f.PIDs)
	if uid == "" && len(ids) == 0 {
		return netns.Identity{}, true // not a container's namespace
	}
	if r.dir == nil {
		return netns.Identity{PodUID: uid, Runtime: runtime}, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	if uid != "" {
		if pod, rt, ok := r.dir.Pod(ctx, uid); ok {
			return netns.Identity{Namespace: pod.Namespace, Pod: pod.Name, PodUID: uid, Runtime: rt}, true
		}
	}
	for _, id := range ids {
		c, rt, ok := r.dir.Container(ctx, id)
		if !ok {
			continue
		}
		if c.PodUID == "" {
			// A container of its own (plain Docker): no pod.
			return netns.Identity{Runtime: rt}, true
		}
		if pod, _, ok := r.dir.Pod(ctx, c.PodUID); ok {
			return netns.Identity{Namespace: pod.Namespace, Pod: pod.Name, PodUID: c.PodUID, Runtime: rt}, true
		}
	}
	return netns.Identity{PodUID: uid, Runtime: runtime}, false
}

// readCgroups returns the pod UID most processes carry, the container IDs
// seen (most common first) and the runtime the cgroup layout names.
func (r *Resolver) readCgroups(pids []int) (uid string, ids []string, runtime string) {
	uids, ctrs := map[string]int{}, map[string]int{}
	for _, pid := range pids[:min(len(pids), maxProcesses)] {
		ref, err := cgroup.Read(r.procRoot, pid)
		if err != nil {
			continue // exited
		}
		if ref.PodUID != "" {
			uids[ref.PodUID]++
		}
		if ref.ContainerID != "" {
			ctrs[ref.ContainerID]++
		}
		if runtime == "" {
			runtime = ref.Runtime
		}
	}
	return mostCommon(uids), byCount(ctrs), runtime
}

// Container names the container process pid runs in, and whether the
// answer is settled (false while the runtime has not named a container
// that the cgroup shows). "" when it is in no container or the runtime
// does not know it.
func (r *Resolver) Container(pid int) (string, bool) {
	ref, err := cgroup.Read(r.procRoot, pid)
	if err != nil || ref.ContainerID == "" || r.dir == nil {
		return "", true
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	if c, _, ok := r.dir.Container(ctx, ref.ContainerID); ok {
		return c.Name, true
	}
	return "", false
}

func mostCommon(counts map[string]int) string {
	if s := byCount(counts); len(s) > 0 {
		return s[0]
	}
	return ""
}

// byCount sorts keys by count, most first, ties by key for a stable answer.
func byCount(counts map[string]int) []string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if counts[a] != counts[b] {
			return counts[b] - counts[a]
		}
		if a < b {
			return -1
		}
		return 1
	})
	return keys
}
