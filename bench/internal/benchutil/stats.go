package benchutil

import (
	"bufio"
	"math"
	"os"
	"os/exec"
	"slices"
	"time"
)

// Stats of a sample: its size, median (the mean of the two middle values),
// nearest-rank p99 (with 50 values, the largest), least and largest value.
type Stats struct {
	N                     int
	Median, P99, Min, Max float64
}

// Summarize computes the Stats of xs; all zero when xs is empty.
func Summarize(xs []float64) Stats {
	if len(xs) == 0 {
		return Stats{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(0.99*float64(len(s)))) - 1
	return Stats{
		N:      len(s),
		Median: (s[(len(s)-1)/2] + s[len(s)/2]) / 2,
		P99:    s[max(0, min(rank, len(s)-1))],
		Min:    s[0],
		Max:    s[len(s)-1],
	}
}

// Ms is d in milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// TimeLines runs cmd and returns its wall time, from start to exit, and
// the number of lines it wrote. Its output goes through a pipe and is read,
// as it would be by a terminal or a script (/dev/null would flatter the
// command); its standard error is this process's.
func TimeLines(cmd *exec.Cmd) (time.Duration, int, error) {
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	lines := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		lines++
	}
	err = cmd.Wait()
	return time.Since(start), lines, err
}
