package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/listenq/listenq_exporter/collector"
	"github.com/listenq/listenq_exporter/internal/identity"
	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/owner"
	"github.com/listenq/listenq_exporter/internal/runtimeapi"
)

type discoveryFlags struct {
	enabled          *bool
	interval         *time.Duration
	endpoints        *[]string
	noRuntime        *bool
	runtimeTimeout   *time.Duration
	namespaceInclude *string
	namespaceExclude *string
	podInclude       *string
	podExclude       *string
}

func addDiscoveryFlags(app *kingpin.Application) *discoveryFlags {
	re := func(name, help string) *string {
		return app.Flag("netns."+name, help+" (a regular expression matched against the whole value; \"\" is the host's namespace and namespaces outside Kubernetes).").Default("").String()
	}
	return &discoveryFlags{
		enabled: app.Flag("netns.discovery",
			"Read every network namespace on the host (every process's, /run/netns and docker's bind mounts), not only the exporter's own. Needs CAP_SYS_ADMIN, CAP_SYS_PTRACE and the host's PID namespace; without them the exporter serves its own namespace and says so in listenq_netns_discovered{state=\"denied\"}.").
			Default("true").Bool(),
		interval: app.Flag("netns.refresh-interval",
			"How often to look for network namespaces that appeared (a pod started) or went (its series and every file and socket held for it are dropped). A scan costs about a stat per process.").
			Default("10s").Duration(),
		endpoints: app.Flag("runtime.endpoint",
			"Container runtime socket to name pods and containers with: unix:///PATH or cri:///PATH for CRI (containerd, CRI-O), docker:///PATH for the Docker Engine API; a bare path is CRI unless it is docker.sock. Repeatable. Default: every well-known socket found under --path.rootfs.").
			Strings(),
		noRuntime: app.Flag("runtime.disable",
			"Ask no container runtime: namespaces and listeners get pod UIDs from cgroups but no names.").Default("false").Bool(),
		runtimeTimeout: app.Flag("runtime.timeout",
			"How long one call to a container runtime may take; a runtime that does not answer in time leaves names empty and sets listenq_runtime_up to 0.").
			Default("2s").Duration(),
		namespaceInclude: re("namespace-include", "Read only network namespaces of pods in a Kubernetes namespace that matches"),
		namespaceExclude: re("namespace-exclude", "Do not read network namespaces of pods in a Kubernetes namespace that matches"),
		podInclude:       re("pod-include", "Read only network namespaces of pods whose name matches"),
		podExclude:       re("pod-exclude", "Do not read network namespaces of pods whose name matches"),
	}
}

// admit compiles the namespace/pod filters into one function.
func (f *discoveryFlags) admit() (func(netns.Identity) bool, error) {
	var res [4]*regexp.Regexp
	for i, p := range []struct{ flag, src string }{
		{"namespace-include", *f.namespaceInclude}, {"namespace-exclude", *f.namespaceExclude},
		{"pod-include", *f.podInclude}, {"pod-exclude", *f.podExclude},
	} {
		re, err := collector.WholeMatch("netns."+p.flag, p.src)
		if err != nil {
			return nil, err
		}
		res[i] = re
	}
	return func(id netns.Identity) bool {
		return collector.Admits(res[0], res[1], id.Namespace) && collector.Admits(res[2], res[3], id.Pod)
	}, nil
}

// newNamespaces returns what the collectors read: the exporter's own
// namespace, or, with discovery, every namespace of the host. extra are the
// collectors of discovery's own health.
func newNamespaces(ctx context.Context, cfg *config, resolver *owner.Resolver, logger *slog.Logger) (netns.Namespaces, []prometheus.Collector, error) {
	d := cfg.discovery
	if !*d.enabled {
		self, err := netns.Self(*cfg.procfs, "")
		if err != nil {
			return nil, nil, fmt.Errorf("--path.procfs: %w", err)
		}
		return netns.Static{self}, nil, nil
	}
	if *d.interval < time.Second {
		return nil, nil, fmt.Errorf("--netns.refresh-interval must be at least 1s, got %v", *d.interval)
	}
	admit, err := d.admit()
	if err != nil {
		return nil, nil, err
	}
	self, err := netns.Self(*cfg.procfs, netns.SelfID(*cfg.procfs))
	if err != nil {
		return nil, nil, fmt.Errorf("--path.procfs: %w", err)
	}
	dir, err := newDirectory(d, *cfg.rootfs, logger)
	if err != nil {
		return nil, nil, err
	}
	if dir != nil {
		// Ask the runtimes once now, so an unreachable one is logged and
		// visible in listenq_runtime_up from the start, not only when the
		// first pod appears.
		go dir.Refresh(ctx)
	}
	ids := identity.New(*cfg.procfs, dir, *d.runtimeTimeout)
	resolver.SetDescriber(ids.Container, identityWait)
	set := netns.NewSet(netns.SetConfig{
		Sources: netns.Sources{
			ProcRoot:  *cfg.procfs,
			NamedDir:  filepath.Join(*cfg.rootfs, "run", "netns"),
			OtherDirs: []string{filepath.Join(*cfg.rootfs, "var", "run", "docker", "netns"), filepath.Join(*cfg.rootfs, "run", "docker", "netns")},
		},
		Identify:     ids.Namespace,
		IdentityWait: identityWait,
		Admit:        admit,
		Logger:       logger,
	}, self)
	if err := set.Refresh(); err != nil {
		return nil, nil, fmt.Errorf("--path.procfs: discover network namespaces: %w", err)
	}
	go set.Run(ctx, *d.interval)
	extra := []prometheus.Collector{collector.NewDiscoveryCollector(set)}
	if dir != nil {
		extra = append(extra, collector.NewRuntimeCollector(dir))
	}
	return set, extra, nil
}

// identityWait bounds how long a new namespace, or a new listener's
// container, waits for the runtime to name it before it is exported with
// what is known: a pod's sandbox exists a moment before the runtime lists
// it, and labels never change once exported.
const identityWait = 30 * time.Second

// runtimeMinRefresh spaces the runtime calls that unknown IDs cause.
const runtimeMinRefresh = 2 * time.Second

// newDirectory connects to the runtimes the flags name, or to every one
// found under rootfs; nil when there is none.
func newDirectory(d *discoveryFlags, rootfs string, logger *slog.Logger) (*runtimeapi.Directory, error) {
	if *d.noRuntime {
		return nil, nil
	}
	if *d.runtimeTimeout <= 0 {
		return nil, fmt.Errorf("--runtime.timeout must be positive, got %v", *d.runtimeTimeout)
	}
	var endpoints []runtimeapi.Endpoint
	for _, s := range *d.endpoints {
		e, err := runtimeapi.ParseEndpoint(s)
		if err != nil {
			return nil, fmt.Errorf("--runtime.endpoint: %w", err)
		}
		endpoints = append(endpoints, e)
	}
	if len(endpoints) == 0 {
		endpoints = runtimeapi.Detect(rootfs)
	}
	if len(endpoints) == 0 {
		logger.Info("no container runtime socket found; pods and containers are named from cgroups only (pod UID, no names)", "rootfs", rootfs)
		return nil, nil
	}
	var clients []runtimeapi.Client
	for _, e := range endpoints {
		c, err := e.NewClient(*d.runtimeTimeout)
		if err != nil {
			return nil, fmt.Errorf("--runtime.endpoint %s: %w", e, err)
		}
		clients = append(clients, c)
		logger.Info("naming pods and containers with a container runtime", "endpoint", e.String())
	}
	return runtimeapi.NewDirectory(clients, runtimeMinRefresh, logger), nil
}
