package testbin

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// stopGrace is how long a process has to exit after SIGTERM before its
	// process group is killed.
	stopGrace = 10 * time.Second
	// outputTail is how much of a process's output a failed test shows.
	outputTail = 8 << 10
	// pollInterval is how often WaitFor and WaitHTTP look again.
	pollInterval = 100 * time.Millisecond
)

// Proc is a child process started by Start or StartCmd, in its own process
// group, which is stopped when the test ends.
type Proc struct {
	Name string // the program's file name, for messages
	Cmd  *exec.Cmd

	out  *os.File      // its stdout and stderr, unless the caller set them
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
}

// Start runs bin with args; see StartCmd.
func Start(tb testing.TB, bin string, args ...string) *Proc {
	tb.Helper()
	return StartCmd(tb, exec.Command(bin, args...))
}

// StartCmd starts cmd in its own process group and stops it when the test
// ends: SIGTERM to the group, SIGKILL to it when the leader has not exited
// 10 s later, and SIGKILL again for children that outlived their leader.
// When the test has failed, the last 8 KiB of the output are logged then.
//
// The caller may set cmd's Dir, Env, Stdin and pipes beforehand; stdout and
// stderr not already set go to a file kept for that report. NOTIFY_SOCKET is
// removed from the environment: the process is not started by systemd,
// whatever the environment of the test says.
func StartCmd(tb testing.TB, cmd *exec.Cmd) *Proc {
	tb.Helper()
	p := &Proc{Name: filepath.Base(cmd.Path), Cmd: cmd, done: make(chan struct{})}
	if cmd.Stdout == nil || cmd.Stderr == nil {
		out, err := os.CreateTemp(tb.TempDir(), p.Name+"-*.out")
		if err != nil {
			tb.Fatal(err)
		}
		p.out = out
		if cmd.Stdout == nil {
			cmd.Stdout = out
		}
		if cmd.Stderr == nil {
			cmd.Stderr = out
		}
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = slices.DeleteFunc(cmd.Env, func(kv string) bool { return strings.HasPrefix(kv, "NOTIFY_SOCKET=") })
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.closeOutput()
		tb.Fatalf("start %s: %v", p.Name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		p.stop(tb)
		p.closeOutput()
		if tb.Failed() && p.out != nil {
			tb.Logf("%s (args %q) output, last 8 KiB:\n%s", p.Name, cmd.Args[1:], p.Output())
		}
	})
	return p
}

func (p *Proc) stop(tb testing.TB) {
	pgid := p.Cmd.Process.Pid
	if !p.Exited() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopGrace):
			tb.Logf("%s did not stop within %v of SIGTERM; killing its process group", p.Name, stopGrace)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
	}
	// Children that outlived their leader (php-fpm's worker) go too.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

func (p *Proc) closeOutput() {
	if p.out != nil {
		p.out.Close()
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is the process's exit status once it has exited (see Exited), as
// exec.Cmd.Wait returns it.
func (p *Proc) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Output returns the last 8 KiB the process wrote to the output StartCmd
// kept for it ("" when the caller set both stdout and stderr).
func (p *Proc) Output() string {
	if p.out == nil {
		return ""
	}
	b, _ := os.ReadFile(p.out.Name())
	if len(b) > outputTail {
		return "..." + string(b[len(b)-outputTail:])
	}
	return string(b)
}

// WaitFor polls cond until it holds. It fails the test when timeout passes
// first, with cond's last explanation, or as soon as one of procs exits.
func WaitFor(tb testing.TB, timeout time.Duration, what string, procs []*Proc, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		for _, p := range procs {
			if p.Exited() {
				tb.Fatalf("waiting for %s: %s exited: %v", what, p.Name, p.Err())
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("waiting for %s: not done after %v: %s", what, timeout, why)
		}
		time.Sleep(pollInterval)
	}
}

// WaitHTTP polls url until it answers 200 OK and reports true. It reports
// false as soon as p exits instead (Err and Output say why), and fails the
// test when timeout passes first.
func (p *Proc) WaitHTTP(tb testing.TB, url string, timeout time.Duration) bool {
	tb.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		if p.Exited() {
			return false
		}
		_, err := Get(client, url)
		if err == nil {
			return true
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s did not serve %s within %v (last error %v)", p.Name, url, timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// maxBody bounds what Fetch reads of an answer.
const maxBody = 16 << 20

// defaultClient is the client of Fetch and Get when they are given none.
var defaultClient = &http.Client{Timeout: 5 * time.Second}

// Fetch GETs url with c (nil: a client that gives up after 5 s) and returns
// the status code and the body, read to the end (at most 16 MiB of it).
func Fetch(c *http.Client, url string) (int, string, error) {
	if c == nil {
		c = defaultClient
	}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.StatusCode, string(body), fmt.Errorf("read the answer to GET %s: %w", url, err)
	}
	return resp.StatusCode, string(body), nil
}

// Get is Fetch for an answer that must be 200 OK: any other status is an
// error, which quotes the body.
func Get(c *http.Client, url string) (string, error) {
	status, body, err := Fetch(c, url)
	if err != nil {
		return body, err
	}
	if status != http.StatusOK {
		return body, fmt.Errorf("GET %s: %d %s: %s", url, status, http.StatusText(status), strings.TrimSpace(body))
	}
	return body, nil
}
