package collector

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

func init() {
	register("unix", true, "Per-listener unix-socket accept queues (php-fpm, gunicorn, uwsgi behind nginx), from a LISTEN-only unix_diag dump", newUnixCollector, nil)
}

type unixCollector struct {
	out *ListenerExporter
}

func newUnixCollector(d Deps) (Collector, error) {
	d.Listeners.register("unix", protocol{readUnixListeners, unixQueues})
	return &unixCollector{out: d.Listeners}, nil
}

func (c *unixCollector) Update(s Scrape) error {
	return forEachNamespace(s, "unix", func(h *netns.Handle) error {
		src := c.out.source(h, "unix")
		ls, err := src.Listeners()
		if err != nil {
			return err
		}
		s.reads.add(src, src.withStats(ls))
		return nil
	})
}

// ReadUnixListeners dumps the listening unix sockets (stream and seqpacket)
// of one namespace. Sockets without a name (unnamed, socketpair) cannot be
// told apart by a person and are skipped.
func ReadUnixListeners(ns *netns.Handle) ([]Listener, error) { return readUnixListeners(ns, nil) }

// readUnixListeners is ReadUnixListeners, reusing the addresses known
// returns (a readFunc).
func readUnixListeners(ns *netns.Handle, known func(inode uint64) string) ([]Listener, error) {
	conn, err := ns.ConnFor(netns.UseUnix)
	if err != nil {
		return nil, err
	}
	out := make([]Listener, 0, conn.LastUnixCount())
	var noQueue error
	err = conn.EachUnixSocket(sockdiag.UnixRequest{States: 1 << sockdiag.StateListen}, func(s *sockdiag.UnixSocket) error {
		if s.Type != sockdiag.SockStream && s.Type != sockdiag.SockSeqPacket {
			return nil
		}
		if !s.HasQueue {
			// Read on to the end of the dump: the connection stays usable.
			if noQueue == nil {
				noQueue = fmt.Errorf("unix_diag: socket %d has no queue lengths (UNIX_DIAG_RQLEN)", s.Inode)
			}
			return nil
		}
		var name string
		if known != nil {
			if prev := known(uint64(s.Inode)); prev != "" && sameUnixName(s.Name, prev) {
				name = prev
			}
		}
		if name == "" {
			name = FormatUnixName(s.Name)
		}
		if name == "" {
			return nil
		}
		out = append(out, Listener{
			Proto:   "unix",
			Address: name,
			Inode:   uint64(s.Inode),
			Length:  s.RQueue,
			Limit:   s.WQueue,
		})
		return nil
	})
	if err != nil {
		return nil, unixDiagErr(ns.Failed(conn, err))
	}
	if noQueue != nil {
		return nil, noQueue
	}
	return out, nil
}

// sameUnixName reports whether FormatUnixName(raw) is name, without
// building it; false for names it would escape, which are rare.
func sameUnixName(raw []byte, name string) bool {
	if len(raw) > 0 && raw[0] == 0 {
		if len(name) == 0 || name[0] != '@' {
			return false
		}
		raw, name = raw[1:], name[1:]
	}
	raw = bytes.TrimRight(raw, "\x00")
	return len(raw) > 0 && plainASCII(raw) && string(raw) == name
}

// FormatUnixName prints a sun_path the way ss does: the path, or "@name"
// for an abstract socket (whose name starts with a NUL byte). Trailing NULs
// are dropped, and the rest goes through printable.
func FormatUnixName(raw []byte) string {
	prefix := ""
	if len(raw) > 0 && raw[0] == 0 {
		prefix, raw = "@", raw[1:]
	}
	raw = bytes.TrimRight(raw, "\x00")
	if len(raw) == 0 {
		if prefix == "@" {
			return "@"
		}
		return ""
	}
	return prefix + printable(raw)
}

// unixQueues reads only the queue lengths of the unix listeners, for the
// sampler.
func unixQueues(ns *netns.Handle, dst []sockdiag.Queue) ([]sockdiag.Queue, error) {
	conn, err := ns.ConnFor(netns.UseBackground)
	if err != nil {
		return dst, err
	}
	dst, err = conn.ListenQueues(sockdiag.FamilyUnix, dst)
	if err != nil {
		err = unixDiagErr(ns.Failed(conn, err))
	}
	return dst, err
}

// unixDiagErr marks the kernel's "no sock_diag handler for AF_UNIX"
// (ENOENT: unix_diag not built, or its module not loaded) as unsupported.
func unixDiagErr(err error) error {
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unix_diag (kernel module unix_diag not loaded?): %w", errUnsupported)
	}
	return err
}
