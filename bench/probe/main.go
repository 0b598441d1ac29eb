// Command probe takes the timings that bench/run.sh reports. Each mode
// prints one line of key=value pairs, durations in milliseconds, so the
// script can parse it without guessing at formats.
//
//	probe scrape [-n 50] [-warmup 5] [-gzip] [-wait 10s] [-pid PID] URL
//	probe exec [-n 20] -- COMMAND [ARG...]
//	probe dump [-n 200] [-states listen|all]
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/bench/internal/benchutil"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe scrape|exec|dump [flags] ...")
		os.Exit(2)
	}
	var err error
	switch mode, args := os.Args[1], os.Args[2:]; mode {
	case "scrape":
		err = scrape(args)
	case "exec":
		err = execCmd(args)
	case "dump":
		err = dump(args)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

// stats prints the median and the nearest-rank p99 (with 50 samples, the
// slowest one).
func stats(d []time.Duration) string {
	ms := make([]float64, len(d))
	for i, x := range d {
		ms[i] = benchutil.Ms(x)
	}
	s := benchutil.Summarize(ms)
	return fmt.Sprintf("n=%d median_ms=%.3f p99_ms=%.3f min_ms=%.3f max_ms=%.3f",
		s.N, s.Median, s.P99, s.Min, s.Max)
}

func scrape(args []string) error {
	fs := flag.NewFlagSet("scrape", flag.ExitOnError)
	n := fs.Int("n", 50, "timed scrapes")
	warmup := fs.Int("warmup", 5, "untimed scrapes first")
	gz := fs.Bool("gzip", false, "ask for a gzip-compressed body, as Prometheus does")
	wait := fs.Duration("wait", 0, "retry for up to this long while the exporter starts and names the owners of new listeners")
	pid := fs.Int("pid", 0, "also report the CPU time this process (the exporter) used per timed scrape")
	_ = fs.Parse(args)
	if fs.NArg() != 1 || *n < 1 {
		return errors.New("scrape: need one URL and -n >= 1")
	}
	// One kept-alive connection, as a Prometheus server holds; compression
	// only when asked for, so the default matches curl's.
	s := benchutil.NewScraper(context.Background(), fs.Arg(0))
	get := func() ([]byte, time.Duration, error) { return s.TimedScrape(*gz) }

	// A listener whose owner is not yet known is left out of the scrape
	// (for up to --owner.min-scan-interval); timing such scrapes would
	// flatter the exporter.
	deadline := time.Now().Add(*wait)
	for {
		body, _, err := get()
		if err == nil && !*gz && bodyStats(body).pending > 0 {
			err = errors.New("listeners still wait for their owner to be named")
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	for range *warmup {
		if _, _, err := get(); err != nil {
			return err
		}
	}
	var cpu0 time.Duration
	if *pid != 0 {
		var err error
		if cpu0, err = cpuTime(*pid); err != nil {
			return err
		}
	}
	times := make([]time.Duration, *n)
	var body []byte
	for i := range times {
		var err error
		if body, times[i], err = get(); err != nil {
			return err
		}
	}
	line := stats(times) + fmt.Sprintf(" bytes=%d", len(body))
	if *pid != 0 {
		cpu1, err := cpuTime(*pid)
		if err != nil {
			return err
		}
		line += fmt.Sprintf(" cpu_ms=%.3f", float64(cpu1-cpu0)/1e6/float64(*n))
	}
	if !*gz {
		b := bodyStats(body)
		line += fmt.Sprintf(" tcp_listeners=%d failed_collectors=%d owner_pending=%d", b.listeners, b.failed, b.pending)
	}
	fmt.Println(line)
	return nil
}

// cpuTime is the user plus system time process pid has used. Unlike wall
// time it hardly depends on what else the machine runs, so it shows a cost
// growing with connections even when the latency figures are noisy.
func cpuTime(pid int) (time.Duration, error) {
	ticks, err := benchutil.CPUTicks(pid)
	// /proc counts in USER_HZ, which Linux fixes at 100 on x86 and arm.
	return time.Duration(ticks) * 10 * time.Millisecond, err
}

// scrapeStats is what a scrape saw, so the script can tell a fast scrape
// from one that silently exported less.
type scrapeStats struct {
	listeners int // TCP listeners exported
	failed    int // collectors that failed
	pending   int // protocols with listeners left out until their owner is named
}

func bodyStats(body []byte) scrapeStats {
	var st scrapeStats
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, `listenq_queue_length{`) && strings.Contains(l, `proto="tcp"`):
			st.listeners++
		case strings.HasPrefix(l, `listenq_scrape_collector_success{`) && strings.HasSuffix(l, " 0"):
			st.failed++
		case strings.HasPrefix(l, `listenq_listeners_omitted{`) && strings.Contains(l, `reason="owner_pending"`) && !strings.HasSuffix(l, " 0"):
			st.pending++
		}
	}
	return st
}

func execCmd(args []string) error {
	fs := flag.NewFlagSet("exec", flag.ExitOnError)
	n := fs.Int("n", 20, "timed runs")
	_ = fs.Parse(args)
	if fs.NArg() < 1 || *n < 1 {
		return errors.New("exec: need a command and -n >= 1")
	}
	var lines int
	run := func() (time.Duration, error) {
		// The output goes through a pipe and is read, as it would be by a
		// terminal or a script; /dev/null would flatter the command.
		d, n, err := benchutil.TimeLines(exec.Command(fs.Arg(0), fs.Args()[1:]...))
		lines = n
		return d, err
	}
	// One untimed run pulls the binary and its libraries into the cache.
	if _, err := run(); err != nil {
		return err
	}
	times := make([]time.Duration, *n)
	for i := range times {
		var err error
		if times[i], err = run(); err != nil {
			return err
		}
	}
	fmt.Println(stats(times) + fmt.Sprintf(" lines=%d", lines))
	return nil
}

func dump(args []string) error {
	fs := flag.NewFlagSet("dump", flag.ExitOnError)
	n := fs.Int("n", 200, "timed dumps (each of IPv4 then IPv6)")
	which := fs.String("states", "listen", "listen: what the tcp collector asks for; synrecv: what --collector.tcp.syn-queue asks for in the background; all: every state, the O(connections) walk the default path avoids")
	_ = fs.Parse(args)
	states, memInfo := uint32(1<<sockdiag.StateListen), true
	switch *which {
	case "listen":
	case "synrecv":
		states, memInfo = 1<<sockdiag.StateSynRecv|1<<sockdiag.StateNewSynRecv, false
	case "all":
		states = ^uint32(0)
	default:
		return fmt.Errorf("dump: -states %q: want listen, synrecv or all", *which)
	}
	if *n < 1 {
		return errors.New("dump: need -n >= 1")
	}
	// Dialled here rather than with sockdiag.Dial, whose signature changed:
	// bench/run.sh --rev builds this probe against older revisions too.
	nc, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{MessageBufferSize: 32 << 10})
	if err != nil {
		return err
	}
	conn := sockdiag.NewConn(nc)
	defer conn.Close()
	var sockets int
	once := func() (time.Duration, error) {
		start := time.Now()
		sockets = 0
		for _, family := range []uint8{sockdiag.FamilyINet, sockdiag.FamilyINet6} {
			socks, err := conn.InetSockets(sockdiag.InetRequest{Family: family, States: states, MemInfo: memInfo})
			if err != nil {
				return 0, err
			}
			sockets += len(socks)
		}
		return time.Since(start), nil
	}
	if _, err := once(); err != nil {
		return err
	}
	times := make([]time.Duration, *n)
	for i := range times {
		if times[i], err = once(); err != nil {
			return err
		}
	}
	fmt.Println(stats(times) + fmt.Sprintf(" sockets=%d", sockets))
	return nil
}
