package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/listenq/listenq_exporter/bench/internal/benchutil"
)

// cpuUse is the CPU time a process has used, two ways.
type cpuUse struct {
	ticks int64         // utime + stime from /proc/PID/stat, in clock ticks
	clock time.Duration // its CPU-time clock, nanoseconds
}

func readCPU(pid int) (cpuUse, error) {
	ticks, err := benchutil.CPUTicks(pid)
	if err != nil {
		return cpuUse{}, err
	}
	clock, err := benchutil.CPUClock(pid)
	if err != nil {
		return cpuUse{}, err
	}
	return cpuUse{ticks: ticks, clock: clock}, nil
}

// pss is a process's proportional set size in KiB: its RSS with each
// shared page divided among the processes sharing it, so the holders,
// which share one binary, add up to what they really take.
func pss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Pss:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/smaps_rollup: no Pss", pid)
}
