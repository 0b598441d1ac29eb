package collector

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

// synCounters count pending handshakes (request sockets) per local
// address in every namespace. The kernel keeps them in the established
// hash, so a dump walks the whole connection table (milliseconds on a busy
// host): counting runs in the background at its own slow interval and
// scrapes read the last count.
type synCounters struct {
	namespaces netns.Namespaces
	interval   time.Duration
	logger     *slog.Logger

	mu       sync.Mutex
	counts   map[*netns.Handle]map[netip.AddrPort]uint32
	failing  map[*netns.Handle]bool
	refreshs uint64
}

func newSynCounters(namespaces netns.Namespaces, interval time.Duration, logger *slog.Logger) *synCounters {
	return &synCounters{namespaces: namespaces, interval: interval, logger: logger,
		counts: map[*netns.Handle]map[netip.AddrPort]uint32{}, failing: map[*netns.Handle]bool{}}
}

func (c *synCounters) run(ctx context.Context) {
	ticker := time.NewTicker(c.interval)
	defer ticker.Stop()
	for {
		c.refresh()
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// refresh counts every namespace once, one after the other: this is slow
// background work and must not compete with scrapes for the CPU.
func (c *synCounters) refresh() {
	handles := c.namespaces.Handles()
	counts := make(map[*netns.Handle]map[netip.AddrPort]uint32, len(handles))
	failing := make(map[*netns.Handle]bool, len(handles))
	for _, h := range handles {
		// Asking for SYN_RECV makes the kernel include request sockets
		// (TCP_NEW_SYN_RECV); asking for both is explicit about it.
		socks, err := dumpInet(h, 1<<sockdiag.StateSynRecv|1<<sockdiag.StateNewSynRecv, false)
		c.mu.Lock()
		was := c.failing[h]
		c.mu.Unlock()
		switch {
		case errors.Is(err, netns.ErrClosed):
			continue
		case err != nil && !was:
			c.logger.Error("cannot count SYN queues", "netns", h.ID, "err", err)
		case err == nil && was:
			c.logger.Info("counting SYN queues again", "netns", h.ID)
		}
		failing[h] = err != nil
		if err == nil {
			counts[h] = countByLocal(socks)
		}
	}
	c.mu.Lock()
	c.counts, c.failing = counts, failing
	c.refreshs++
	c.mu.Unlock()
}

// attribute sets SynQueue on every TCP listener of h once a count exists.
func (c *synCounters) attribute(h *netns.Handle, ls []Listener) []Listener {
	c.mu.Lock()
	counts := c.counts[h]
	c.mu.Unlock()
	if counts == nil {
		return ls
	}
	return AttributeSynQueue(ls, counts)
}

func countByLocal(socks []sockdiag.InetSocket) map[netip.AddrPort]uint32 {
	counts := map[netip.AddrPort]uint32{}
	for _, s := range socks {
		counts[netip.AddrPortFrom(s.Local.Addr().Unmap(), s.Local.Port())]++
	}
	return counts
}

// AttributeSynQueue assigns each count of pending handshakes, keyed by the
// local address the client connected to, to the listener that accepts it:
// one bound to that exact address, else a wildcard listener of the same
// family, else (for IPv4 clients) a dual-stack [::] listener. SO_REUSEPORT
// siblings cannot be told apart from a request socket, so the count goes to
// the sibling with the lowest inode and the others show 0; sums over a
// listener address stay right.
func AttributeSynQueue(ls []Listener, counts map[netip.AddrPort]uint32) []Listener {
	out := make([]Listener, len(ls))
	copy(out, ls)
	for i := range out {
		out[i].SynQueue, out[i].HasSynQueue = 0, true
	}
	for local, n := range counts {
		if i := acceptingListener(out, local); i >= 0 {
			out[i].SynQueue += n
		}
	}
	return out
}

func acceptingListener(ls []Listener, local netip.AddrPort) int {
	addr := local.Addr()
	wildcard := netip.IPv4Unspecified()
	if addr.Is6() {
		wildcard = netip.IPv6Unspecified()
	}
	candidates := []netip.Addr{addr, wildcard}
	if addr.Is4() {
		candidates = append(candidates, netip.IPv6Unspecified())
	}
	for _, want := range candidates {
		best := -1
		for i, l := range ls {
			if l.Local.Port() != local.Port() || l.Local.Addr().Unmap() != want {
				continue
			}
			if best < 0 || cmp.Less(l.Inode, ls[best].Inode) {
				best = i
			}
		}
		if best >= 0 {
			return best
		}
	}
	return -1
}
