package collector

import (
	"path/filepath"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/owner"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

// inetCollectors are the collectors that read inet sockets and the
// namespace's files: what the fake kernel of fakeDial serves.
var inetCollectors = []string{"netstat", "sysctl", "tcp"}

// newFakeRegistry registers, on a pedantic registry, an exporter with only
// the named collectors, reading the fake procfs tree at root (see fixture)
// and dumping sockets through dial, with the sampler s (nil: off).
func newFakeRegistry(t *testing.T, root string, dial func() (*sockdiag.Conn, error), s *Sampler, collectors ...string) prometheus.Gatherer {
	t.Helper()
	ns := netns.NewFixed("", filepath.Join(root, "self", "net", "netstat"), filepath.Join(root, "sys"), dial)
	sel := Selection{}
	for _, name := range collectors {
		on := true
		sel[name] = &on
	}
	e, err := New(sel, Deps{
		Logger:     discardLogger(),
		Namespaces: netns.Static{ns},
		Listeners:  NewListenerExporter(ListenerFilters{MaxListeners: 100}, owner.NewResolver(root, 0)),
		Sampler:    s,
	})
	if err != nil {
		t.Fatal(err)
	}
	return checked(e)
}

// inetDumpReply is the fake kernel's answer to the inet_diag dump request
// req: one SOCK_DIAG_BY_FAMILY message per socket of socks, then NLMSG_DONE.
func inetDumpReply(t *testing.T, req netlink.Message, socks []sockdiag.InetSocket) ([]netlink.Message, error) {
	// Replies carry the request's type: SOCK_DIAG_BY_FAMILY, or
	// TCPDIAG_GETSOCK for a dump of both IP families.
	hdr := netlink.Header{Type: req.Header.Type, Sequence: req.Header.Sequence, PID: nltest.PID}
	var msgs []netlink.Message
	for _, s := range socks {
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, netlink.Message{Header: hdr, Data: b})
	}
	// nltest.Multipart turns the last message into NLMSG_DONE.
	msgs = append(msgs, netlink.Message{Header: hdr})
	return nltest.Multipart(msgs)
}

// fakeInet is what the fake kernel holds for the family an inet_diag
// request asks for: both IP families for AF_UNSPEC.
func fakeInet(req netlink.Message, byFamily map[uint8][]sockdiag.InetSocket) []sockdiag.InetSocket {
	if f := req.Data[0]; f != sockdiag.FamilyUnspec {
		return byFamily[f]
	}
	return append(append([]sockdiag.InetSocket{}, byFamily[sockdiag.FamilyINet]...), byFamily[sockdiag.FamilyINet6]...)
}
