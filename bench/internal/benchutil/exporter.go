// Package benchutil holds what the benchmark programs under bench/ share:
// running the exporter binary and scraping it, the CPU time of a process,
// statistics of timings, the run's circumstances, raw loopback sockets, and
// the programs' command line and exit status (0 done, 1 failed, 2 usage,
// 3 a goal missed).
package benchutil

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DurationDefaults reads the defaults of the exporter binary's duration
// flags (names without the leading "--") from its --help, in the order
// asked for, so that a benchmark follows the binary when a default changes.
func DurationDefaults(ctx context.Context, bin string, flags ...string) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--help").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s --help: %w: %s", bin, err, out)
	}
	ds := make([]time.Duration, len(flags))
	for i, flag := range flags {
		m := regexp.MustCompile(`--` + regexp.QuoteMeta(flag) + `=(\S+)`).FindSubmatch(out)
		if m == nil {
			return nil, fmt.Errorf("%s --help shows no default for --%s", bin, flag)
		}
		if ds[i], err = time.ParseDuration(string(m[1])); err != nil {
			return nil, err
		}
	}
	return ds, nil
}

// Exporter is one running listenq_exporter, scraped through its embedded
// Scraper.
type Exporter struct {
	*Scraper
	cmd    *exec.Cmd
	args   []string
	stderr *TailBuffer
	done   chan struct{}
}

// StartExporter starts the exporter binary bin on 127.0.0.1:port with args
// after --web.listen-address, and waits up to wait until it answers on
// /metrics; it returns the body of that first scrape, so that callers can
// check what the exporter sees. Its scrapes end when ctx does. If this
// process dies, the exporter is killed too.
func StartExporter(ctx context.Context, bin string, port int, wait time.Duration, args ...string) (*Exporter, []byte, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args = append([]string{"--web.listen-address=" + addr}, args...)
	cmd := exec.Command(bin, args...)
	e := &Exporter{
		Scraper: NewScraper(ctx, "http://"+addr+"/metrics"),
		cmd:     cmd,
		args:    args,
		stderr:  NewTailBuffer(8 << 10),
		done:    make(chan struct{}),
	}
	cmd.Stdout, cmd.Stderr = e.stderr, e.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	go func() {
		_ = cmd.Wait()
		close(e.done)
	}()
	deadline := time.Now().Add(wait)
	for {
		body, err := e.Scrape(false)
		if err == nil {
			return e, body, nil
		}
		if err := e.Alive(); err != nil {
			return nil, nil, err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			e.Stop()
			return nil, nil, fmt.Errorf("exporter %v not answering on %s: %w", args, e.URL(), errors.Join(err, ctx.Err()))
		}
		if err := Sleep(ctx, 50*time.Millisecond); err != nil {
			e.Stop()
			return nil, nil, err
		}
	}
}

// PID is the exporter's process ID.
func (e *Exporter) PID() int { return e.cmd.Process.Pid }

// Args are the exporter's command-line arguments.
func (e *Exporter) Args() []string { return e.args }

// Log is the end of what the exporter wrote to stdout and stderr.
func (e *Exporter) Log() string { return e.stderr.String() }

// Alive fails when the exporter has exited, with what it said.
func (e *Exporter) Alive() error {
	select {
	case <-e.done:
		return fmt.Errorf("exporter %v exited: %s", e.args, e.stderr.String())
	default:
		return nil
	}
}

// Stop ends the exporter: TERM, then KILL after five seconds.
func (e *Exporter) Stop() {
	e.Idle()
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
}

// Scraper GETs one /metrics URL over one kept-alive connection, as a
// Prometheus server holds; compression only when asked for, so that the
// default matches curl's.
type Scraper struct {
	ctx    context.Context
	url    string
	client *http.Client
}

// NewScraper scrapes url until ctx ends.
func NewScraper(ctx context.Context, url string) *Scraper {
	return &Scraper{
		ctx: ctx,
		url: url,
		client: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 1},
		},
	}
}

// URL is the URL scraped.
func (s *Scraper) URL() string { return s.url }

// Scrape GETs the URL; with gz it asks for gzip, as Prometheus does, and
// returns the compressed body.
func (s *Scraper) Scrape(gz bool) ([]byte, error) {
	body, _, err := s.TimedScrape(gz)
	return body, err
}

// TimedScrape is one Scrape and its wall time, from sending the request to
// the body's last byte.
func (s *Scraper) TimedScrape(gz bool) ([]byte, time.Duration, error) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, 0, err
	}
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	body, err := io.ReadAll(resp.Body)
	elapsed := time.Since(start)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", s.url, resp.Status)
	}
	return body, elapsed, err
}

// Idle closes the kept-alive connection, so that nothing but the
// exporter's own background work runs while its CPU time is measured.
func (s *Scraper) Idle() { s.client.CloseIdleConnections() }

// TailBuffer keeps the last bytes written to it: enough of a child's log to
// say why it failed, without growing unbounded.
type TailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

// NewTailBuffer keeps the last size bytes.
func NewTailBuffer(size int) *TailBuffer { return &TailBuffer{max: size} }

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// String is what the buffer holds, without surrounding white space.
func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// Sleep waits for d unless ctx ends first.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Scalar returns the value of a metric without labels in a text
// exposition.
func Scalar(body []byte, name string) (float64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	prefix := name + " "
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, prefix) {
			v, err := strconv.ParseFloat(strings.TrimSpace(l[len(prefix):]), 64)
			return v, err == nil
		}
	}
	return 0, false
}
