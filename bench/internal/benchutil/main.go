package benchutil

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

var (
	// ErrGoalMissed makes the exit status 3 when a benchmark's run returns it.
	ErrGoalMissed = errors.New("goal missed")
	// ErrUsage marks a command line the flag package has rejected, and
	// said why.
	ErrUsage = errors.New("usage")
)

// ParseFlags parses args with fs; an error other than flag.ErrHelp is
// marked ErrUsage.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	return nil
}

// UsageStatus is the exit status of a benchmark program whose command
// line gave err: 0 for flag.ErrHelp, otherwise 2; an error not marked
// ErrUsage is said on stderr after name.
func UsageStatus(name string, err error) int {
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		return 2 // the flag package has said what was wrong
	default:
		fmt.Fprintln(os.Stderr, name+":", err)
		return 2
	}
}

// Run runs a benchmark until it returns, it is interrupted (SIGINT,
// SIGTERM) or timeout passes, and returns the exit status: 0 when run
// succeeds, 3 when it returns ErrGoalMissed, otherwise 1, after saying the
// error on stderr after name. The caller returns the status from a
// function of its own, so that its deferred cleanups run before os.Exit.
func Run(name string, timeout time.Duration, run func(context.Context) error) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := run(ctx)
	if err != nil && !errors.Is(err, ErrGoalMissed) && ctx.Err() != nil {
		// Say that the run was cut short, not only what it was doing.
		err = fmt.Errorf("stopped (%w): %w", context.Cause(ctx), err)
	}
	switch {
	case errors.Is(err, ErrGoalMissed):
		return 3
	case err != nil:
		fmt.Fprintln(os.Stderr, name+":", err)
		return 1
	}
	return 0
}

// Output prints a benchmark's report on stdout and, unless path is empty,
// writes it to the file path too.
func Output(report, path string) error {
	fmt.Print(report)
	if path == "" {
		return nil
	}
	return os.WriteFile(path, []byte(report), 0o644)
}
