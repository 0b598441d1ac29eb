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
	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/owner"
)

type discoveryFlags struct {
	enabled          *bool
	interval         *time.Duration
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
		if p.src == "" {
			continue
		}
		if _, err := regexp.Compile(p.src); err != nil {
			return nil, fmt.Errorf("--netns.%s: %w", p.flag, err)
		}
		res[i] = regexp.MustCompile("^(?:" + p.src + ")$")
	}
	pass := func(include, exclude *regexp.Regexp, v string) bool {
		return (include == nil || include.MatchString(v)) && (exclude == nil || !exclude.MatchString(v))
	}
	return func(id netns.Identity) bool {
		return pass(res[0], res[1], id.Namespace) && pass(res[2], res[3], id.Pod)
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
	set := netns.NewSet(netns.SetConfig{
		Sources: netns.Sources{
			ProcRoot:  *cfg.procfs,
			NamedDir:  filepath.Join(*cfg.rootfs, "run", "netns"),
			OtherDirs: []string{filepath.Join(*cfg.rootfs, "var", "run", "docker", "netns"), filepath.Join(*cfg.rootfs, "run", "docker", "netns")},
		},
		Admit:  admit,
		Logger: logger,
	}, self)
	if err := set.Refresh(); err != nil {
		return nil, nil, fmt.Errorf("--path.procfs: discover network namespaces: %w", err)
	}
	go set.Run(ctx, *d.interval)
	return set, []prometheus.Collector{collector.NewDiscoveryCollector(set)}, nil
}
