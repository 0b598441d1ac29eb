// Command scalebench measures how listenq_exporter's scrape, memory and
// sampler scale with the listeners of one network namespace, against the
// kernel's own dumps of the same sockets and against node_exporter in the
// same namespace. bench/scale.sh runs it as root, as the first process
// (PID 1) of private PID, mount and network namespaces, so that the
// exporters see only the benchmark's processes and sockets. Two shapes,
// one after the other, each with freshly started exporters:
//
//   - "1k": 1,000 TCP listeners on 127.0.0.1;
//   - "25k": 20,000 unix stream listeners (half in a directory, half
//     abstract) and 5,000 TCP listeners, spread over 5 holder processes.
//
// Every listener has a small backlog (8), and the first of each kind in
// each holder has clients never accepted, so queues are not all empty.
// For each shape it reports, with the exporter's defaults but
// --no-netns.discovery:
//
//  1. /metrics wall time over one kept-alive connection with gzip, as
//     Prometheus scrapes, median and p99; plain, for the bytes encoded per
//     second; the exporter's CPU per scrape;
//  2. the raw LISTEN-only dumps of the same sockets (inet_diag, and
//     unix_diag for the unix ones) through internal/sockdiag, and ss, and
//     the scrape's ratio to the raw dump. The dumps are timed twice: before
//     any exporter starts, and in two blocks around the timed scrapes (each
//     after a second's pause, dumps in a row as the first ones). The goal
//     is judged on the second: this machine's speed drifts by up to 2x
//     over the half minute between the first dumps and the scrapes;
//  3. peak RSS (VmHWM, reset through /proc/PID/clear_refs) with one scrape
//     at a time and with 20 at once;
//  4. the sampler's CPU: the exporter's CPU without scrapes at the default
//     --sampler.interval minus that with --sampler.interval=0, and
//     listenq_sampler_round_duration_seconds;
//  5. node_exporter (--collector.tcpstat and --collector.netstat only)
//     scraped the same way, side by side.
//
// Goals are reported next to the figures, never asserted: the exit status
// is 3 when the full-size run misses one, 1 when the run fails. The
// 200-namespace shape is bench/netns.sh's.
//
// `scalebench hold ...` is the holder process (see holder.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/bench/internal/benchutil"
)

// Goals, from the issue, and the sizes they are set for.
const (
	rawRatioGoal    = 6.0  // small shape: scrape median / raw LISTEN dump median
	largeScrapeGoal = 60.0 // large shape: scrape median, ms
	rssOneGoalKiB   = 50 << 10
	rssConcGoalKiB  = 100 << 10
	fullSmall       = 1000
	fullLargeTCP    = 5000
	fullLargeUnix   = 20000
)

type config struct {
	exporter     string
	nodeExporter string
	dir          string
	shapes       []string
	small        int
	largeTCP     int
	largeUnix    int
	holders      int
	port         int
	metricsPort  int
	nodePort     int
	backlog      int
	clients      int
	scrapesSmall int
	scrapesLarge int
	plain        int
	warmup       int
	sequential   int
	concurrency  int
	rounds       int
	dumps        int
	ssRuns       int
	roundSamples int
	idle         time.Duration
	settle       time.Duration
	timeout      time.Duration
	quick        bool
	out          string
	version      string
}

// full says whether the run has the sizes the goals are set for.
func (c config) full() bool {
	return !c.quick && c.small == fullSmall && c.largeTCP == fullLargeTCP && c.largeUnix == fullLargeUnix
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "hold" {
		if err := holdMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "scalebench hold:", err)
			os.Exit(1)
		}
		return
	}
	log.SetFlags(log.Ltime)
	log.SetPrefix("scale: ")
	os.Exit(mainStatus())
}

func mainStatus() int {
	c, err := parseFlags(os.Args[1:])
	if err != nil {
		return benchutil.UsageStatus("scalebench", err)
	}
	return benchutil.Run("scalebench", c.timeout, func(ctx context.Context) error {
		return run(ctx, c)
	})
}

func parseFlags(args []string) (config, error) {
	var c config
	var shapes string
	fs := flag.NewFlagSet("scalebench", flag.ContinueOnError)
	fs.StringVar(&c.exporter, "exporter", "", "listenq_exporter binary (required)")
	fs.StringVar(&c.nodeExporter, "node-exporter", "", "node_exporter binary to compare with (none: its columns stay empty)")
	fs.StringVar(&c.dir, "dir", "", "directory for the unix sockets (required; short: sun_path holds 107 bytes)")
	fs.StringVar(&shapes, "shapes", "small,large", "shapes to measure, in order: small (TCP only), large (unix and TCP)")
	fs.IntVar(&c.small, "small", fullSmall, "TCP listeners of the small shape")
	fs.IntVar(&c.largeTCP, "large-tcp", fullLargeTCP, "TCP listeners of the large shape")
	fs.IntVar(&c.largeUnix, "large-unix", fullLargeUnix, "unix listeners of the large shape, half in -dir and half abstract")
	fs.IntVar(&c.holders, "holders", 5, "processes holding the large shape's listeners")
	fs.IntVar(&c.port, "port", 20000, "first TCP port of the small shape; the large shape's follow")
	fs.IntVar(&c.metricsPort, "metrics-port", 9637, "listenq_exporter's port on 127.0.0.1")
	fs.IntVar(&c.nodePort, "node-port", 9100, "node_exporter's port on 127.0.0.1")
	fs.IntVar(&c.backlog, "backlog", 8, "listen backlog of every listener")
	fs.IntVar(&c.clients, "clients", 3, "clients never accepted on each holder's first listener of each kind")
	fs.IntVar(&c.scrapesSmall, "scrapes-small", 200, "timed gzip scrapes at the small shape")
	fs.IntVar(&c.scrapesLarge, "scrapes-large", 20, "timed gzip scrapes at the large shape")
	fs.IntVar(&c.plain, "plain", 10, "timed plain (uncompressed) scrapes, for the bytes encoded per second")
	fs.IntVar(&c.warmup, "warmup", 3, "untimed scrapes first")
	fs.IntVar(&c.sequential, "sequential", 10, "scrapes one at a time for the peak RSS")
	fs.IntVar(&c.concurrency, "concurrency", 20, "simultaneous scrapes, each on its own connection, for the peak RSS")
	fs.IntVar(&c.rounds, "concurrent-rounds", 5, "rounds of -concurrency simultaneous scrapes")
	fs.IntVar(&c.dumps, "dumps", 100, "timed raw kernel dumps")
	fs.IntVar(&c.ssRuns, "ss-runs", 5, "timed ss runs")
	fs.IntVar(&c.roundSamples, "round-samples", 6, "scrapes one sampler interval apart to read listenq_sampler_round_duration_seconds")
	fs.DurationVar(&c.idle, "idle", 15*time.Second, "window without scrapes over which the exporter's CPU is measured, with and without the sampler")
	fs.DurationVar(&c.settle, "settle", 2*time.Second, "wait after the last scrape before the idle window")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up after this long")
	fs.BoolVar(&c.quick, "quick", false, "smoke run: 200 and 2,500 listeners, few scrapes, 2s windows (flags given explicitly still apply)")
	fs.StringVar(&c.out, "out", "", "also write the report to this file")
	fs.StringVar(&c.version, "version", "", "exporter version, for the report's header")
	if err := benchutil.ParseFlags(fs, args); err != nil {
		return c, err
	}
	if c.quick {
		if err := benchutil.SetUnset(fs, map[string]string{
			"small": "200", "large-tcp": "500", "large-unix": "2000", "scrapes-small": "5", "scrapes-large": "5",
			"plain": "3", "warmup": "1", "sequential": "3", "concurrent-rounds": "2", "dumps": "10", "ss-runs": "1",
			"round-samples": "2", "idle": "2s", "settle": "500ms",
		}); err != nil {
			return c, err
		}
	}
	c.shapes = strings.Split(shapes, ",")
	for _, s := range c.shapes {
		if s != "small" && s != "large" {
			return c, fmt.Errorf("-shapes: unknown shape %q (small, large)", s)
		}
	}
	c.dir = filepath.Clean(c.dir)
	last := c.port + c.small + c.largeTCP
	switch {
	case c.exporter == "" || c.dir == "." || !filepath.IsAbs(c.dir):
		return c, errors.New("-exporter and -dir (absolute) are required")
	case len(unixFSPath(c.dir, c.holders, c.largeUnix)) >= len(unix.RawSockaddrUnix{}.Path):
		return c, fmt.Errorf("-dir %s: too long for unix socket paths", c.dir)
	case c.small < 1 || c.largeTCP < 1 || c.largeUnix < 2:
		return c, errors.New("-small and -large-tcp want at least 1, -large-unix at least 2")
	case c.holders < 1 || c.holders > c.largeTCP || 2*c.holders > c.largeUnix || c.holders > 100:
		return c, errors.New("-holders wants 1..100, at most -large-tcp and -large-unix/2")
	case c.port < 1024 || last > 65536:
		return c, errors.New("-port: the shapes' ports must be valid")
	case inRange(c.metricsPort, c.port, last) || inRange(c.nodePort, c.port, last) || c.metricsPort == c.nodePort ||
		c.metricsPort < 1 || c.metricsPort > 65535 || c.nodePort < 1 || c.nodePort > 65535:
		return c, errors.New("-metrics-port and -node-port must be valid, distinct and outside the shapes' ports")
	case c.backlog < 1 || c.clients < 0 || c.clients > c.backlog:
		return c, errors.New("-backlog wants at least 1, -clients 0..backlog")
	case c.scrapesSmall < 1 || c.scrapesLarge < 1 || c.plain < 1 || c.warmup < 0 || c.sequential < 1 ||
		c.concurrency < 1 || c.concurrency > 100 || c.rounds < 1 || c.dumps < 1 || c.ssRuns < 1 || c.roundSamples < 1:
		return c, errors.New("the counts want at least 1 (-warmup 0), -concurrency at most 100")
	case c.idle < time.Second || c.settle < 0:
		return c, errors.New("-idle wants at least 1s")
	}
	return c, nil
}

func inRange(p, lo, hi int) bool { return p >= lo && p < hi }

// shape is one set of listeners in the benchmark's namespace.
type shape struct {
	name      string
	large     bool
	tcp, unix int
	port      int // of the first TCP listener
	scrapes   int
}

func (c config) shape(name string) shape {
	if name == "small" {
		return shape{name: count(c.small), tcp: c.small, port: c.port, scrapes: c.scrapesSmall}
	}
	return shape{name: count(c.largeTCP + c.largeUnix), large: true, tcp: c.largeTCP, unix: c.largeUnix,
		port: c.port + c.small, scrapes: c.scrapesLarge}
}

// holders splits the shape's listeners among its holder processes.
func (s shape) holders(c config) []holdConfig {
	n := 1
	if s.large {
		n = c.holders
	}
	hs := make([]holdConfig, n)
	port := s.port
	for i := range hs {
		share := func(total int) int { return (i+1)*total/n - i*total/n }
		u := share(s.unix)
		hs[i] = holdConfig{dir: c.dir, index: i, tcp: share(s.tcp), port: port,
			unixFS: u - u/2, abstract: u / 2, backlog: c.backlog, clients: c.clients}
		port += hs[i].tcp
	}
	return hs
}

// count is a number of listeners as a shape's name: 1k, 25k, 2.5k, 200.
func count(n int) string {
	switch {
	case n >= 1000 && n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	case n >= 1000:
		return strconv.FormatFloat(float64(n)/1000, 'f', 1, 64) + "k"
	}
	return strconv.Itoa(n)
}

// result is everything measured of one shape.
type result struct {
	s        shape
	setup    time.Duration
	kernel   kernelFigures
	seen     seen
	ready    time.Duration // exporter start until a scrape shows everything
	lq       scrapeFigures
	node     *scrapeFigures // nil without node_exporter
	rounds   benchutil.Stats
	interval float64 // listenq_sampler_interval_seconds, the last seen; 0 if absent
	idleOn   float64 // exporter CPU without scrapes, default sampler, share of a core
	idleOff  float64 // the same with --sampler.interval=0
}

type report struct {
	c            config
	started      time.Time
	elapsed      time.Duration
	load0, load1 string
	nice         int
	samplerDef   time.Duration
	flags        []string
	nodeVersion  string
	ssVersion    string
	results      []result
}

func run(ctx context.Context, c config) error {
	rep := &report{c: c, started: time.Now(), load0: benchutil.LoadAvg(), nice: benchutil.Niceness()}
	if os.Getpid() != 1 {
		return errors.New("not the first process of a private PID namespace: the exporter would see the machine's processes; run bench/scale.sh")
	}
	defaults, err := benchutil.DurationDefaults(ctx, c.exporter, "sampler.interval")
	if err != nil {
		return err
	}
	rep.samplerDef = defaults[0]
	if rep.samplerDef <= 0 {
		return fmt.Errorf("%s has its sampler off by default; the sampler figures need it on", c.exporter)
	}
	if rep.flags, err = exporterFlags(ctx, c); err != nil {
		return err
	}
	if err := benchutil.LoopbackUp(); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	rep.ssVersion = benchutil.CommandVersion(ctx, "ss", "-V")
	if c.nodeExporter != "" {
		rep.nodeVersion = benchutil.CommandVersion(ctx, c.nodeExporter, "--version")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for _, name := range c.shapes {
		r, err := measureShape(ctx, c, rep, self, c.shape(name))
		if err != nil {
			return err
		}
		rep.results = append(rep.results, r)
	}

	rep.load1 = benchutil.LoadAvg()
	rep.elapsed = time.Since(rep.started)
	var buf strings.Builder
	missed := rep.write(&buf)
	if err := benchutil.Output(buf.String(), c.out); err != nil {
		return err
	}
	if missed && c.full() {
		return benchutil.ErrGoalMissed
	}
	return nil
}

// exporterFlags are the flags of every listenq_exporter run: its own
// namespace alone, no container runtime, and a listener cap above the
// shapes (the default, 5,000, would leave most of the large one out).
// Flags the binary lacks (an older revision, with --rev) are left out.
func exporterFlags(ctx context.Context, c config) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, c.exporter, "--help").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s --help: %w: %s", c.exporter, err, b)
	}
	out := string(b)
	var flags []string
	if strings.Contains(out, "--[no-]netns.discovery") {
		flags = append(flags, "--no-netns.discovery")
	}
	if strings.Contains(out, "--[no-]runtime.disable") {
		flags = append(flags, "--runtime.disable")
	}
	if strings.Contains(out, "--filter.max-listeners=") {
		flags = append(flags, "--filter.max-listeners="+strconv.Itoa(max(100000, 2*(c.small+c.largeTCP+c.largeUnix))))
	}
	return flags, nil
}

func measureShape(ctx context.Context, c config, rep *report, self string, s shape) (result, error) {
	r := result{s: s}
	log.Printf("shape %s: %d TCP and %d unix listeners", s.name, s.tcp, s.unix)
	t0 := time.Now()
	hcs := s.holders(c)
	holders, err := startHolders(ctx, self, hcs)
	if err != nil {
		return r, err
	}
	defer stopHolders(holders)
	r.setup = time.Since(t0)
	log.Printf("  %d holder processes ready in %v", len(holders), r.setup.Round(time.Millisecond))

	log.Printf("  %d raw LISTEN dumps, %d ss runs", c.dumps, c.ssRuns)
	if r.kernel, err = dumps(ctx, s, c.dumps); err != nil {
		return r, err
	}
	if err := ssRef(ctx, s, c.ssRuns, &r.kernel); err != nil {
		return r, err
	}
	log.Printf("  raw dump median %.3f ms (inet %.3f, unix %.3f); %s median %.3f ms",
		r.kernel.raw.Median, r.kernel.inet.Median, r.kernel.unix.Median, r.kernel.ssCmd, r.kernel.ss.Median)

	// listenq_exporter with its defaults: first its CPU without scrapes,
	// while its history is that of the run with the sampler off below (a
	// heap grown by scrapes would have the runtime return memory in the
	// window, counted as the sampler's); then memory, scrapes and
	// sampler rounds.
	log.Printf("  listenq_exporter %s", strings.Join(rep.flags, " "))
	e, took, sn, err := ready(ctx, c, s, rep.flags)
	if err != nil {
		return r, err
	}
	defer e.Stop()
	r.ready, r.seen = took, sn
	log.Printf("  the scrape shows all %d listeners after %v; %d series", sn.tcp+sn.unix, took.Round(time.Millisecond), sn.series)
	if r.idleOn, err = idleCPU(ctx, e, c.settle, c.idle); err != nil {
		return r, err
	}
	log.Printf("  CPU without scrapes, sampler at %v: %.3f%% of a core", rep.samplerDef, 100*r.idleOn)
	if r.lq, err = measureScrapes(ctx, c, e, s.scrapes, &s); err != nil {
		return r, err
	}
	log.Printf("  raw dumps around the timed scrapes: median %.3f ms", r.lq.near.Median)
	log.Printf("  scrape (gzip) median %.3f ms, p99 %.3f ms; plain %.3f ms, %d bytes; peak RSS %.1f / %.1f MiB",
		r.lq.gzip.Median, r.lq.gzip.P99, r.lq.plain.Median, r.lq.plainBytes, mibF(r.lq.hwmOne), mibF(r.lq.hwmConc))
	if err := samplerRounds(ctx, c, rep, e, &r); err != nil {
		return r, err
	}
	e.Stop()

	off := append(append([]string(nil), rep.flags...), "--sampler.interval=0")
	e, _, _, err = ready(ctx, c, s, off)
	if err != nil {
		return r, err
	}
	defer e.Stop()
	if r.idleOff, err = idleCPU(ctx, e, c.settle, c.idle); err != nil {
		return r, err
	}
	e.Stop()
	log.Printf("  CPU without scrapes, sampler off: %.3f%% of a core", 100*r.idleOff)

	if c.nodeExporter != "" {
		log.Printf("  node_exporter")
		n, _, err := benchutil.StartExporter(ctx, c.nodeExporter, c.nodePort, 30*time.Second,
			"--collector.disable-defaults", "--collector.tcpstat", "--collector.netstat")
		if err != nil {
			return r, fmt.Errorf("node_exporter: %w", err)
		}
		defer n.Stop()
		f, err := measureScrapes(ctx, c, n, s.scrapes, nil)
		if err != nil {
			return r, fmt.Errorf("node_exporter: %w", err)
		}
		n.Stop()
		r.node = &f
		log.Printf("  node_exporter scrape (gzip) median %.3f ms; %d bytes", f.gzip.Median, f.plainBytes)
	}
	return r, nil
}

// ready starts listenq_exporter with args and waits until a scrape shows
// every listener of the shape.
func ready(ctx context.Context, c config, s shape, args []string) (*benchutil.Exporter, time.Duration, seen, error) {
	t0 := time.Now()
	e, _, err := benchutil.StartExporter(ctx, c.exporter, c.metricsPort, 60*time.Second, args...)
	if err != nil {
		return nil, 0, seen{}, err
	}
	// A new listener is exported once its owner is named, by a /proc scan
	// at most every --owner.min-scan-interval (5s).
	deadline := time.Now().Add(30 * time.Second)
	var firstErr error
	for attempt := 1; ; attempt++ {
		// With gzip, as every scrape measured, so that the peak RSS
		// measured next is not the plain exposition's.
		body, err := e.Scrape(true)
		if err == nil {
			body, err = gunzip(body)
		}
		var sn seen
		if err == nil {
			sn, err = verify(body, s, c)
		}
		if err == nil {
			if firstErr != nil {
				log.Printf("  the scrape showed everything after %d attempts; the first said: %v", attempt, firstErr)
			}
			return e, time.Since(t0), sn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			e.Stop()
			return nil, 0, sn, fmt.Errorf("exporter %v: the scrape does not show the shape as built after 30s: %w\n%s",
				e.Args(), errors.Join(err, ctx.Err()), e.Log())
		}
		if err := benchutil.Sleep(ctx, 200*time.Millisecond); err != nil {
			e.Stop()
			return nil, 0, sn, err
		}
	}
}

// samplerRounds reads listenq_sampler_round_duration_seconds from scrapes
// one sampler interval apart (the interval the sampler reports, which it
// stretches when a round would cost more than --sampler.max-cpu allows).
func samplerRounds(ctx context.Context, c config, rep *report, e *benchutil.Exporter, r *result) error {
	interval := rep.samplerDef
	var rounds []float64
	for range c.roundSamples {
		if err := benchutil.Sleep(ctx, interval+50*time.Millisecond); err != nil {
			return err
		}
		b, err := e.Scrape(false)
		if err != nil {
			return err
		}
		if v, ok := benchutil.Scalar(b, "listenq_sampler_round_duration_seconds"); ok {
			rounds = append(rounds, v*1000)
		}
		if v, ok := benchutil.Scalar(b, "listenq_sampler_interval_seconds"); ok && v > 0 {
			r.interval = v
			interval = time.Duration(v * float64(time.Second))
		}
	}
	if len(rounds) == 0 {
		return errors.New("no listenq_sampler_round_duration_seconds in the scrapes")
	}
	r.rounds = benchutil.Summarize(rounds)
	return nil
}

func mibF(kib int64) float64 { return float64(kib) / 1024 }

// write prints the report as markdown and says whether a goal was missed.
func (rep *report) write(w io.Writer) (missed bool) {
	c := rep.c
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	f1 := func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }
	f3 := func(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) }
	mib := func(kib int64) string { return f1(mibF(kib)) }
	version := c.version
	if version == "" {
		version = "(unknown version)"
	}
	quick := ""
	if c.quick {
		quick = " (--quick)"
	}
	p("### listenq_exporter scale benchmark, %s%s", rep.started.UTC().Format("2006-01-02 15:04 UTC"), quick)
	p("")
	p("- exporter %s, %s, Linux %s, %d CPUs, %s", version, runtime.Version(), benchutil.KernelRelease(), runtime.NumCPU(), rep.ssVersion)
	node := "not run (no binary)"
	if c.nodeExporter != "" {
		node = rep.nodeVersion + ", with `--collector.disable-defaults --collector.tcpstat --collector.netstat` only"
	}
	p("- node_exporter: %s", node)
	p("- one network namespace each shape, the benchmark's own (private PID, mount and network namespaces; all traffic on its loopback); every listener with backlog %d, %d clients never accepted on each holder's first TCP, first unix and first abstract listener",
		c.backlog, c.clients)
	for _, r := range rep.results {
		hs := r.s.holders(c)
		if r.s.large {
			p("- shape %s: %d unix stream listeners (%d in a directory, %d abstract) and %d TCP listeners on 127.0.0.1:%d-%d, in %d holder processes; set up in %v",
				r.s.name, r.s.unix, sumHolders(hs, func(h holdConfig) int { return h.unixFS }), sumHolders(hs, func(h holdConfig) int { return h.abstract }),
				r.s.tcp, r.s.port, r.s.port+r.s.tcp-1, len(hs), r.setup.Round(time.Millisecond))
		} else {
			p("- shape %s: %d TCP listeners on 127.0.0.1:%d-%d in one holder process; set up in %v",
				r.s.name, r.s.tcp, r.s.port, r.s.port+r.s.tcp-1, r.setup.Round(time.Millisecond))
		}
	}
	p("- listenq_exporter flags: `%s`, otherwise its defaults (`--sampler.interval=%v`); each shape with freshly started exporters; verified before timing: every listener exported with its queue and backlog, nothing omitted, every collector succeeded",
		strings.Join(rep.flags, " "), rep.samplerDef)
	p("- peak RSS = VmHWM after writing 5 to /proc/PID/clear_refs, on the freshly started exporter (after only the scrapes that checked it shows every listener, and the idle window): over %d sequential scrapes, then over %d rounds of %d simultaneous ones, each on its own connection; all with `Accept-Encoding: gzip`, as Prometheus sends",
		c.sequential, c.rounds, c.concurrency)
	p("- then timed scrapes over one kept-alive connection, with gzip, after %d untimed; then plain ones, for the bytes; CPU per scrape from the process's CPU clock, less its CPU without scrapes (sampler on) over the same time", c.warmup)
	p("- sampler CPU: the exporter's CPU without scrapes over %v (after %v), right after the scrapes that checked it shows every listener, at the default `--sampler.interval` minus the same with `--sampler.interval=0` (another exporter, same history)", c.idle, c.settle)
	p("- raw dumps as bench/probe's: LISTEN-only inet_diag, IPv4 then IPv6, with SKMEMINFO, and (with unix listeners) a LISTEN-only unix_diag dump with names and queues, through internal/sockdiag; median of %d in a row before any exporter starts, and again of %d around the timed gzip scrapes (%d in a row %v after the warm-up, %d in a row %v after the last timed scrape), the goal's reference: the same minute as the scrapes",
		c.dumps, 2*max(1, c.dumps/2), max(1, c.dumps/2), nearPause, max(1, c.dumps/2), nearPause)
	p("- measured at nice %d; run took %v; load average (1 min) before / after: %s / %s on %d CPUs",
		rep.nice, rep.elapsed.Round(time.Second), rep.load0, rep.load1, runtime.NumCPU())
	p("- 200 network namespaces with 1,400 listeners: bench/netns.sh; 90,000 connections: bench/run.sh")
	if benchutil.Busy(rep.load0, rep.load1) {
		p("- WARNING: other work kept the CPUs busy during the run; wall times are noisy (CPU times much less)")
	}
	p("")

	cols := func(f func(r result) string) string {
		var s []string
		for _, r := range rep.results {
			s = append(s, f(r))
		}
		return strings.Join(s, " | ")
	}
	head := cols(func(r result) string { return r.s.name })
	p("| listenq_exporter | %s |", head)
	p("|---|%s", strings.Repeat("---|", len(rep.results)))
	row := func(label string, f func(r result) string) { p("| %s | %s |", label, cols(f)) }
	row("listeners exported (TCP + unix); series", func(r result) string {
		return fmt.Sprintf("%d + %d; %d", r.seen.tcp, r.seen.unix, r.lq.series)
	})
	row("/metrics scrape, gzip: **median** / p99 (ms)", func(r result) string {
		return fmt.Sprintf("**%s** / %s (n=%d)", f3(r.lq.gzip.Median), f3(r.lq.gzip.P99), r.lq.gzip.N)
	})
	row("/metrics scrape, plain: median (ms)", func(r result) string { return f3(r.lq.plain.Median) })
	row("body bytes, plain / gzip", func(r result) string { return fmt.Sprintf("%d / %d", r.lq.plainBytes, r.lq.gzipBytes) })
	row("bytes encoded per second (plain body / plain median)", func(r result) string {
		return f1(float64(r.lq.plainBytes)/r.lq.plain.Median/1e3) + " MB/s"
	})
	row("exporter CPU per gzip scrape, above its idle rate (gross), ms", func(r result) string {
		return fmt.Sprintf("%s (%s)", f3(r.lq.cpuPerScrape(r.idleOn)), f3(r.lq.cpuPerScrape(0)))
	})
	row("raw LISTEN inet_diag dump, v4+v6: median / p99 (ms)", func(r result) string {
		return fmt.Sprintf("%s / %s (%d sockets)", f3(r.kernel.inet.Median), f3(r.kernel.inet.P99), r.kernel.inetSockets)
	})
	row("raw LISTEN unix_diag dump: median / p99 (ms)", func(r result) string {
		if r.s.unix == 0 {
			return "–"
		}
		return fmt.Sprintf("%s / %s (%d sockets)", f3(r.kernel.unix.Median), f3(r.kernel.unix.P99), r.kernel.unixSockets)
	})
	row("raw dumps of all the shape's listeners, before the exporter starts: median (ms); scrape median / it", func(r result) string {
		return f3(r.kernel.raw.Median) + "; " + f1(r.lq.gzip.Median/r.kernel.raw.Median) + " ×"
	})
	row("raw dumps of all the shape's listeners, around the timed scrapes: median / p99 (ms)", func(r result) string {
		return fmt.Sprintf("%s / %s (n=%d)", f3(r.lq.near.Median), f3(r.lq.near.P99), r.lq.near.N)
	})
	row("**scrape median / raw dump median, around the scrapes**", func(r result) string { return "**" + f1(r.lq.gzip.Median/r.lq.near.Median) + " ×**" })
	row("ref: ss wall time, median (ms)", func(r result) string {
		return fmt.Sprintf("%s (`%s`, %d lines)", f3(r.kernel.ss.Median), r.kernel.ssCmd, r.kernel.ssLines)
	})
	row("VmRSS as the one-at-a-time phase starts (MiB)", func(r result) string { return mib(r.lq.rssStart) })
	row("peak RSS, one scrape at a time (MiB)", func(r result) string { return mib(r.lq.hwmOne) })
	row(fmt.Sprintf("peak RSS, %d concurrent scrapes (MiB)", c.concurrency), func(r result) string { return mib(r.lq.hwmConc) })
	row(fmt.Sprintf("scrape wall time with %d at once: median / max (ms)", c.concurrency), func(r result) string {
		return f3(r.lq.conc.Median) + " / " + f3(r.lq.conc.Max)
	})
	row("VmRSS after the scrapes (MiB)", func(r result) string { return mib(r.lq.rss) })
	row(fmt.Sprintf("exporter CPU without scrapes over %v: sampler at %v / off", c.idle, rep.samplerDef), func(r result) string {
		return fmt.Sprintf("%s%% / %s%%", f3(100*r.idleOn), f3(100*r.idleOff))
	})
	row("**sampler CPU** = difference (% of a core)", func(r result) string { return "**" + f3(100*(r.idleOn-r.idleOff)) + "%**" })
	row("sampler interval in effect (`listenq_sampler_interval_seconds`)", func(r result) string {
		if r.interval == 0 {
			return "–"
		}
		return strconv.FormatFloat(r.interval, 'g', 4, 64) + " s"
	})
	row("sampler CPU per round; per 1,000 listeners (ms)", func(r result) string {
		iv := r.interval
		if iv == 0 {
			iv = rep.samplerDef.Seconds()
		}
		perRound := (r.idleOn - r.idleOff) * iv * 1000
		return f3(perRound) + "; " + f3(perRound*1000/float64(r.s.tcp+r.s.unix))
	})
	row("`listenq_sampler_round_duration_seconds`: median / max (ms); per 1,000 listeners", func(r result) string {
		return fmt.Sprintf("%s / %s (n=%d); %s", f3(r.rounds.Median), f3(r.rounds.Max), r.rounds.N, f3(r.rounds.Median*1000/float64(r.s.tcp+r.s.unix)))
	})
	row("exporter start until a scrape shows every listener (ms)", func(r result) string { return f3(benchutil.Ms(r.ready)) })
	p("")

	if c.nodeExporter != "" {
		var hs []string
		for _, r := range rep.results {
			hs = append(hs, "listenq "+r.s.name, "node_exporter "+r.s.name)
		}
		p("Side by side, the same namespace, scraped the same way (node_exporter's tcpstat and netstat give namespace-wide counts, no per-listener series):")
		p("")
		p("| measure | %s |", strings.Join(hs, " | "))
		p("|---|%s", strings.Repeat("---|", len(hs)))
		both := func(label string, f func(r result, x scrapeFigures, lq bool) string) {
			var s []string
			for _, r := range rep.results {
				s = append(s, f(r, r.lq, true))
				if r.node != nil {
					s = append(s, f(r, *r.node, false))
				} else {
					s = append(s, "–")
				}
			}
			p("| %s | %s |", label, strings.Join(s, " | "))
		}
		both("scrape, gzip: median / p99 (ms)", func(_ result, x scrapeFigures, _ bool) string {
			return f3(x.gzip.Median) + " / " + f3(x.gzip.P99)
		})
		both("scrape, plain: median (ms)", func(_ result, x scrapeFigures, _ bool) string { return f3(x.plain.Median) })
		both("series; body bytes plain / gzip", func(_ result, x scrapeFigures, _ bool) string {
			return fmt.Sprintf("%d; %d / %d", x.series, x.plainBytes, x.gzipBytes)
		})
		both("CPU per gzip scrape (ms)", func(r result, x scrapeFigures, lq bool) string {
			if lq {
				return f3(x.cpuPerScrape(r.idleOn))
			}
			return f3(x.cpuPerScrape(0))
		})
		both("peak RSS, one at a time / "+strconv.Itoa(c.concurrency)+" at once (MiB)", func(_ result, x scrapeFigures, _ bool) string {
			return mib(x.hwmOne) + " / " + mib(x.hwmConc)
		})
		p("")
	}

	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		missed = true
		return "**FAIL**"
	}
	p("| goal | measured | result |")
	p("|---|---|---|")
	for _, r := range rep.results {
		if !r.s.large {
			ratio := r.lq.gzip.Median / r.lq.near.Median
			p("| %s: scrape median ≤ %g × raw LISTEN dump median (dumps around the scrapes) | %s ms / %s ms = %s × (against the dumps before the exporter started: %s ms, %s ×) | %s |", r.s.name, rawRatioGoal,
				f3(r.lq.gzip.Median), f3(r.lq.near.Median), f1(ratio), f3(r.kernel.raw.Median), f1(r.lq.gzip.Median/r.kernel.raw.Median), verdict(ratio <= rawRatioGoal))
			continue
		}
		p("| %s: scrape median ≤ %g ms | %s ms | %s |", r.s.name, largeScrapeGoal, f3(r.lq.gzip.Median), verdict(r.lq.gzip.Median <= largeScrapeGoal))
		p("| %s: peak RSS ≤ %d MiB, one scrape at a time | %s MiB | %s |", r.s.name, rssOneGoalKiB>>10, mib(r.lq.hwmOne), verdict(r.lq.hwmOne <= rssOneGoalKiB))
		p("| %s: peak RSS ≤ %d MiB, %d concurrent scrapes | %s MiB | %s |", r.s.name, rssConcGoalKiB>>10, c.concurrency, mib(r.lq.hwmConc), verdict(r.lq.hwmConc <= rssConcGoalKiB))
	}
	if !c.full() {
		p("")
		p("(goals are set for %d and %d+%d listeners; at this size they are only reported)", fullSmall, fullLargeUnix, fullLargeTCP)
	}
	return missed
}

func sumHolders(hs []holdConfig, f func(holdConfig) int) int {
	n := 0
	for _, h := range hs {
		n += f(h)
	}
	return n
}
