// Command sampler measures what listenq_exporter's background sampler
// costs and what it catches. bench/sampler.sh runs it as root inside a
// private network namespace; it fills that namespace with sockets, runs the
// exporter binary in it and reports:
//
//   - CPU: the exporter's CPU time without scrapes, as a fraction of one
//     core, with 1,000 TCP listeners and 10,000 unix sockets in the
//     namespace, for each --sampler.interval to compare and with the
//     sampler off (0) as the reference; the sampler's share is the
//     difference. Two shapes of unix sockets: "realistic" (100 named
//     listeners and 4,950 socketpairs, the connections of a busy host) and
//     "worst" (10,000 named listeners).
//   - Bursts: at the binary's default interval (or -burst-interval), how
//     often a listen queue held full for a given time and drained again
//     before the next scrape still shows in listenq_queue_peak_length.
//
// Goals are reported next to the figures, never asserted here; the exit
// status is 3 when the full-size run misses the CPU goal, as bench/run.sh
// does for its goals.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/bench/internal/benchutil"
)

type config struct {
	exporter    string
	flags       []string // for every exporter run
	dir         string
	intervals   []time.Duration
	measure     time.Duration
	settle      time.Duration
	slices      int
	trials      int
	burstIvl    time.Duration // 0: the binary's default
	bursts      []time.Duration
	tcp         int
	unix        int
	named       int
	shapes      []string
	port        int
	metricsPort int
	clkTck      int
	quick       bool
	out         string
	version     string
	timeout     time.Duration
}

// The CPU goal from the issue, and the margin the recommended interval
// keeps below it.
const (
	cpuGoal   = 0.01
	cpuMargin = 2.0
)

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("sampler: ")
	os.Exit(mainStatus())
}

// mainStatus runs the benchmark and returns the exit status, so that the
// deferred cleanups run before main exits.
func mainStatus() int {
	c, err := parseFlags(os.Args[1:])
	if err != nil {
		return benchutil.UsageStatus("sampler", err)
	}
	return benchutil.Run("sampler", c.timeout, func(ctx context.Context) error { return run(ctx, c) })
}

func parseFlags(args []string) (config, error) {
	var c config
	var intervals, bursts, shapes, flags string
	fs := flag.NewFlagSet("sampler", flag.ContinueOnError)
	fs.StringVar(&c.exporter, "exporter", "", "listenq_exporter binary (required)")
	fs.StringVar(&flags, "exporter-flags", "", "more flags for every exporter run, space-separated, e.g. '--no-collector.unix' to measure the TCP half alone")
	fs.StringVar(&c.dir, "dir", "", "directory for the named unix sockets (required; short, sun_path holds 107 bytes)")
	fs.StringVar(&intervals, "intervals", "50ms,100ms,200ms,250ms,500ms,1s", "sampler intervals to measure the CPU of; the binary's default and 0 (off) are always added")
	fs.DurationVar(&c.measure, "measure", 15*time.Second, "CPU measurement time per interval")
	fs.DurationVar(&c.settle, "settle", 2*time.Second, "wait after the exporter's first scrape before measuring, so its start-up is not counted")
	fs.IntVar(&c.slices, "slices", 5, "split each measurement into this many slices to show its spread")
	fs.IntVar(&c.trials, "trials", 20, "burst trials per duration; 0 skips the burst test")
	fs.DurationVar(&c.burstIvl, "burst-interval", 0, "--sampler.interval for the burst test (default: the binary's default)")
	fs.StringVar(&bursts, "bursts", "50ms,100ms,250ms,400ms,500ms,750ms,1s", "burst durations")
	fs.IntVar(&c.tcp, "tcp", 1000, "TCP listeners")
	fs.IntVar(&c.unix, "unix", 10000, "unix sockets in each shape")
	fs.IntVar(&c.named, "named", 100, "named unix listeners in the realistic shape; the other sockets are socketpairs")
	fs.StringVar(&shapes, "shapes", "realistic,worst", "unix socket shapes to measure; the bursts run with the first")
	fs.IntVar(&c.port, "port", 20000, "first port of the TCP listeners")
	fs.IntVar(&c.metricsPort, "metrics-port", 9637, "the exporter's port on 127.0.0.1")
	fs.IntVar(&c.clkTck, "clk-tck", 100, "clock ticks per second of /proc/PID/stat (getconf CLK_TCK), for the cross-check")
	fs.BoolVar(&c.quick, "quick", false, "smoke run: only the default interval, 3 s per measurement, 5 trials (flags given explicitly still apply)")
	fs.StringVar(&c.out, "out", "", "also write the table to this file")
	fs.StringVar(&c.version, "version", "", "exporter version, for the table's header")
	fs.DurationVar(&c.timeout, "timeout", 15*time.Minute, "give up after this long")
	if err := benchutil.ParseFlags(fs, args); err != nil {
		return c, err
	}
	if c.quick {
		if err := benchutil.SetUnset(fs, map[string]string{"intervals": "", "measure": "3s", "settle": "1s", "trials": "5"}); err != nil {
			return c, err
		}
	}
	var err error
	if c.intervals, err = durations(intervals); err != nil {
		return c, fmt.Errorf("-intervals: %w", err)
	}
	if c.bursts, err = durations(bursts); err != nil {
		return c, fmt.Errorf("-bursts: %w", err)
	}
	c.flags = strings.Fields(flags)
	c.shapes = strings.Split(shapes, ",")
	for _, s := range c.shapes {
		if s != "realistic" && s != "worst" {
			return c, fmt.Errorf("-shapes: unknown shape %q (realistic, worst)", s)
		}
	}
	switch {
	case c.exporter == "" || c.dir == "":
		return c, errors.New("-exporter and -dir are required")
	case len(c.dir)+len("/l00000.sock") >= len(unix.RawSockaddrUnix{}.Path):
		return c, fmt.Errorf("-dir %s: too long for a unix socket path", c.dir)
	case c.tcp < 1 || c.port < 1 || c.port+c.tcp > 65536:
		return c, fmt.Errorf("-tcp %d from -port %d: need at least one listener on valid ports", c.tcp, c.port)
	case c.named < 1 || c.named > c.unix || (c.unix-c.named)%2 != 0:
		return c, fmt.Errorf("-named %d of -unix %d: need 1..unix named listeners, the rest an even number (socketpairs)", c.named, c.unix)
	case c.measure < time.Second || c.slices < 1 || c.measure/time.Duration(c.slices) < 100*time.Millisecond:
		return c, errors.New("-measure wants at least 1s and slices of at least 100ms")
	case c.burstIvl < 0:
		return c, errors.New("-burst-interval wants a positive duration")
	case c.trials < 0 || c.trials > 1000:
		return c, errors.New("-trials wants 0..1000")
	case c.clkTck < 1:
		return c, errors.New("-clk-tck wants a positive number")
	}
	return c, nil
}

func durations(list string) ([]time.Duration, error) {
	var out []time.Duration
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, err
		}
		if d <= 0 {
			return nil, fmt.Errorf("%v: want a positive duration", d)
		}
		out = append(out, d)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// shape is one way of making up the unix sockets.
type shape struct {
	name         string
	named, pairs int
}

func (c config) shape(name string) shape {
	if name == "worst" {
		return shape{name: name, named: c.unix}
	}
	return shape{name: name, named: c.named, pairs: (c.unix - c.named) / 2}
}

func (s shape) String() string {
	if s.pairs == 0 {
		return fmt.Sprintf("%s: %d named unix listeners", s.name, s.named)
	}
	return fmt.Sprintf("%s: %d named unix listeners + %d socketpairs (%d unix sockets)", s.name, s.named, s.pairs, s.named+2*s.pairs)
}

type cpuResult struct {
	interval           time.Duration // 0: sampler off
	frac               float64       // of one core, over the whole measurement
	sliceMin, sliceMax float64
	ticksFrac          float64 // the same from /proc/PID/stat
}

type shapeResult struct {
	shape shape
	cpu   []cpuResult
}

type burstResult struct {
	burst           time.Duration
	trials, caught  int
	heldSum, heldMx time.Duration
}

type report struct {
	c                    config
	defInterval, window  time.Duration
	burstInterval        time.Duration
	settings             []time.Duration // intervals the CPU is measured at, 0 first
	started              time.Time
	elapsed              time.Duration
	load0, load1         string
	nice                 int
	shapes               []shapeResult
	burstShape           string
	bursts               []burstResult
	burstFillMx, drainMx time.Duration
	seriesWaitMx         time.Duration
}

func run(ctx context.Context, c config) error {
	rep := &report{c: c, started: time.Now(), load0: benchutil.LoadAvg(), nice: benchutil.Niceness()}
	defaults, err := benchutil.DurationDefaults(ctx, c.exporter, "sampler.interval", "sampler.window")
	if err != nil {
		return err
	}
	rep.defInterval, rep.window = defaults[0], defaults[1]
	if rep.defInterval <= 0 {
		return fmt.Errorf("%s has its sampler off by default; nothing to benchmark", c.exporter)
	}
	rep.burstInterval = cmp.Or(c.burstIvl, rep.defInterval)
	rep.settings = append([]time.Duration{0}, c.intervals...)
	if !slices.Contains(rep.settings, rep.defInterval) {
		rep.settings = append(rep.settings, rep.defInterval)
	}
	slices.Sort(rep.settings)
	for _, iv := range slices.Concat(rep.settings, []time.Duration{rep.burstInterval}) {
		if iv > rep.window {
			return fmt.Errorf("interval %v is longer than the exporter's --sampler.window %v", iv, rep.window)
		}
	}
	// Listeners, the unix sockets of the larger shape, the burst's few
	// sockets, and room for stdio, the scrape client and the runtime.
	if err := benchutil.RaiseNOFILE(uint64(c.tcp+c.unix) + 256); err != nil {
		return err
	}

	log.Printf("opening %d TCP listeners", c.tcp)
	tcp, err := openTCPListeners(c.port, c.tcp)
	if err != nil {
		return err
	}
	defer tcp.closeAll()

	for i, name := range c.shapes {
		if err := runShape(ctx, c, rep, c.shape(name), i == 0 && c.trials > 0); err != nil {
			return err
		}
	}
	rep.load1 = benchutil.LoadAvg()
	rep.elapsed = time.Since(rep.started)

	var buf strings.Builder
	missed := rep.table(&buf)
	if err := benchutil.Output(buf.String(), c.out); err != nil {
		return err
	}
	if missed && !c.quick && c.tcp == 1000 && c.unix == 10000 {
		return benchutil.ErrGoalMissed
	}
	return nil
}

// runShape fills the namespace with the unix sockets of sh, measures the
// CPU at every interval and, if bursts is set, runs the burst test.
func runShape(ctx context.Context, c config, rep *report, sh shape, bursts bool) (err error) {
	log.Printf("shape %s", sh)
	us, err := openUnix(c.dir, sh.named, sh.pairs)
	if err != nil {
		return err
	}
	defer func() {
		us.closeAll()
		err = errors.Join(err, removeSocketFiles(c.dir))
	}()
	res := shapeResult{shape: sh}
	for _, iv := range rep.settings {
		r, err := measureCPU(ctx, c, sh, iv)
		if err != nil {
			return err
		}
		log.Printf("  interval %-6v exporter CPU %.3f%% of a core (slices %.3f..%.3f%%; /proc/PID/stat %.3f%%)",
			iv, 100*r.frac, 100*r.sliceMin, 100*r.sliceMax, 100*r.ticksFrac)
		res.cpu = append(res.cpu, r)
	}
	rep.shapes = append(rep.shapes, res)
	if bursts {
		rep.burstShape = sh.name
		return runBursts(ctx, c, rep)
	}
	return nil
}

// measureCPU runs the exporter at one interval, without scraping it, and
// measures its CPU time over c.measure.
func measureCPU(ctx context.Context, c config, sh shape, iv time.Duration) (cpuResult, error) {
	r := cpuResult{interval: iv, sliceMin: 1e9}
	e, body, err := startExporter(ctx, c.exporter, c.metricsPort, slices.Concat(c.flags, []string{"--sampler.interval=" + iv.String()})...)
	if err != nil {
		return r, err
	}
	defer e.Stop()
	// A fast exporter that sees less than the namespace holds would
	// flatter the figures, unless a collector was turned off on purpose.
	s := exported(body)
	if (s.tcp < c.tcp && !slices.Contains(c.flags, "--no-collector.tcp")) ||
		(s.unix+s.unixOmitted < sh.named && !slices.Contains(c.flags, "--no-collector.unix")) {
		return r, fmt.Errorf("the exporter sees %d TCP and %d unix listeners (%d of them not exported), want at least %d and %d",
			s.tcp, s.unix+s.unixOmitted, s.unixOmitted, c.tcp, sh.named)
	}
	e.Idle()
	if err := benchutil.Sleep(ctx, c.settle); err != nil {
		return r, err
	}
	pid := e.PID()
	cpu0, err := benchutil.CPUClock(pid)
	if err != nil {
		return r, err
	}
	ticks0, err := benchutil.CPUTicks(pid)
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	cpu, t := cpu0, t0
	for range c.slices {
		if err := benchutil.Sleep(ctx, c.measure/time.Duration(c.slices)); err != nil {
			return r, err
		}
		cpuN, err := benchutil.CPUClock(pid)
		if err != nil {
			return r, errors.Join(err, e.Alive())
		}
		tN := time.Now()
		f := float64(cpuN-cpu) / float64(tN.Sub(t))
		r.sliceMin, r.sliceMax = min(r.sliceMin, f), max(r.sliceMax, f)
		cpu, t = cpuN, tN
	}
	ticks1, err := benchutil.CPUTicks(pid)
	if err != nil {
		return r, err
	}
	wall := t.Sub(t0)
	r.frac = float64(cpu-cpu0) / float64(wall)
	r.ticksFrac = float64(ticks1-ticks0) / float64(c.clkTck) / wall.Seconds()
	return r, e.Alive()
}

// runBursts runs the burst trials against an exporter at
// rep.burstInterval, the durations interleaved in a new random order every
// round so that drift over the run (other work on the host) spreads evenly.
func runBursts(ctx context.Context, c config, rep *report) error {
	// Every trial needs a new listener (a peak stays in the window for
	// --sampler.window), and a new listener is exported only once its
	// owner is named; the default rate limit of that /proc scan would make
	// each trial wait up to 5 s. It does not touch the sampler, which
	// reads every listener whether named or not.
	iv := rep.burstInterval
	e, _, err := startExporter(ctx, c.exporter, c.metricsPort,
		slices.Concat(c.flags, []string{"--owner.min-scan-interval=0s", "--sampler.interval=" + iv.String()})...)
	if err != nil {
		return err
	}
	defer e.Stop()
	log.Printf("bursts at interval %v: %d trials of each of %v", iv, c.trials, c.bursts)
	rep.bursts = make([]burstResult, len(c.bursts))
	for i, d := range c.bursts {
		rep.bursts[i].burst = d
	}
	for round := range c.trials {
		for _, i := range rand.Perm(len(c.bursts)) {
			r := &rep.bursts[i]
			caught, held, err := trial(ctx, e, r.burst, iv, rep)
			if err != nil {
				return fmt.Errorf("burst %v, round %d: %w", r.burst, round+1, err)
			}
			r.trials++
			if caught {
				r.caught++
			}
			r.heldSum += held
			r.heldMx = max(r.heldMx, held)
		}
		log.Printf("  round %d/%d done", round+1, c.trials)
	}
	return e.Alive()
}

// trial is one burst: a queue of backlog 4 held full (5 waiting) for
// burst, then drained, and the exporter scraped two intervals later.
func trial(ctx context.Context, e *benchutil.Exporter, burst, iv time.Duration, rep *report) (caught bool, held time.Duration, err error) {
	const backlog, full = 4, 5
	fd, err := benchutil.ListenTCP(0, backlog)
	if err != nil {
		return false, 0, err
	}
	defer unix.Close(fd)
	ino, err := inode(fd)
	if err != nil {
		return false, 0, err
	}
	port, err := localPort(fd)
	if err != nil {
		return false, 0, err
	}
	if _, limit, err := benchutil.AcceptQueue(fd); err != nil || limit != backlog {
		return false, 0, fmt.Errorf("listener's effective backlog %d, want %d (somaxconn too low?): %w", limit, backlog, err)
	}

	// The sampler has read the listener once its peak series shows.
	t0 := time.Now()
	deadline := t0.Add(10 * time.Second)
	for {
		body, err := e.Scrape(false)
		if err != nil {
			return false, 0, err
		}
		if _, ok := sample(body, "listenq_queue_peak_length", ino); ok {
			rep.seriesWaitMx = max(rep.seriesWaitMx, time.Since(t0))
			break
		}
		if time.Now().After(deadline) {
			return false, 0, fmt.Errorf("no listenq_queue_peak_length for inode %d after 10s", ino)
		}
		if err := benchutil.Sleep(ctx, 20*time.Millisecond); err != nil {
			return false, 0, err
		}
	}
	// Start at a random point of the sampler's cycle, as real bursts do.
	if err := benchutil.Sleep(ctx, rand.N(iv)); err != nil {
		return false, 0, err
	}

	start := time.Now()
	clients, err := dialTCP(port, full)
	if err != nil {
		return false, 0, err
	}
	defer clients.closeAll()
	if err := benchutil.WaitQueue(fd, full, time.Second); err != nil {
		return false, 0, err
	}
	filled := time.Now()
	rep.burstFillMx = max(rep.burstFillMx, filled.Sub(start))
	time.Sleep(burst)
	held = time.Since(filled)
	clients.closeAll()
	n, err := drainAccept(fd, 64)
	if err != nil {
		return false, 0, err
	}
	rep.drainMx = max(rep.drainMx, time.Since(filled)-held)
	if n != full {
		return false, 0, fmt.Errorf("drained %d connections, want %d", n, full)
	}
	if length, _, err := benchutil.AcceptQueue(fd); err != nil || length != 0 {
		return false, 0, fmt.Errorf("queue holds %d after draining, want 0: %w", length, err)
	}

	if err := benchutil.Sleep(ctx, 2*iv); err != nil {
		return false, 0, err
	}
	body, err := e.Scrape(false)
	if err != nil {
		return false, 0, err
	}
	peak, ok := sample(body, "listenq_queue_peak_length", ino)
	if !ok {
		return false, 0, fmt.Errorf("listenq_queue_peak_length for inode %d is gone", ino)
	}
	return peak == full, held, nil
}

// table writes the report and says whether the CPU goal was missed.
func (rep *report) table(w io.Writer) (missed bool) {
	c := rep.c
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	pct := func(f float64) string { return strconv.FormatFloat(100*f, 'f', 3, 64) }
	version := c.version
	if version == "" {
		version = "(unknown version)"
	}

	p("listenq_exporter sampler benchmark, %s", rep.started.UTC().Format("2006-01-02 15:04 UTC"))
	p("exporter %s, %s, Linux %s, %d CPUs; binary defaults --sampler.interval=%v --sampler.window=%v",
		version, runtime.Version(), benchutil.KernelRelease(), runtime.NumCPU(), rep.defInterval, rep.window)
	p("namespace: %d TCP listeners on 127.0.0.1 (plus the exporter's own) and, per shape, %d unix sockets", c.tcp, c.unix)
	if len(c.flags) > 0 {
		p("exporter flags: %s", strings.Join(c.flags, " "))
	}
	p("measured at nice %d; run took %v%s", rep.nice, rep.elapsed.Round(time.Second), map[bool]string{true: " (--quick)"}[c.quick])
	p("load average (1 min) before / after: %s / %s on %d CPUs", rep.load0, rep.load1, runtime.NumCPU())
	if benchutil.Busy(rep.load0, rep.load1) {
		p("WARNING: other work kept the CPUs busy during the run; the figures are noisy")
	}
	p("")
	p("CPU of the exporter without scrapes, %% of one core: all its threads, user + system (the kernel's")
	p("netlink dump work runs in the exporter's recvmsg), over %v after %v of settling, per interval;", c.measure, c.settle)
	p("slices: lowest..highest of %d equal slices of it. sampler = exporter - exporter with the sampler off;", c.slices)
	p("per round = sampler x interval, the CPU time of one round. stat: the same from /proc/PID/stat ticks.")
	var realisticDef, realisticOff *cpuResult
	var recommend time.Duration
	for _, sr := range rep.shapes {
		p("")
		p("shape %s", sr.shape)
		p("  %-18s %10s %17s %10s %12s %8s", "--sampler.interval", "exporter %", "slices %", "sampler %", "per round", "stat %")
		off := sr.cpu[0]
		for i := range sr.cpu {
			r := &sr.cpu[i]
			label, share, round := r.interval.String(), "-", "-"
			if r.interval == 0 {
				label = "0 (off)"
			} else {
				s := r.frac - off.frac
				share = pct(s)
				round = fmt.Sprintf("%.0f µs", s*float64(r.interval/time.Microsecond))
			}
			if r.interval == rep.defInterval {
				label += " (default)"
			}
			p("  %-18s %10s %17s %10s %12s %8s", label, pct(r.frac), pct(r.sliceMin)+".."+pct(r.sliceMax), share, round, pct(r.ticksFrac))
			if sr.shape.name == "realistic" && r.interval != 0 {
				if r.interval == rep.defInterval {
					realisticDef, realisticOff = r, &sr.cpu[0]
				}
				if recommend == 0 && r.frac-off.frac < cpuGoal/cpuMargin {
					recommend = r.interval
				}
			}
		}
	}
	p("")
	if realisticDef != nil {
		share := realisticDef.frac - realisticOff.frac
		missed = share >= cpuGoal
		p("goal: sampler under %s%% of a core at the default interval (%v), realistic shape: %s%% -> %s",
			pct(cpuGoal), rep.defInterval, pct(share), map[bool]string{false: "met", true: "MISSED"}[missed])
		if recommend != 0 {
			p("shortest interval measured with the sampler under %s%% of a core (%gx margin), realistic shape: %v",
				pct(cpuGoal/cpuMargin), cpuMargin, recommend)
		} else {
			p("no interval measured keeps the sampler under %s%% of a core (%gx margin) in the realistic shape",
				pct(cpuGoal/cpuMargin), cpuMargin)
		}
	}

	if len(rep.bursts) > 0 {
		iv := rep.burstInterval
		which := "the default"
		if iv != rep.defInterval {
			which = "a non-default"
		}
		p("")
		p("Bursts at %s --sampler.interval=%v (shape %s present), %d trials per duration:", which, iv, rep.burstShape, c.trials)
		p("a new TCP listener of backlog 4 held full (5 waiting) for the burst, then drained; scraped %v later,", 2*iv)
		p("caught when its listenq_queue_peak_length is 5. expected = min(1, burst / interval): the chance that")
		p("samples every interval land inside a burst that starts at a random point of their cycle, as each")
		p("trial's does.")
		p("  %-8s %8s %7s %9s %18s", "burst", "caught", "rate", "expected", "held mean/max ms")
		for _, r := range rep.bursts {
			p("  %-8v %8s %6.0f%% %8.0f%% %18s", r.burst, fmt.Sprintf("%d/%d", r.caught, r.trials),
				100*float64(r.caught)/float64(r.trials), 100*min(1, float64(r.burst)/float64(iv)),
				fmt.Sprintf("%.1f/%.1f", benchutil.Ms(r.heldSum/time.Duration(r.trials)), benchutil.Ms(r.heldMx)))
		}
		p("slowest fill (5 connects until the queue was full): %.2f ms; slowest drain: %.2f ms;", benchutil.Ms(rep.burstFillMx), benchutil.Ms(rep.drainMx))
		p("slowest wait for a new listener's series: %.0f ms", benchutil.Ms(rep.seriesWaitMx))
		shortest := time.Duration(0)
		for i := len(rep.bursts) - 1; i >= 0 && rep.bursts[i].caught == rep.bursts[i].trials; i-- {
			shortest = rep.bursts[i].burst
		}
		if shortest != 0 {
			p("shortest burst caught in 100%% of trials (as was every longer one tested): %v", shortest)
		} else {
			p("shortest burst caught in 100%% of trials: none of the durations tested (the longest missed at least once)")
		}
	}
	return missed
}
