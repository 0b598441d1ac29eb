package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// exporterDefaults reads the binary's own defaults from its --help, so the
// benchmark follows the binary when a default changes.
func exporterDefaults(ctx context.Context, bin string) (interval, window time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--help").CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("%s --help: %w: %s", bin, err, out)
	}
	get := func(flag string) (time.Duration, error) {
		m := regexp.MustCompile(`--` + regexp.QuoteMeta(flag) + `=(\S+)`).FindSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("%s --help shows no default for --%s", bin, flag)
		}
		return time.ParseDuration(string(m[1]))
	}
	if interval, err = get("sampler.interval"); err != nil {
		return 0, 0, err
	}
	if window, err = get("sampler.window"); err != nil {
		return 0, 0, err
	}
	return interval, window, nil
}

// exporter is one running listenq_exporter.
type exporter struct {
	cmd    *exec.Cmd
	url    string
	stderr *tailBuffer
	client *http.Client
	done   chan struct{}
}

// startExporter starts the exporter on the loopback port with args and
// waits until it answers on /metrics; the scrape body it got is returned
// so callers can check what the exporter sees.
func startExporter(ctx context.Context, bin string, port int, args ...string) (*exporter, []byte, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// One namespace, the benchmark's own; and the sampler's raw cost at
	// each interval, not capped by its CPU budget.
	cmd := exec.Command(bin, append([]string{"--web.listen-address=" + addr, "--no-netns.discovery", "--sampler.max-cpu=0"}, args...)...)
	e := &exporter{
		cmd:    cmd,
		url:    "http://" + addr + "/metrics",
		stderr: &tailBuffer{max: 8 << 10},
		// One kept-alive connection, as a Prometheus server holds.
		client: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 1},
		},
		done: make(chan struct{}),
	}
	cmd.Stdout, cmd.Stderr = e.stderr, e.stderr
	// If this process dies, the exporter goes too; bench/sampler.sh kills
	// whatever is left in the namespace besides.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	go func() {
		_ = cmd.Wait()
		close(e.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		body, err := e.scrape()
		if err == nil {
			return e, body, nil
		}
		select {
		case <-e.done:
			return nil, nil, fmt.Errorf("exporter %v exited: %s", args, e.stderr.String())
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			e.stop()
			return nil, nil, fmt.Errorf("exporter %v not answering on %s: %w", args, e.url, errors.Join(err, ctx.Err()))
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			e.stop()
			return nil, nil, err
		}
	}
}

func (e *exporter) pid() int { return e.cmd.Process.Pid }

func (e *exporter) scrape() ([]byte, error) {
	resp, err := e.client.Get(e.url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", e.url, resp.Status)
	}
	return body, err
}

// idle closes the kept-alive scrape connection, so that nothing but the
// exporter's own background work runs while its CPU time is measured.
func (e *exporter) idle() { e.client.CloseIdleConnections() }

// alive fails when the exporter has exited, with what it said.
func (e *exporter) alive() error {
	select {
	case <-e.done:
		return fmt.Errorf("exporter exited: %s", e.stderr.String())
	default:
		return nil
	}
}

// stop ends the exporter: TERM, then KILL after five seconds.
func (e *exporter) stop() {
	e.idle()
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
}

// cpuTime is the CPU time process pid has used so far, all its threads
// (including exited ones) together, user and system, with nanosecond
// resolution. It reads the process's CPU-time clock
// (MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)), which any process may read
// for another. /proc/PID/schedstat would give nanoseconds too, but for
// the main thread alone, while the Go runtime runs the sampler on
// whichever thread is free; /proc/PID/stat covers every thread but counts
// in clock ticks (10 ms).
func cpuTime(pid int) (time.Duration, error) {
	const cpuclockSched = 2
	clk := int32(^uint32(pid)<<3) | cpuclockSched
	var ts unix.Timespec
	if err := unix.ClockGettime(clk, &ts); err != nil {
		return 0, fmt.Errorf("CPU clock of process %d: %w", pid, err)
	}
	return time.Duration(ts.Nano()), nil
}

// cpuTicks is utime+stime of process pid from /proc/PID/stat, the coarse
// figure cpuTime is checked against.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields are counted from
	// after its closing parenthesis, where field 3 is.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the command name, want at least 13", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return utime + stime, nil
}

// sample finds the value of metric's series for the socket with inode ino
// in a text exposition.
func sample(body []byte, metric string, ino uint64) (float64, bool) {
	prefix := []byte(metric + "{")
	label := []byte(`inode="` + strconv.FormatUint(ino, 10) + `"`)
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, prefix) || !bytes.Contains(line, label) {
			continue
		}
		v, err := strconv.ParseFloat(string(line[bytes.LastIndexByte(line, ' ')+1:]), 64)
		return v, err == nil
	}
	return 0, false
}

// seen is what one scrape exported, to check the namespace looks to the
// exporter as the benchmark built it.
type seen struct {
	tcp, unix   int // listeners exported
	unixOmitted int // unix listeners seen but not exported (cap, filter, owner pending)
}

func exported(body []byte) seen {
	var s seen
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "listenq_queue_limit{"):
			if strings.Contains(line, `proto="tcp"`) {
				s.tcp++
			} else if strings.Contains(line, `proto="unix"`) {
				s.unix++
			}
		case strings.HasPrefix(line, "listenq_listeners_omitted{") && strings.Contains(line, `proto="unix"`):
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			s.unixOmitted += int(v)
		}
	}
	return s
}

// tailBuffer keeps the last max bytes written to it: enough of the
// exporter's log to say why it failed, without growing unbounded.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// sleep waits for d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
