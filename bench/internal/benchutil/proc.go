package benchutil

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// CPUClock is the CPU time process pid has used so far, all its threads
// (including exited ones) together, user and system, with nanosecond
// resolution. It reads the process's CPU-time clock
// (MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)), which any process may read
// for another. /proc/PID/schedstat would give nanoseconds too, but for
// the main thread alone, while the Go runtime runs the sampler on
// whichever thread is free; /proc/PID/stat covers every thread but counts
// in clock ticks (10 ms).
func CPUClock(pid int) (time.Duration, error) {
	const cpuclockSched = 2
	clk := int32(^uint32(pid)<<3) | cpuclockSched
	var ts unix.Timespec
	if err := unix.ClockGettime(clk, &ts); err != nil {
		return 0, fmt.Errorf("CPU clock of process %d: %w", pid, err)
	}
	return time.Duration(ts.Nano()), nil
}

// CPUTicks is utime+stime of process pid from /proc/PID/stat, in clock
// ticks (getconf CLK_TCK).
func CPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and ")"; fields are
	// counted from after its last closing parenthesis, where field 3 is;
	// utime and stime are fields 14 and 15.
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

// LoadAvg is the 1-minute load average as /proc/loadavg shows it, "?"
// when it cannot be read.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// Busy says whether any of the load averages (from LoadAvg) is above the
// number of CPUs: other work kept the CPUs busy.
func Busy(loads ...string) bool {
	for _, l := range loads {
		if f, _ := strconv.ParseFloat(l, 64); f > float64(runtime.NumCPU()) {
			return true
		}
	}
	return false
}

// Niceness is this process's nice value, which the processes it starts
// inherit.
func Niceness() int {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	// Field 19 is the nice value, 17th after the command name's ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 17 {
		return 0
	}
	n, _ := strconv.Atoi(f[16])
	return n
}

// KernelRelease is the running kernel's release, as uname -r shows it.
func KernelRelease() string {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	return unix.ByteSliceToString(uts.Release[:])
}

// SetUnset sets each flag of fs named in values that the command line did
// not set, as a benchmark's --quick does.
func SetUnset(fs *flag.FlagSet, values map[string]string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, v := range values {
		if !set[name] {
			if err := fs.Set(name, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// Memory is VmRSS and VmHWM (the peak of VmRSS) of process pid, in KiB.
func Memory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status %s: %w", pid, k, err)
		}
		if k == "VmRSS" {
			rss = n
		} else {
			hwm = n
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS or VmHWM", pid)
	}
	return rss, hwm, nil
}

// ResetPeakRSS sets process pid's VmHWM back to its current VmRSS (writing
// 5 to /proc/PID/clear_refs), so that the next Memory shows the peak of
// what ran since.
func ResetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// RaiseNOFILE makes room for need descriptors. Go already raises the soft
// limit to the hard one at start; root may raise the hard one too.
func RaiseNOFILE(need uint64) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= need {
		return nil
	}
	lim.Cur, lim.Max = need, max(lim.Max, need)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", need, err)
	}
	return nil
}

// CommandVersion is the first line a command prints for its version, for a
// report's header; "NAME (version unknown)" when it fails.
func CommandVersion(ctx context.Context, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return name + " (version unknown)"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}
