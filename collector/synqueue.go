package collector

import (
	"cmp"
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

// synCounter counts pending handshakes (request sockets) per local address
// in one namespace. The kernel keeps them in the established hash, so a dump
// walks the whole connection table (milliseconds on a busy host): it runs in
// the background at its own slow interval and scrapes read the last count.
type synCounter struct {
	ns       *netns.Handle
	interval time.Duration
	logger   *slog.Logger

	mu     sync.Mutex
	counts map[netip.AddrPort]uint32 // nil until the first count
}

func newSynCounter(ns *netns.Handle, interval time.Duration, logger *slog.Logger) *synCounter {
	return &synCounter{ns: ns, interval: interval, logger: logger}
}

func (c *synCounter) run(ctx context.Context) {
	ticker := time.NewTicker(c.interval)
	defer ticker.Stop()
	failing := false
	for {
		err := c.refresh()
		switch {
		case err != nil && !failing:
			c.logger.Error("cannot count SYN queues", "netns", c.ns.ID, "err", err)
		case err == nil && failing:
			c.logger.Info("counting SYN queues again", "netns", c.ns.ID)
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func (c *synCounter) refresh() error {
	// Asking for SYN_RECV makes the kernel include request sockets
	// (TCP_NEW_SYN_RECV); asking for both is explicit about it.
	socks, err := dumpInet(c.ns, 1<<sockdiag.StateSynRecv|1<<sockdiag.StateNewSynRecv, false)
	if err != nil {
		return err
	}
	counts := countByLocal(socks)
	c.mu.Lock()
	c.counts = counts
	c.mu.Unlock()
	return nil
}

func countByLocal(socks []sockdiag.InetSocket) map[netip.AddrPort]uint32 {
	counts := map[netip.AddrPort]uint32{}
	for _, s := range socks {
		counts[netip.AddrPortFrom(s.Local.Addr().Unmap(), s.Local.Port())]++
	}
	return counts
}

// attribute sets SynQueue on every TCP listener once a count exists.
func (c *synCounter) attribute(ls []Listener) []Listener {
	c.mu.Lock()
	counts := c.counts
	c.mu.Unlock()
	if counts == nil {
		return ls
	}
	return AttributeSynQueue(ls, counts)
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
