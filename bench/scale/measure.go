package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/bench/internal/benchutil"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

// kernelFigures are the timings of the kernel's own dumps of a shape's
// listeners, and of ss, the tool a user would run instead.
type kernelFigures struct {
	inet, unix  benchutil.Stats // ms
	raw         benchutil.Stats // inet + unix, per run, ms
	rawRuns     []float64       // raw's samples
	inetSockets int
	unixSockets int
	ss          benchutil.Stats // ms
	ssLines     int
	ssCmd       string
}

// dumps times the LISTEN-only dumps as bench/probe does: inet_diag for
// IPv4 then IPv6, with SKMEMINFO, and, when the shape has unix listeners,
// a unix_diag dump of the listening unix sockets with their names and
// queues, each decoded by internal/sockdiag. A run's raw time is the sum.
func dumps(ctx context.Context, s shape, runs int) (kernelFigures, error) {
	var k kernelFigures
	// Dialled here rather than with sockdiag.Dial, whose signature changed:
	// --rev builds this program against older revisions too.
	nc, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{MessageBufferSize: 32 << 10})
	if err != nil {
		return k, err
	}
	conn := sockdiag.NewConn(nc)
	defer conn.Close()
	inet := func() (time.Duration, error) {
		start := time.Now()
		k.inetSockets = 0
		for _, family := range []uint8{sockdiag.FamilyINet, sockdiag.FamilyINet6} {
			socks, err := conn.InetSockets(sockdiag.InetRequest{Family: family, States: 1 << sockdiag.StateListen, MemInfo: true})
			if err != nil {
				return 0, err
			}
			k.inetSockets += len(socks)
		}
		return time.Since(start), nil
	}
	unixDump := func() (time.Duration, error) {
		if s.unix == 0 {
			return 0, nil
		}
		start := time.Now()
		socks, err := conn.UnixSockets(sockdiag.UnixRequest{States: 1 << sockdiag.StateListen})
		k.unixSockets = len(socks)
		return time.Since(start), err
	}
	var ti, tu, tr []float64
	// One untimed run first.
	for i := range runs + 1 {
		if err := ctx.Err(); err != nil {
			return k, err
		}
		di, err := inet()
		if err != nil {
			return k, err
		}
		du, err := unixDump()
		if err != nil {
			return k, err
		}
		if i > 0 {
			ti, tu, tr = append(ti, benchutil.Ms(di)), append(tu, benchutil.Ms(du)), append(tr, benchutil.Ms(di+du))
		}
	}
	if k.inetSockets < s.tcp || k.unixSockets < s.unix {
		return k, fmt.Errorf("the dumps show %d TCP and %d unix listeners, want at least %d and %d", k.inetSockets, k.unixSockets, s.tcp, s.unix)
	}
	k.inet, k.unix, k.raw, k.rawRuns = benchutil.Summarize(ti), benchutil.Summarize(tu), benchutil.Summarize(tr), tr
	return k, nil
}

// nearPause is how long the exporter idles before each block of dumps timed
// around its scrapes: its collections and the scrapes' other after-effects
// end first, so the dumps run in a row on a quiet machine, as the first
// ones do.
const nearPause = time.Second

// nearDumps times runs raw dumps in a row after nearPause: one block of the
// reference timed around the scrapes.
func nearDumps(ctx context.Context, s shape, runs int) ([]float64, error) {
	if err := benchutil.Sleep(ctx, nearPause); err != nil {
		return nil, err
	}
	k, err := dumps(ctx, s, runs)
	return k.rawRuns, err
}

// ssRef times ss listing the same listeners, its output read through a
// pipe.
func ssRef(ctx context.Context, s shape, runs int, k *kernelFigures) error {
	args := []string{"-ltn"}
	if s.unix > 0 {
		args = []string{"-ltnx"}
	}
	k.ssCmd = "ss " + strings.Join(args, " ")
	var times []float64
	for i := range runs + 1 {
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		d, n, err := benchutil.TimeLines(exec.CommandContext(ctx, "ss", args...))
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", k.ssCmd, err)
		}
		if n < s.tcp+s.unix {
			return fmt.Errorf("%s printed %d lines, want at least %d", k.ssCmd, n, s.tcp+s.unix)
		}
		if i > 0 { // the first pulls ss into the cache
			times = append(times, benchutil.Ms(d))
		}
		k.ssLines = n
	}
	k.ss = benchutil.Summarize(times)
	return nil
}

// scrapeFigures are one exporter's scrape costs; listenq_exporter's and
// node_exporter's alike.
type scrapeFigures struct {
	gzip, plain           benchutil.Stats // wall time, ms
	gzipBytes, plainBytes int
	series                int
	cpu                   time.Duration // over the timed gzip scrapes
	wall                  time.Duration // of the timed gzip scrapes, from first to last
	hwmOne, hwmConc       int64         // peak RSS (KiB), one scrape at a time / concurrent
	// near are the raw dumps timed in two blocks, right before and right
	// after the timed gzip scrapes; zero when not asked for.
	near     benchutil.Stats
	conc     benchutil.Stats // wall time of the concurrent scrapes, ms
	rssStart int64           // VmRSS as the one-at-a-time phase starts, KiB
	rss      int64           // VmRSS at the end, KiB
}

// cpuPerScrape is the exporter's CPU per timed scrape; with idle (its CPU
// without scrapes, as a share of a core) what the window would have used
// anyway is taken off.
func (f scrapeFigures) cpuPerScrape(idle float64) float64 {
	if f.gzip.N == 0 {
		return 0
	}
	return (benchutil.Ms(f.cpu) - idle*benchutil.Ms(f.wall)) / float64(f.gzip.N)
}

// measureScrapes measures an exporter's /metrics: first, while it is
// fresh, its peak RSS with one scrape at a time and then with
// c.concurrency at once (all with gzip); then, after a warm-up, the wall
// time of gzip scrapes over one kept-alive connection with the CPU they
// cost, and of plain ones, for the bytes encoded.
func measureScrapes(ctx context.Context, c config, e *benchutil.Exporter, scrapes int, near *shape) (scrapeFigures, error) {
	var f scrapeFigures
	// VmHWM set back to VmRSS before each phase; what the process already
	// holds then (pages its heap touched before and has not given back)
	// is part of the peak.
	if err := benchutil.ResetPeakRSS(e.PID()); err != nil {
		return f, err
	}
	var err error
	if f.rssStart, _, err = benchutil.Memory(e.PID()); err != nil {
		return f, err
	}
	for range c.sequential {
		if _, err := e.Scrape(true); err != nil {
			return f, err
		}
	}
	if _, f.hwmOne, err = benchutil.Memory(e.PID()); err != nil {
		return f, err
	}
	if err := benchutil.ResetPeakRSS(e.PID()); err != nil {
		return f, err
	}
	if f.conc, err = concurrent(ctx, e.URL(), c.concurrency, c.rounds); err != nil {
		return f, err
	}
	if _, f.hwmConc, err = benchutil.Memory(e.PID()); err != nil {
		return f, err
	}

	for range c.warmup {
		if _, err := e.Scrape(true); err != nil {
			return f, err
		}
	}
	var nearRuns []float64
	if near != nil {
		before, err := nearDumps(ctx, *near, max(1, c.dumps/2))
		if err != nil {
			return f, err
		}
		nearRuns = before
	}
	cpu0, err := benchutil.CPUClock(e.PID())
	if err != nil {
		return f, err
	}
	t0 := time.Now()
	times := make([]float64, scrapes)
	for i := range times {
		b, d, err := e.TimedScrape(true)
		if err != nil {
			return f, err
		}
		times[i], f.gzipBytes = benchutil.Ms(d), len(b)
	}
	f.wall = time.Since(t0)
	cpu1, err := benchutil.CPUClock(e.PID())
	if err != nil {
		return f, err
	}
	f.cpu, f.gzip = cpu1-cpu0, benchutil.Summarize(times)
	if near != nil {
		after, err := nearDumps(ctx, *near, max(1, c.dumps/2))
		if err != nil {
			return f, err
		}
		f.near = benchutil.Summarize(append(nearRuns, after...))
	}

	times = make([]float64, c.plain)
	for i := range times {
		b, d, err := e.TimedScrape(false)
		if err != nil {
			return f, err
		}
		times[i], f.plainBytes = benchutil.Ms(d), len(b)
		if i == 0 {
			f.series = countSeries(b)
		}
	}
	f.plain = benchutil.Summarize(times)
	if f.rss, _, err = benchutil.Memory(e.PID()); err != nil {
		return f, err
	}
	return f, e.Alive()
}

// gunzip decompresses a gzip scrape; a body that is not gzip (an exporter
// that ignores Accept-Encoding) is returned as it is.
func gunzip(body []byte) ([]byte, error) {
	if len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
		return body, nil
	}
	r, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// concurrent runs rounds of n simultaneous gzip scrapes, each on its own
// connection, and returns their wall times.
func concurrent(ctx context.Context, url string, n, rounds int) (benchutil.Stats, error) {
	scrapers := make([]*benchutil.Scraper, n)
	for i := range scrapers {
		scrapers[i] = benchutil.NewScraper(ctx, url)
	}
	defer func() {
		for _, s := range scrapers {
			s.Idle()
		}
	}()
	var times []float64
	for range rounds {
		start := make(chan struct{})
		ds := make([]time.Duration, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i, s := range scrapers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, ds[i], errs[i] = s.TimedScrape(true)
			}()
		}
		close(start)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return benchutil.Stats{}, fmt.Errorf("%d concurrent scrapes: %w", n, err)
		}
		for _, d := range ds {
			times = append(times, benchutil.Ms(d))
		}
	}
	return benchutil.Summarize(times), nil
}

// idleCPU is process pid's CPU use over window without scrapes, as a
// share of one core, after settle.
func idleCPU(ctx context.Context, e *benchutil.Exporter, settle, window time.Duration) (float64, error) {
	e.Idle()
	if err := benchutil.Sleep(ctx, settle); err != nil {
		return 0, err
	}
	c0, err := benchutil.CPUClock(e.PID())
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := benchutil.Sleep(ctx, window); err != nil {
		return 0, err
	}
	c1, err := benchutil.CPUClock(e.PID())
	if err != nil {
		return 0, errors.Join(err, e.Alive())
	}
	return float64(c1-c0) / float64(time.Since(t0)), e.Alive()
}

// countSeries counts the samples of a text exposition.
func countSeries(body []byte) int {
	n := 0
	for l := range bytes.Lines(body) {
		if len(l) > 1 && l[0] != '#' {
			n++
		}
	}
	return n
}

// seen is what a listenq_exporter scrape showed of a shape.
type seen struct {
	tcp, unix int // the shape's listeners exported
	series    int
}

// verify checks that a plain scrape shows every listener of the shape,
// each with the queue its holder filled, and nothing left out or failing.
func verify(body []byte, s shape, c config) (seen, error) {
	var sn seen
	var errs []error
	bad := func(format string, a ...any) {
		if len(errs) < 5 {
			errs = append(errs, fmt.Errorf(format, a...))
		}
	}
	filled := map[string]bool{}
	for _, h := range s.holders(c) {
		if h.tcp > 0 {
			filled[fmt.Sprintf("127.0.0.1:%d", h.port)] = true
		}
		if h.unixFS > 0 {
			filled[unixFSPath(h.dir, h.index, 0)] = true
		}
		if h.abstract > 0 {
			filled[abstractName(h.index, 0)] = true
		}
	}
	// ours says whether a listener label is one of the shape's, and of
	// which protocol.
	ours := func(l map[string]string) bool {
		switch l["proto"] {
		case "tcp":
			addr, port, ok := strings.Cut(l["listener"], ":")
			p, err := strconv.Atoi(port)
			return ok && err == nil && addr == "127.0.0.1" && p >= s.port && p < s.port+s.tcp
		case "unix":
			name := l["listener"]
			return strings.HasPrefix(name, c.dir+string(filepath.Separator)) || strings.HasPrefix(name, abstractPrefix)
		}
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sn.series++
		if !strings.HasPrefix(line, "listenq_") {
			continue
		}
		name, l, v, ok := sample(line)
		if !ok {
			bad("cannot parse %q", line)
			continue
		}
		switch name {
		case "listenq_queue_limit":
			if !ours(l) {
				continue
			}
			if l["proto"] == "tcp" {
				sn.tcp++
			} else {
				sn.unix++
			}
			if v != float64(c.backlog) {
				bad("%s %s: queue limit %v, want %d", l["proto"], l["listener"], v, c.backlog)
			}
		case "listenq_queue_length":
			if !ours(l) {
				continue
			}
			want := 0.0
			if filled[l["listener"]] {
				want = float64(c.clients)
			}
			if v != want {
				bad("%s %s: queue length %v, want %v", l["proto"], l["listener"], v, want)
			}
		case "listenq_listeners_omitted":
			if v != 0 {
				bad("listenq_listeners_omitted%v is %v", l, v)
			}
		case "listenq_scrape_collector_success":
			if v != 1 {
				bad("listenq_scrape_collector_success%v is %v", l, v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return sn, err
	}
	if sn.tcp != s.tcp || sn.unix != s.unix {
		bad("the scrape shows %d TCP and %d unix listeners of the shape, want %d and %d", sn.tcp, sn.unix, s.tcp, s.unix)
	}
	return sn, errors.Join(errs...)
}

// sample splits one line of a text exposition into its metric name,
// labels and value.
func sample(line string) (name string, labels map[string]string, value float64, ok bool) {
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return "", nil, 0, false
	}
	name, rest := line[:i], line[i:]
	labels = map[string]string{}
	if rest[0] == '{' {
		j := 1
		for {
			if j >= len(rest) {
				return "", nil, 0, false
			}
			if rest[j] == '}' {
				j++
				break
			}
			if rest[j] == ',' {
				j++
				continue
			}
			eq := strings.IndexByte(rest[j:], '=')
			if eq < 0 || j+eq+1 >= len(rest) || rest[j+eq+1] != '"' {
				return "", nil, 0, false
			}
			key := rest[j : j+eq]
			j += eq + 2
			var b strings.Builder
			for ; j < len(rest) && rest[j] != '"'; j++ {
				if rest[j] == '\\' && j+1 < len(rest) {
					j++
					if rest[j] == 'n' {
						b.WriteByte('\n')
						continue
					}
				}
				b.WriteByte(rest[j])
			}
			if j >= len(rest) {
				return "", nil, 0, false
			}
			j++ // the closing quote
			labels[key] = b.String()
		}
		rest = rest[j:]
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return "", nil, 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	return name, labels, v, err == nil
}
