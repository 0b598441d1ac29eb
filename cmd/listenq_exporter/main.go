// Command listenq_exporter exports Linux listen-queue (accept backlog)
// health per listener for Prometheus.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	webflag "github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/listenq/listenq_exporter/collector"
	"github.com/listenq/listenq_exporter/internal/gctune"
	"github.com/listenq/listenq_exporter/internal/owner"
	"github.com/listenq/listenq_exporter/internal/selfproc"
	"github.com/listenq/listenq_exporter/internal/serve"
)

const (
	exporterName = "listenq_exporter"
	// defaultAddress is in Prometheus' exporter range and clear of the
	// exporters usually run beside this one (node 9100, process 9256,
	// nginx 9113, php-fpm 9253).
	defaultAddress = ":9637"
)

type config struct {
	webFlags        *web.FlagConfig
	metricsPath     *string
	maxRequests     *int
	procfs          *string
	rootfs          *string
	discovery       *discoveryFlags
	ownerScanPeriod *time.Duration
	samplerInterval *time.Duration
	samplerWindow   *time.Duration
	samplerMaxCPU   *float64
	collectors      collector.Selection
	filters         *collector.FilterFlags
	log             *promslog.Config
}

func addFlags(app *kingpin.Application) *config {
	c := &config{
		webFlags:    webflag.AddFlags(app, defaultAddress),
		metricsPath: app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").String(),
		maxRequests: app.Flag("web.max-requests",
			"Maximum number of parallel scrape requests; more get 503. 0 disables the limit.").
			Default("40").Int(),
		procfs:    app.Flag("path.procfs", "procfs mountpoint: the host's /proc (with the host's PID namespace) to see every process and network namespace.").Default("/proc").String(),
		rootfs:    app.Flag("path.rootfs", "The host's root filesystem, where /run/netns, docker's netns mounts and the container runtimes' sockets are found (/host when the exporter runs in a container with the host's / mounted there).").Default("/").String(),
		discovery: addDiscoveryFlags(app),
		ownerScanPeriod: app.Flag("owner.min-scan-interval",
			"Shortest time between two scans of /proc/*/fd to name the process owning new listeners; a listener first seen while a scan is not allowed is exported once it is named.").
			Default("5s").Duration(),
		samplerInterval: app.Flag("sampler.interval",
			"How often the background sampler reads every listener's queue, to catch bursts between scrapes (listenq_queue_peak_length, listenq_queue_full_seconds_total). A full queue lasting at least this long is always seen; a shorter one with a probability of its duration over the interval. Each round costs about 4 ms of CPU for 1,000 TCP listeners and 10,000 unix sockets; the default keeps that under 1% of a core. 0 turns it off.").
			Default("500ms").Duration(),
		samplerWindow: app.Flag("sampler.window",
			"Trailing window over which listenq_queue_peak_length is the highest length seen; make it at least the scrape interval.").
			Default("60s").Duration(),
		samplerMaxCPU: app.Flag("sampler.max-cpu",
			"Share of one CPU core the sampler may use. Every namespace's TCP read walks the host's whole listening table, so a round's cost grows with namespaces; when a round costs more than this allows at --sampler.interval, the sampler waits longer between rounds (listenq_sampler_interval_seconds) rather than take more CPU. 0 = no limit.").
			Default("0.01").Float64(),
		collectors: collector.AddFlags(app),
		filters:    collector.AddFilterFlags(app),
		log:        &promslog.Config{},
	}
	promslogflag.AddFlags(app, c.log)
	return c
}

func main() {
	app := kingpin.New(exporterName, "Prometheus exporter for Linux listen-queue (accept backlog) health, per listener.")
	cfg := addFlags(app)
	app.Version(version.Print(exporterName))
	app.HelpFlag.Short('h')
	kingpin.MustParse(app.Parse(os.Args[1:]))

	logger := promslog.New(cfg.log)
	if err := run(cfg, logger); err != nil {
		fmt.Fprintf(os.Stderr, "%s: error: %v\n", exporterName, err)
		os.Exit(1)
	}
}

func run(cfg *config, logger *slog.Logger) error {
	if err := validateTelemetryPath(*cfg.metricsPath); err != nil {
		return err
	}
	if *cfg.maxRequests < 0 {
		return fmt.Errorf("--web.max-requests must be 0 (no limit) or more, got %d", *cfg.maxRequests)
	}
	if len(cfg.collectors.Enabled()) == 0 {
		logger.Warn("every collector is switched off: the exporter serves only its own health metrics")
	}
	if path := *cfg.webFlags.WebConfigFile; path != "" {
		if err := web.Validate(path); err != nil {
			return fmt.Errorf("--web.config.file %s: %w", path, err)
		}
	}
	handler, err := newMetricsHandler(context.Background(), cfg, logger)
	if err != nil {
		return err
	}
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "listenq_exporter",
		Description: "Listen-queue (accept backlog) health per listener",
		Version:     version.Info(),
		Links:       []web.LandingLinks{{Address: *cfg.metricsPath, Text: "Metrics"}},
		// No /debug/pprof is served: an exporter with these privileges
		// should not hand out profiles to whoever can reach it.
		Profiling: "false",
	})
	if err != nil {
		return fmt.Errorf("landing page: %w", err)
	}

	mux := http.NewServeMux()
	mux.Handle(*cfg.metricsPath, tuneMemory(handler, newTuner()))
	if *cfg.metricsPath != "/" {
		mux.Handle("/", landing)
	}
	logger.Info("starting "+exporterName, "version", version.Info(), "collectors", cfg.collectors.Enabled())
	server := newServer(mux)
	if err := web.ListenAndServe(server, cfg.webFlags, logger); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// gcHeadroom is how far the heap grows past what is live before a
// collection (package gctune), unless GOGC is set. 8 MiB: at 25,000
// listeners it holds peak RSS under 50 MiB; at 1,000 it halves how often
// the heap is collected, for 4 MB of RSS.
const (
	gcHeadroom = 8 << 20
	gcFloor    = 25
)

// newTuner returns the GC tuner, or nil where GOGC sets the target.
func newTuner() *gctune.Tuner {
	if os.Getenv("GOGC") != "" {
		return nil
	}
	return gctune.New(gcHeadroom, gcFloor)
}

// tuneMemory returns h, which after each answer lets tuner (if any) set the
// GC target for what the scrape left live, and after the first gives the
// heap's free pages back to the operating system. The first scrape builds
// every cache at once (label sets, owners from a walk of /proc, compressed
// segments), the most garbage the exporter ever makes; left to the
// runtime's scavenger, its pages stayed resident (17 MB of idle heap 15 s
// later at 25,000 listeners), so RSS kept the start-up's peak rather than
// following the heap.
func tuneMemory(h http.Handler, tuner *gctune.Tuner) http.Handler {
	var once sync.Once
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if tuner != nil {
			tuner.Tune()
		}
		once.Do(func() { go releaseMemory() })
	})
}

var releaseMemory = debug.FreeOSMemory

func newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		// Longer than any usual scrape interval, so a Prometheus server
		// keeps its connection, while abandoned ones are closed.
		IdleTimeout: 5 * time.Minute,
	}
}

// ownerMissScans is how many scans must miss a socket's holder.
const ownerMissScans = 3

// minSamplerInterval keeps a mistyped interval (1ns) from spinning a core:
// one round over a busy host takes milliseconds.
const minSamplerInterval = 10 * time.Millisecond

func newMetricsHandler(ctx context.Context, cfg *config, logger *slog.Logger) (http.Handler, error) {
	filters, err := cfg.filters.Compile()
	if err != nil {
		return nil, err
	}
	if err := collector.ValidateFlags(); err != nil {
		return nil, err
	}
	interval, window := *cfg.samplerInterval, *cfg.samplerWindow
	switch {
	case interval < 0 || (interval > 0 && interval < minSamplerInterval):
		return nil, fmt.Errorf("--sampler.interval must be 0 (off) or at least %v, got %v", minSamplerInterval, interval)
	case window <= 0:
		return nil, fmt.Errorf("--sampler.window must be positive, got %v", window)
	case window < interval:
		return nil, fmt.Errorf("--sampler.window (%v) must be at least --sampler.interval (%v)", window, interval)
	}
	if c := *cfg.samplerMaxCPU; c < 0 || c > 1 {
		return nil, fmt.Errorf("--sampler.max-cpu must be between 0 and 1 (a share of one core), got %v", c)
	}
	if *cfg.ownerScanPeriod < 0 {
		return nil, fmt.Errorf("--owner.min-scan-interval must not be negative, got %v", *cfg.ownerScanPeriod)
	}
	resolver := owner.NewResolver(*cfg.procfs, *cfg.ownerScanPeriod)
	// A socket no scan finds a holder for is looked for in two more scans
	// before it is exported with process="": labels are fixed once
	// exported, and one scan can miss a process between fork and exec.
	resolver.SetMissScans(ownerMissScans)
	namespaces, extra, err := newNamespaces(ctx, cfg, resolver, logger)
	if err != nil {
		return nil, err
	}
	exporter, err := collector.New(cfg.collectors, collector.Deps{
		Logger:     logger,
		Namespaces: namespaces,
		Listeners:  collector.NewListenerExporter(filters, resolver),
		Sampler:    collector.NewSampler(interval, window, *cfg.samplerMaxCPU, logger),
	})
	if err != nil {
		return nil, err
	}
	exporter.Start(ctx)
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		versioncollector.NewCollector(exporterName),
		collectors.NewGoCollector(),
		processCollector(logger),
	)
	reg.MustRegister(extra...)
	errorLog := slog.NewLogLogger(logger.Handler(), slog.LevelError)
	// Formats other than text go through promhttp, which gathers the same
	// snapshot as families.
	fallback := promhttp.HandlerFor(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		s, err := exporter.Snapshot(reg)
		if s == nil {
			return nil, err
		}
		return s.Families(), err
	}), promhttp.HandlerOpts{ErrorLog: errorLog, ErrorHandling: promhttp.ContinueOnError})
	handler := serve.Shared(serve.New(func() (serve.Snapshot, error) {
		s, err := exporter.Snapshot(reg)
		if s == nil {
			return nil, err
		}
		return s, err
	}, fallback, serve.Options{MaxRequestsInFlight: *cfg.maxRequests, ErrorLog: errorLog}))
	return promhttp.InstrumentMetricHandler(reg, handler), nil
}

// processCollector is the process_* families' collector: selfproc's, or
// client_golang's own when selfproc cannot open its files.
func processCollector(logger *slog.Logger) prometheus.Collector {
	c, err := selfproc.New("/proc")
	if err != nil {
		logger.Info("process metrics read by client_golang's collector", "reason", err)
		return collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})
	}
	return c
}

// validateTelemetryPath accepts a clean absolute path and nothing that
// net/http's ServeMux would read as a pattern: a method ("GET /x"), a
// wildcard ("/{x}"), a subtree ("/x/"), or a host.
func validateTelemetryPath(p string) error {
	bad := func(why string) error { return fmt.Errorf("--web.telemetry-path %q: %s", p, why) }
	switch {
	case !strings.HasPrefix(p, "/"):
		return bad("must be an absolute path such as /metrics")
	case strings.ContainsAny(p, "{} \t\r\n?#"):
		return bad("must be a literal path: no spaces, braces, ? or #")
	case p != "/" && path.Clean(p) != p:
		return bad("must be a clean path, without a trailing slash, // or dot segments")
	}
	return nil
}
