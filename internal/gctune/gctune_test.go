package gctune

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, 200},         // the scaled heap minimum: 8 MiB at 200
		{1 * mib, 225},   // minimum 9 MiB = 1 live + 8
		{4 * mib, 200},   // 8/4
		{8 * mib, 100},   // Go's default
		{16 * mib, 50},   // 8/16
		{20 * mib, 40},   // 8/20
		{64 * mib, 25},   // 12.5, held at the floor
		{1 << 40, 25},    // no overflow
		{3*mib + 1, 266}, // near where the two bounds cross
	} {
		if got := Percent(tc.live, 8*mib, 25); got != tc.want {
			t.Errorf("Percent(%.2f MiB) = %d, want %d", float64(tc.live)/mib, got, tc.want)
		}
	}
	// Whatever the live size, the heap goal the runtime derives from the
	// live heap (stacks and globals aside) stays within live + headroom
	// (+1% for rounding), unless held at the floor.
	for live := uint64(0); live <= 40*mib; live += mib / 4 {
		p := uint64(Percent(live, 8*mib, 25))
		goal := max(live+live*p/100, heapMinimum*p/100)
		if p > 25 && goal > live+8*mib+8*mib/100 {
			t.Errorf("live %d: target %d lets the heap reach %d, over live + 8 MiB", live, p, goal)
		}
	}
}

// keep holds the test's live heap.
var keep [][]byte

// TestTune: with a live heap above the headroom the target drops below
// 100, and rises above it once the heap is freed.
func TestTune(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	tu := New(4<<20, 25)
	for range 16 {
		keep = append(keep, make([]byte, 1<<20))
	}
	runtime.GC()
	if p := tu.Tune(); p >= 100 || p < 25 {
		t.Errorf("with 16 MiB live and 4 MiB of headroom: target %d, want 25..99", p)
	}
	if got := debug.SetGCPercent(100); got != tu.last {
		t.Errorf("the runtime's target is %d, the tuner says %d", got, tu.last)
	}
	debug.SetGCPercent(tu.last)
	keep = nil
	runtime.GC()
	if p := tu.Tune(); p <= 100 {
		t.Errorf("with the heap freed: target %d, want over 100", p)
	}
}
