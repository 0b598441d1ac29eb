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
		{0, 100},
		{4 * mib, 100},
		{8 * mib, 100},
		{16 * mib, 50},
		{20 * mib, 40},
		{64 * mib, 25}, // 12.5, held at the floor
	} {
		if got := Percent(tc.live, 8*mib, 25); got != tc.want {
			t.Errorf("Percent(%d MiB) = %d, want %d", tc.live/mib, got, tc.want)
		}
	}
}

// keep holds the test's live heap.
var keep [][]byte

// TestTune: with a live heap above the headroom the target drops below
// 100, and comes back once the heap is freed.
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
	if p := tu.Tune(); p != 100 {
		t.Errorf("with the heap freed: target %d, want 100", p)
	}
}
