package benchutil

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Holder is a child process that holds sockets for a benchmark: it prints
// one line starting with "ready" once set up, then waits until its stdin
// closes.
type Holder struct {
	Cmd *exec.Cmd
	// Ready is the rest of the ready line (after "ready"), trimmed.
	Ready  string
	stdin  io.WriteCloser
	stderr *TailBuffer
	done   chan struct{}
}

// StartHolder runs cmd as a Holder and waits up to wait for its ready
// line. The child gets one P, which keeps an idle holder at a few threads,
// and is killed if this process dies; flags adds to its SysProcAttr clone
// flags (a new network namespace, say).
func StartHolder(ctx context.Context, cmd *exec.Cmd, cloneflags uintptr, wait time.Duration) (*Holder, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneflags, Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	h := &Holder{Cmd: cmd, stderr: NewTailBuffer(4 << 10), done: make(chan struct{})}
	cmd.Stderr = h.stderr
	var err error
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
		// Nothing more is written; read to EOF (the holder's exit), then
		// reap it: Wait must follow the last read of the pipe.
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		close(h.done)
	}()
	var l string
	select {
	case l = <-line:
	case <-time.After(wait):
	case <-ctx.Done():
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(l), "ready")
	if !ok {
		h.Stop()
		return nil, fmt.Errorf("not ready: %q %s", l, h.stderr.String())
	}
	h.Ready = strings.TrimSpace(rest)
	return h, nil
}

// PID is the holder's process ID.
func (h *Holder) PID() int { return h.Cmd.Process.Pid }

// Stderr is the tail of what the holder wrote to its stderr.
func (h *Holder) Stderr() string { return h.stderr.String() }

// Stop closes the holder's stdin, which ends it; KILL after two seconds.
func (h *Holder) Stop() {
	_ = h.stdin.Close()
	select {
	case <-h.done:
	case <-time.After(2 * time.Second):
		_ = h.Cmd.Process.Kill()
		<-h.done
	}
}

// StartHolders runs start(i) for i in [0, n), at most parallel at a time,
// and returns the holders; on any error it stops those started.
func StartHolders[H interface{ Stop() }](n, parallel int, start func(i int) (H, error)) ([]H, error) {
	hs := make([]H, n)
	errs := make([]error, n)
	started := make([]bool, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Go(func() {
			for i := range next {
				hs[i], errs[i] = start(i)
				started[i] = errs[i] == nil
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		stopStarted(hs, started)
		return nil, err
	}
	return hs, nil
}

// StopHolders stops every holder at once.
func StopHolders[H interface{ Stop() }](hs []H) {
	started := make([]bool, len(hs))
	for i := range started {
		started[i] = true
	}
	stopStarted(hs, started)
}

func stopStarted[H interface{ Stop() }](hs []H, started []bool) {
	var wg sync.WaitGroup
	for i, h := range hs {
		if started[i] {
			wg.Go(h.Stop)
		}
	}
	wg.Wait()
}
