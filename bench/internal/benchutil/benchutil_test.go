package benchutil

import (
	"errors"
	"flag"
	"io"
	"os"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	seq := func(n int) []float64 {
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = float64(n - i) // descending: Summarize sorts
		}
		return xs
	}
	for _, tc := range []struct {
		xs   []float64
		want Stats
	}{
		{nil, Stats{}},
		{[]float64{3}, Stats{N: 1, Median: 3, P99: 3, Min: 3, Max: 3}},
		{[]float64{4, 1}, Stats{N: 2, Median: 2.5, P99: 4, Min: 1, Max: 4}},
		// Nearest rank: with 50 values p99 is the largest, with 200 the
		// second largest.
		{seq(50), Stats{N: 50, Median: 25.5, P99: 50, Min: 1, Max: 50}},
		{seq(200), Stats{N: 200, Median: 100.5, P99: 198, Min: 1, Max: 200}},
	} {
		if got := Summarize(tc.xs); got != tc.want {
			t.Errorf("Summarize(%d values) = %+v, want %+v", len(tc.xs), got, tc.want)
		}
	}
	if Ms(1500*time.Microsecond) != 1.5 {
		t.Errorf("Ms(1.5ms) = %v", Ms(1500*time.Microsecond))
	}
}

func TestTailBuffer(t *testing.T) {
	b := NewTailBuffer(8)
	for _, s := range []string{"  first line\n", "second\n", "end \n"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got, want := b.String(), "nd\nend"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestCPU(t *testing.T) {
	pid := os.Getpid()
	if ticks, err := CPUTicks(pid); err != nil || ticks < 0 {
		t.Errorf("CPUTicks(self) = %v, %v", ticks, err)
	}
	if clock, err := CPUClock(pid); err != nil || clock <= 0 {
		t.Errorf("CPUClock(self) = %v, %v", clock, err)
	}
	if _, err := CPUTicks(-1); err == nil {
		t.Error("CPUTicks(-1): no error")
	}
}

func TestFlags(t *testing.T) {
	parse := func(args ...string) (map[string]string, error) {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		a := fs.String("a", "1", "")
		b := fs.String("b", "1", "")
		if err := ParseFlags(fs, args); err != nil {
			return nil, err
		}
		if err := SetUnset(fs, map[string]string{"a": "quick", "b": "quick"}); err != nil {
			return nil, err
		}
		return map[string]string{"a": *a, "b": *b}, nil
	}
	got, err := parse("-b", "given")
	if err != nil || got["a"] != "quick" || got["b"] != "given" {
		t.Errorf("SetUnset after -b given: %v, %v", got, err)
	}
	if _, err := parse("-c"); !errors.Is(err, ErrUsage) || UsageStatus("test", err) != 2 {
		t.Errorf("unknown flag: %v, want ErrUsage and status 2", err)
	}
	if _, err := parse("-h"); !errors.Is(err, flag.ErrHelp) || UsageStatus("test", err) != 0 {
		t.Errorf("-h: %v, want flag.ErrHelp and status 0", err)
	}
}

func TestScalar(t *testing.T) {
	body := []byte("# HELP a_total x\na_total{l=\"1\"} 3\na_total 4\nb 1e-3\n")
	if v, ok := Scalar(body, "a_total"); !ok || v != 4 {
		t.Errorf("Scalar(a_total) = %v, %v; want 4, true", v, ok)
	}
	if v, ok := Scalar(body, "b"); !ok || v != 0.001 {
		t.Errorf("Scalar(b) = %v, %v; want 0.001, true", v, ok)
	}
	if _, ok := Scalar(body, "c"); ok {
		t.Error("Scalar(c): found")
	}
}

func TestMemory(t *testing.T) {
	rss, hwm, err := Memory(os.Getpid())
	if err != nil || rss <= 0 || hwm < rss {
		t.Errorf("Memory(self) = %d, %d, %v", rss, hwm, err)
	}
}
