// Command netnsbench measures listenq_exporter on a host with many network
// namespaces, the shape of a Kubernetes node with many pods.
// bench/netns.sh runs it as root, as the first process (PID 1) of private
// PID, mount and network namespaces: the exporter then sees only the
// processes and namespaces the benchmark makes, and the benchmark's own
// network namespace stands for the host's (it is PID 1's, so the exporter
// labels it netns=""). It builds
//
//   - N network namespaces (200), each held by one process, as a pod's
//     pause process holds its pod's: 5 TCP listeners on 127.0.0.1 with
//     small backlogs and 2 unix listeners, plus a few clients never
//     accepted, so queues are not all empty;
//
// and reports, with the exporter's defaults (--netns.discovery on):
//
//  1. /metrics scrape wall time, median and p99, once a scrape shows every
//     namespace and listener;
//  2. the exporter's CPU without scrapes at the default --sampler.interval
//     and with the sampler off; the sampler's share is the difference;
//     listenq_sampler_round_duration_seconds;
//  3. the cost of discovery: listenq_netns_discovery_duration_seconds, and
//     the CPU without scrapes (sampler off) at --netns.refresh-interval=1s
//     against the default;
//  4. VmRSS and VmHWM after the scrapes;
//  5. the reference a user would otherwise run, one loop of
//     `nsenter --net=NS ss -ltnx` over every namespace.
//
// Goals are reported next to the figures, never asserted: the exit status
// is 3 when the full-size run misses one, 1 when the run fails.
//
// `netnsbench hold ...` is the holder process (see holder.go).
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
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/bench/internal/benchutil"
)

// Goals, from the issue.
const (
	scrapeGoalMs   = 25.0
	loopRatioGoal  = 0.05 // scrape median / nsenter loop
	samplerGoal    = 0.01 // of one core
	rssGoalKiB     = 40 << 10
	fullNamespaces = 200
)

type config struct {
	exporter    string
	dir         string
	namespaces  int
	tcp, unix   int
	clients     int
	port        int
	metricsPort int
	scrapes     int
	warmup      int
	rounds      int
	discoveries int
	loopRuns    int
	idle        time.Duration
	settle      time.Duration
	timeout     time.Duration
	clkTck      int
	quick       bool
	out         string
	version     string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "hold" {
		if err := holdMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "netnsbench hold:", err)
			os.Exit(1)
		}
		return
	}
	log.SetFlags(log.Ltime)
	log.SetPrefix("netns: ")
	os.Exit(mainStatus())
}

func mainStatus() int {
	c, err := parseFlags(os.Args[1:])
	if err != nil {
		return benchutil.UsageStatus("netnsbench", err)
	}
	return benchutil.Run("netnsbench", c.timeout, func(ctx context.Context) error {
		return run(ctx, c)
	})
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("netnsbench", flag.ContinueOnError)
	fs.StringVar(&c.exporter, "exporter", "", "listenq_exporter binary (required)")
	fs.StringVar(&c.dir, "dir", "", "directory for the unix sockets (required; short: sun_path holds 107 bytes)")
	fs.IntVar(&c.namespaces, "namespaces", fullNamespaces, "network namespaces to build besides the host's")
	fs.IntVar(&c.tcp, "tcp", 5, "TCP listeners per namespace")
	fs.IntVar(&c.unix, "unix", 2, "unix listeners per namespace")
	fs.IntVar(&c.clients, "clients", 2, "clients never accepted on each namespace's first TCP listener (0..4; half as many, at least one, on its first unix listener)")
	fs.IntVar(&c.port, "port", 8080, "first TCP port of the listeners in each namespace")
	fs.IntVar(&c.metricsPort, "metrics-port", 9637, "the exporter's port on 127.0.0.1 in the host's namespace")
	fs.IntVar(&c.scrapes, "scrapes", 50, "timed scrapes (and as many gzip ones)")
	fs.IntVar(&c.warmup, "warmup", 5, "untimed scrapes before them")
	fs.IntVar(&c.rounds, "round-samples", 10, "scrapes one sampler interval apart to read listenq_sampler_round_duration_seconds")
	fs.IntVar(&c.discoveries, "discovery-samples", 8, "scrapes one refresh apart (at --netns.refresh-interval=1s) to read listenq_netns_discovery_duration_seconds")
	fs.IntVar(&c.loopRuns, "loop-runs", 5, "timed runs of the nsenter+ss loop over every namespace")
	fs.DurationVar(&c.idle, "idle", 20*time.Second, "window without scrapes over which the exporter's CPU is measured; a multiple of the refresh interval")
	fs.DurationVar(&c.settle, "settle", 2*time.Second, "wait after the last scrape before the idle window")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up after this long")
	fs.IntVar(&c.clkTck, "clk-tck", 100, "clock ticks per second of /proc/PID/stat (getconf CLK_TCK)")
	fs.BoolVar(&c.quick, "quick", false, "smoke run: 20 namespaces, 10 scrapes, 3s windows (flags given explicitly still apply)")
	fs.StringVar(&c.out, "out", "", "also write the report to this file")
	fs.StringVar(&c.version, "version", "", "exporter version, for the report's header")
	if err := benchutil.ParseFlags(fs, args); err != nil {
		return c, err
	}
	if c.quick {
		if err := benchutil.SetUnset(fs, map[string]string{
			"namespaces": "20", "scrapes": "10", "warmup": "2", "round-samples": "4",
			"discovery-samples": "3", "loop-runs": "2", "idle": "3s", "settle": "1s",
		}); err != nil {
			return c, err
		}
	}
	switch {
	case c.exporter == "" || c.dir == "":
		return c, errors.New("-exporter and -dir are required")
	case len(unixPath(c.dir, c.namespaces, 9)) >= len(unix.RawSockaddrUnix{}.Path):
		return c, fmt.Errorf("-dir %s: too long for unix socket paths", c.dir)
	case c.namespaces < 1 || c.namespaces > 2000:
		return c, errors.New("-namespaces wants 1..2000")
	case c.tcp < 1 || c.unix < 1 || c.tcp > 100 || c.unix > 100:
		return c, errors.New("-tcp and -unix want 1..100")
	case c.clients < 0 || c.clients > tcpBacklogs[0]:
		return c, fmt.Errorf("-clients wants 0..%d", tcpBacklogs[0])
	case c.port < 1 || c.port+c.tcp > 65536 || c.metricsPort < 1 || c.metricsPort > 65535:
		return c, errors.New("-port, -metrics-port: the ports must be valid")
	case c.scrapes < 1 || c.warmup < 0 || c.rounds < 1 || c.discoveries < 1 || c.loopRuns < 1:
		return c, errors.New("-scrapes, -round-samples, -discovery-samples and -loop-runs want at least 1")
	case c.idle < time.Second || c.settle < 0:
		return c, errors.New("-idle wants at least 1s")
	case c.clkTck < 1:
		return c, errors.New("-clk-tck wants a positive number")
	}
	return c, nil
}

// idleCPU is the exporter's CPU use without scrapes over the idle window,
// as a fraction of one core.
type idleCPU struct {
	stat, clock float64
}

type report struct {
	c                config
	started          time.Time
	elapsed          time.Duration
	load0, load1     string
	nice             int
	samplerDef       time.Duration
	refreshDef       time.Duration
	setup            time.Duration
	seen             scrapeSummary
	bodyBytes        int
	gzipBytes        int
	scrape, gzip     benchutil.Stats
	cpuPerScrapeMs   float64
	rssKiB, hwmKiB   int64
	rounds           benchutil.Stats // listenq_sampler_round_duration_seconds, ms
	firstDiscoveryMs float64
	discoveries      benchutil.Stats // at --netns.refresh-interval=1s, ms
	withSampler      idleCPU
	samplerOff       idleCPU
	refresh1s        idleCPU
	loop             benchutil.Stats // ms
	loopLines        int
	holderPSSKiB     int64
	ssVersion        string
	nsenterVersion   string
	readyA, readyB   time.Duration
	readyC           time.Duration
}

func run(ctx context.Context, c config) error {
	rep := &report{c: c, started: time.Now(), load0: benchutil.LoadAvg(), nice: benchutil.Niceness()}
	if os.Getpid() != 1 {
		return errors.New("not the first process of a private PID namespace: the exporter would see every namespace of the machine; run bench/netns.sh")
	}
	defaults, err := benchutil.DurationDefaults(ctx, c.exporter, "sampler.interval", "netns.refresh-interval")
	if err != nil {
		return err
	}
	rep.samplerDef, rep.refreshDef = defaults[0], defaults[1]
	if rep.samplerDef <= 0 {
		return fmt.Errorf("%s has its sampler off by default; the sampler figures need it on", c.exporter)
	}
	if err := benchutil.LoopbackUp(); err != nil {
		return fmt.Errorf("bring lo up in the host's namespace: %w", err)
	}
	rep.ssVersion = benchutil.CommandVersion(ctx, "ss", "-V")
	rep.nsenterVersion = benchutil.CommandVersion(ctx, "nsenter", "--version")
	self, err := os.Executable()
	if err != nil {
		return err
	}

	log.Printf("starting %d holder processes, each in a new network namespace with %d TCP and %d unix listeners", c.namespaces, c.tcp, c.unix)
	t0 := time.Now()
	holders, err := startHolders(ctx, self, holdConfig{dir: c.dir, tcp: c.tcp, unix: c.unix, clients: c.clients, port: c.port}, c.namespaces)
	if err != nil {
		return err
	}
	defer stopHolders(holders)
	rep.setup = time.Since(t0)
	for _, h := range holders {
		if kib, err := pss(h.PID()); err == nil {
			rep.holderPSSKiB += kib
		}
	}
	x := expectation{
		netns: map[string]int{}, tcp: c.tcp, unix: c.unix, port: c.port,
		tcpQueue: float64(c.clients), dir: c.dir, metricsPort: c.metricsPort,
	}
	x.unixQueue = float64(unixClients(c.clients))
	pids := make([]string, len(holders))
	for i, h := range holders {
		x.netns[strconv.FormatUint(h.ino, 10)] = h.index
		pids[i] = strconv.Itoa(h.PID())
	}
	if len(x.netns) != c.namespaces {
		return fmt.Errorf("%d holders but %d distinct network namespaces", c.namespaces, len(x.netns))
	}
	log.Printf("%d namespaces ready in %v", c.namespaces, rep.setup.Round(time.Millisecond))

	if err := phaseDefaults(ctx, c, rep, x); err != nil {
		return err
	}
	if rep.samplerOff, rep.readyB, err = phaseIdle(ctx, c, x, "sampler off", nil, "--sampler.interval=0"); err != nil {
		return err
	}
	if rep.refresh1s, rep.readyC, err = phaseIdle(ctx, c, x, "sampler off, refresh 1s", func(e *benchutil.Exporter) error {
		var ds []float64
		for range c.discoveries {
			if err := benchutil.Sleep(ctx, 1100*time.Millisecond); err != nil {
				return err
			}
			body, err := e.Scrape(false)
			if err != nil {
				return err
			}
			v, ok := benchutil.Scalar(body, "listenq_netns_discovery_duration_seconds")
			if !ok {
				return errors.New("no listenq_netns_discovery_duration_seconds in the scrape")
			}
			ds = append(ds, v*1000)
		}
		rep.discoveries = benchutil.Summarize(ds)
		return nil
	}, "--sampler.interval=0", "--netns.refresh-interval=1s"); err != nil {
		return err
	}

	log.Printf("reference: %d+1 runs of nsenter --net=... ss -ltnx over %d namespaces", c.loopRuns, c.namespaces)
	if rep.loop, rep.loopLines, err = nsenterLoop(ctx, c, pids); err != nil {
		return err
	}

	rep.load1 = benchutil.LoadAvg()
	rep.elapsed = time.Since(rep.started)
	var buf strings.Builder
	missed := rep.write(&buf)
	if err := benchutil.Output(buf.String(), c.out); err != nil {
		return err
	}
	if missed && !c.quick && c.namespaces == fullNamespaces && c.tcp == 5 && c.unix == 2 {
		return benchutil.ErrGoalMissed
	}
	return nil
}

// ready starts an exporter with args and waits until a scrape shows
// everything x expects; it returns that scrape.
func ready(ctx context.Context, c config, x expectation, args ...string) (*benchutil.Exporter, []byte, scrapeSummary, time.Duration, error) {
	t0 := time.Now()
	e, _, err := benchutil.StartExporter(ctx, c.exporter, c.metricsPort, 60*time.Second, append([]string{"--runtime.disable"}, args...)...)
	if err != nil {
		return nil, nil, scrapeSummary{}, 0, err
	}
	// A new listener is exported once its owner is named, by a /proc scan
	// at most every --owner.min-scan-interval (5s).
	deadline := time.Now().Add(30 * time.Second)
	var firstErr error
	for attempt := 1; ; attempt++ {
		body, err := e.Scrape(false)
		var sum scrapeSummary
		if err == nil {
			sum, err = x.verify(body)
		}
		if err == nil {
			if firstErr != nil {
				log.Printf("  the scrape showed everything after %d attempts, %v; the first said: %v", attempt, time.Since(t0).Round(time.Millisecond), firstErr)
			}
			return e, body, sum, time.Since(t0), nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			e.Stop()
			return nil, nil, sum, 0, fmt.Errorf("exporter %v: the scrape does not show the namespaces as built after 30s: %w\n%s",
				e.Args(), errors.Join(err, ctx.Err()), e.Log())
		}
		if err := benchutil.Sleep(ctx, 200*time.Millisecond); err != nil {
			e.Stop()
			return nil, nil, sum, 0, err
		}
	}
}

// phaseDefaults runs the exporter with its defaults: scrape timings, RSS,
// sampler rounds, then the CPU without scrapes.
func phaseDefaults(ctx context.Context, c config, rep *report, x expectation) error {
	log.Printf("exporter with its defaults (--sampler.interval=%v, --netns.refresh-interval=%v)", rep.samplerDef, rep.refreshDef)
	e, body, sum, took, err := ready(ctx, c, x)
	if err != nil {
		return err
	}
	defer e.Stop()
	rep.readyA, rep.seen = took, sum
	// The start-up discovery opened every namespace; unless a refresh ran
	// since, the first scrape still shows how long that took.
	if v, ok := benchutil.Scalar(body, "listenq_netns_discovery_duration_seconds"); ok && took < rep.refreshDef {
		rep.firstDiscoveryMs = v * 1000
	}
	log.Printf("  scrape shows %d namespaces (the host's too) and %d listeners in the benchmark's; %d series", sum.namespaces, sum.listeners, sum.series)

	for range c.warmup {
		if _, err := e.Scrape(false); err != nil {
			return err
		}
	}
	cpu0, err := readCPU(e.PID())
	if err != nil {
		return err
	}
	times := make([]float64, c.scrapes)
	for i := range times {
		b, d, err := e.TimedScrape(false)
		if err != nil {
			return err
		}
		times[i], rep.bodyBytes = benchutil.Ms(d), len(b)
	}
	cpu1, err := readCPU(e.PID())
	if err != nil {
		return err
	}
	rep.scrape = benchutil.Summarize(times)
	rep.cpuPerScrapeMs = benchutil.Ms(cpu1.clock-cpu0.clock) / float64(c.scrapes)
	if rep.rssKiB, rep.hwmKiB, err = benchutil.Memory(e.PID()); err != nil {
		return err
	}
	for i := range times {
		b, d, err := e.TimedScrape(true)
		if err != nil {
			return err
		}
		times[i], rep.gzipBytes = benchutil.Ms(d), len(b)
	}
	rep.gzip = benchutil.Summarize(times)
	log.Printf("  scrape median %.3f ms, p99 %.3f ms; gzip median %.3f ms", rep.scrape.Median, rep.scrape.P99, rep.gzip.Median)

	var rounds []float64
	for range c.rounds {
		if err := benchutil.Sleep(ctx, rep.samplerDef+50*time.Millisecond); err != nil {
			return err
		}
		b, err := e.Scrape(false)
		if err != nil {
			return err
		}
		if v, ok := benchutil.Scalar(b, "listenq_sampler_round_duration_seconds"); ok {
			rounds = append(rounds, v*1000)
		}
	}
	if len(rounds) == 0 {
		return errors.New("no listenq_sampler_round_duration_seconds in the scrapes")
	}
	rep.rounds = benchutil.Summarize(rounds)

	rep.withSampler, err = measureIdle(ctx, c, e, "defaults")
	return err
}

// phaseIdle runs the exporter with args and measures its CPU without
// scrapes; then, if after is set, runs it against the same exporter.
func phaseIdle(ctx context.Context, c config, x expectation, name string, after func(*benchutil.Exporter) error, args ...string) (idleCPU, time.Duration, error) {
	log.Printf("exporter, %s (%s)", name, strings.Join(args, " "))
	e, _, _, took, err := ready(ctx, c, x, args...)
	if err != nil {
		return idleCPU{}, 0, err
	}
	defer e.Stop()
	u, err := measureIdle(ctx, c, e, name)
	if err == nil && after != nil {
		err = after(e)
	}
	return u, took, err
}

// measureIdle measures the exporter's CPU over the idle window, without
// scrapes and without a kept-alive connection.
func measureIdle(ctx context.Context, c config, e *benchutil.Exporter, name string) (idleCPU, error) {
	e.Idle()
	if err := benchutil.Sleep(ctx, c.settle); err != nil {
		return idleCPU{}, err
	}
	u0, err := readCPU(e.PID())
	if err != nil {
		return idleCPU{}, err
	}
	t0 := time.Now()
	if err := benchutil.Sleep(ctx, c.idle); err != nil {
		return idleCPU{}, err
	}
	u1, err := readCPU(e.PID())
	if err != nil {
		return idleCPU{}, errors.Join(err, e.Alive())
	}
	wall := time.Since(t0)
	r := idleCPU{
		stat:  float64(u1.ticks-u0.ticks) / float64(c.clkTck) / wall.Seconds(),
		clock: float64(u1.clock-u0.clock) / float64(wall),
	}
	log.Printf("  %s: exporter CPU without scrapes %.3f%% of a core over %v (/proc/PID/stat; CPU clock %.3f%%)",
		name, 100*r.stat, c.idle, 100*r.clock)
	return r, e.Alive()
}

// nsenterLoop times what a user would run instead: ss in every namespace,
// one after the other, from a shell loop, its output read through a pipe.
func nsenterLoop(ctx context.Context, c config, pids []string) (benchutil.Stats, int, error) {
	const script = `for p in "$@"; do nsenter --net=/proc/$p/ns/net ss -ltnx; done`
	var lines int
	once := func() (time.Duration, error) {
		d, n, err := benchutil.TimeLines(exec.CommandContext(ctx, "bash", append([]string{"-c", script, "bash"}, pids...)...))
		lines = n
		return d, err
	}
	// One untimed run pulls the binaries into the cache.
	if _, err := once(); err != nil {
		return benchutil.Stats{}, 0, fmt.Errorf("nsenter loop: %w", err)
	}
	if want := c.namespaces * (c.tcp + c.unix); lines < want {
		return benchutil.Stats{}, 0, fmt.Errorf("nsenter loop printed %d lines, want at least %d (one per listener)", lines, want)
	}
	times := make([]float64, c.loopRuns)
	for i := range times {
		d, err := once()
		if err != nil {
			return benchutil.Stats{}, 0, fmt.Errorf("nsenter loop: %w", err)
		}
		times[i] = benchutil.Ms(d)
	}
	return benchutil.Summarize(times), lines, nil
}

// write prints the report as markdown and says whether a goal was missed.
func (rep *report) write(w io.Writer) (missed bool) {
	c := rep.c
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	pct := func(f float64) string { return strconv.FormatFloat(100*f, 'f', 3, 64) }
	f3 := func(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) }
	f4 := func(f float64) string { return strconv.FormatFloat(f, 'f', 4, 64) }
	mib := func(kib int64) string { return strconv.FormatFloat(float64(kib)/1024, 'f', 1, 64) }
	version := c.version
	if version == "" {
		version = "(unknown version)"
	}
	quick := ""
	if c.quick {
		quick = " (--quick)"
	}

	p("### listenq_exporter multi-namespace benchmark, %s%s", rep.started.UTC().Format("2006-01-02 15:04 UTC"), quick)
	p("")
	p("- exporter %s, %s, Linux %s, %d CPUs, %s, %s",
		version, runtime.Version(), benchutil.KernelRelease(), runtime.NumCPU(), rep.ssVersion, rep.nsenterVersion)
	p("- shape: %d network namespaces, each held by one process (as a pod's pause process) with %d TCP listeners on 127.0.0.1:%d-%d (backlogs %s) and %d unix listeners (backlogs %s), %d TCP and %d unix clients never accepted; plus the host's namespace (the benchmark's own) with the exporter's listener. %d listeners in the %d namespaces; set up in %v, %s MiB (PSS) for all holders",
		c.namespaces, c.tcp, c.port, c.port+c.tcp-1, backlogList(tcpBacklogs, c.tcp), c.unix, backlogList(unixBacklogs, c.unix),
		c.clients, unixClients(c.clients), c.namespaces*(c.tcp+c.unix), c.namespaces,
		rep.setup.Round(time.Millisecond), mib(rep.holderPSSKiB))
	p("- exporter flags: `--runtime.disable`, otherwise its defaults (`--netns.discovery` on, `--sampler.interval=%v`, `--netns.refresh-interval=%v`) unless a row says otherwise",
		rep.samplerDef, rep.refreshDef)
	p("- verified before timing: the scrape shows %d netns label values (the host's included) and the %d listeners, each namespace's queues as filled, every collector and namespace read, nothing pending or omitted; %d series, %d bytes (%d gzip)",
		rep.seen.namespaces, rep.seen.listeners, rep.seen.series, rep.bodyBytes, rep.gzipBytes)
	p("- measured at nice %d; run took %v; load average (1 min) before / after: %s / %s on %d CPUs",
		rep.nice, rep.elapsed.Round(time.Second), rep.load0, rep.load1, runtime.NumCPU())
	p("- the same exporter in a single namespace (1,000 listeners, 90,000 connections): bench/run.sh")
	if benchutil.Busy(rep.load0, rep.load1) {
		p("- WARNING: other work kept the CPUs busy during the run; wall times are noisy (CPU times much less)")
	}
	p("")

	samplerStat := rep.withSampler.stat - rep.samplerOff.stat
	samplerClock := rep.withSampler.clock - rep.samplerOff.clock
	// Refreshes per second: 1 at 1s, 1/default at the default.
	perRefresh := func(d float64) float64 { return d * 1000 / (1 - 1/rep.refreshDef.Seconds()) }
	ratio := rep.scrape.Median / rep.loop.Median
	p("| measure | value |")
	p("|---|---|")
	p("| /metrics scrape wall time, median / p99 (%d scrapes, kept-alive connection) | %s / %s ms |", rep.scrape.N, f3(rep.scrape.Median), f3(rep.scrape.P99))
	p("| /metrics scrape min / max | %s / %s ms |", f3(rep.scrape.Min), f3(rep.scrape.Max))
	p("| /metrics scrape with gzip, median / p99 | %s / %s ms |", f3(rep.gzip.Median), f3(rep.gzip.P99))
	p("| exporter CPU per scrape (all threads, user + system) | %s ms |", f3(rep.cpuPerScrapeMs))
	p("| reference: `nsenter --net=NS ss -ltnx` loop over the %d namespaces, median of %d (min..max) | %s ms (%s..%s), %s ms per namespace, %d lines |",
		c.namespaces, rep.loop.N, f3(rep.loop.Median), f3(rep.loop.Min), f3(rep.loop.Max), f3(rep.loop.Median/float64(c.namespaces)), rep.loopLines)
	p("| scrape median / nsenter loop median | %s |", f4(ratio))
	p("| exporter CPU without scrapes, defaults (sampler at %v), over %v | %s%% of a core (CPU clock %s%%) |", rep.samplerDef, c.idle, pct(rep.withSampler.stat), pct(rep.withSampler.clock))
	p("| exporter CPU without scrapes, `--sampler.interval=0` (idle reference) | %s%% (CPU clock %s%%) |", pct(rep.samplerOff.stat), pct(rep.samplerOff.clock))
	p("| **sampler CPU** = difference | **%s%%** of a core (CPU clock %s%%), %s ms per round |", pct(samplerStat), pct(samplerClock), f3(samplerClock*float64(rep.samplerDef)/1e6))
	p("| `listenq_sampler_round_duration_seconds`, median / max of %d rounds | %s / %s ms |", rep.rounds.N, f3(rep.rounds.Median), f3(rep.rounds.Max))
	p("| exporter CPU without scrapes, `--sampler.interval=0 --netns.refresh-interval=1s` | %s%% (CPU clock %s%%) |", pct(rep.refresh1s.stat), pct(rep.refresh1s.clock))
	p("| discovery CPU per refresh, from the 1s and %v runs | %s ms (CPU clock %s ms) |", rep.refreshDef,
		f3(perRefresh(rep.refresh1s.stat-rep.samplerOff.stat)), f3(perRefresh(rep.refresh1s.clock-rep.samplerOff.clock)))
	p("| `listenq_netns_discovery_duration_seconds` at refresh 1s, median / max of %d | %s / %s ms |", rep.discoveries.N, f3(rep.discoveries.Median), f3(rep.discoveries.Max))
	first := "not seen (a refresh ran before the first scrape)"
	if rep.firstDiscoveryMs > 0 {
		first = f3(rep.firstDiscoveryMs) + " ms"
	}
	p("| `listenq_netns_discovery_duration_seconds` at start-up (opens all %d namespaces) | %s |", c.namespaces+1, first)
	p("| exporter start until a scrape shows everything: defaults / sampler off / refresh 1s | %s / %s / %s ms |",
		f3(benchutil.Ms(rep.readyA)), f3(benchutil.Ms(rep.readyB)), f3(benchutil.Ms(rep.readyC)))
	p("| exporter VmRSS / VmHWM after the scrapes | %s / %s MiB |", mib(rep.rssKiB), mib(rep.hwmKiB))
	p("")

	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		missed = true
		return "**MISSED**"
	}
	p("| goal | measured | result |")
	p("|---|---|---|")
	p("| scrape median ≤ %g ms | %s ms | %s |", scrapeGoalMs, f3(rep.scrape.Median), verdict(rep.scrape.Median <= scrapeGoalMs))
	p("| scrape median ≤ %g × the nsenter loop | %s × | %s |", loopRatioGoal, f4(ratio), verdict(ratio <= loopRatioGoal))
	p("| sampler ≤ %g%% of a core at the default interval (/proc/PID/stat) | %s%% | %s |", 100*samplerGoal, pct(samplerStat), verdict(samplerStat <= samplerGoal))
	p("| exporter VmRSS ≤ %d MiB | %s MiB | %s |", rssGoalKiB>>10, mib(rep.rssKiB), verdict(rep.rssKiB <= rssGoalKiB))
	if c.quick || c.namespaces != fullNamespaces {
		p("")
		p("(goals are set for %d namespaces; at this size they are only reported)", fullNamespaces)
	}
	return missed
}

// unixClients is how many clients the holders connect to their first unix
// listener.
func unixClients(tcpClients int) int {
	if tcpClients == 0 {
		return 0
	}
	return max(1, tcpClients/2)
}

func backlogList(bs []int, n int) string {
	var s []string
	for i := range min(n, len(bs)) {
		s = append(s, strconv.Itoa(bs[i]))
	}
	return strings.Join(s, ", ")
}
