package netns

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Namespaces is what collectors read through: the current handles, the
// host's first.
type Namespaces interface {
	Handles() []*Handle
}

// Static is a fixed list of handles: the exporter's own namespace when
// discovery is off, or fixtures in tests.
type Static []*Handle

// Handles returns the list.
func (s Static) Handles() []*Handle { return s }

// SetConfig configures a Set.
type SetConfig struct {
	Sources Sources
	// Identify says who a namespace belongs to, and whether that is
	// settled. It may ask a container runtime, so it is called once per
	// namespace before the namespace is first handed out, and again on
	// later refreshes while the answer is not settled (a pod whose runtime
	// has not named it yet), for at most IdentityWait. nil leaves every
	// Identity empty.
	Identify func(Found) (Identity, bool)
	// IdentityWait bounds how long a namespace waits for a settled
	// identity before it is read with what is known; its labels never
	// change afterwards.
	IdentityWait time.Duration
	// Admit filters namespaces by identity; nil admits all. A namespace
	// left out is never opened.
	Admit  func(Identity) bool
	Logger *slog.Logger
}

// Stats describes the last discovery pass, for the exporter's own metrics.
type Stats struct {
	Read, Filtered, Denied, Failed int
	// Pending namespaces wait for their identity to settle.
	Pending  int
	Duration time.Duration
}

// Set keeps one open Handle per discovered network namespace.
type Set struct {
	cfg  SetConfig
	self *Handle

	refreshMu sync.Mutex // one Refresh at a time
	hostKey   Key
	skipped   map[Key]bool
	pending   map[Key]time.Time // first seen, while the identity is not settled
	loggedErr map[string]bool

	mu      sync.Mutex
	handles map[Key]*Handle
	ordered []*Handle
	stats   Stats
}

// NewSet returns an empty Set; self is the exporter's own namespace, used
// as is (no entering) when it is the host's. Call Refresh, or Run.
func NewSet(cfg SetConfig, self *Handle) *Set {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Set{cfg: cfg, self: self, skipped: map[Key]bool{}, pending: map[Key]time.Time{}, loggedErr: map[string]bool{}, handles: map[Key]*Handle{}}
}

// Handles returns the current handles, the host's first, then by netns ID.
func (s *Set) Handles() []*Handle {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ordered
}

// Stats returns what the last Refresh saw.
func (s *Set) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Run refreshes every interval until ctx ends, then closes every handle.
func (s *Set) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.Close()
			return
		case <-t.C:
			_ = s.Refresh()
		}
	}
}

// Refresh discovers namespaces, opens handles for new ones and closes those
// of namespaces that are gone.
func (s *Set) Refresh() error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	start := time.Now()
	scan, err := Discover(s.cfg.Sources)
	if err != nil {
		s.logOnce("discover", "cannot list network namespaces; serving the ones already known", err)
		return err
	}
	if k, err := KeyOf(filepath.Join(s.cfg.Sources.ProcRoot, "1", "ns", "net")); err == nil {
		s.hostKey = k
	}
	st := Stats{Denied: scan.Denied}
	next := map[Key]*Handle{}
	s.mu.Lock()
	current := s.handles
	s.mu.Unlock()
	live := map[Key]bool{}
	if s.self != nil {
		// The exporter can always read its own namespace, with no
		// privilege: it needs no entering.
		next[s.self.Key] = s.self
	}
	for _, f := range scan.Found {
		live[f.Key] = true
		if _, ok := next[f.Key]; ok {
			continue
		}
		if h, ok := current[f.Key]; ok {
			next[f.Key] = h
			continue
		}
		if s.skipped[f.Key] {
			st.Filtered++
			continue
		}
		h, err := s.open(f)
		switch {
		case errors.Is(err, errPending):
			st.Pending++
		case errors.Is(err, errFiltered):
			s.skipped[f.Key] = true
			st.Filtered++
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
			st.Denied++
			s.logOnce("denied", "cannot enter other network namespaces: needs CAP_SYS_ADMIN (and CAP_SYS_PTRACE for other users' processes); serving the exporter's own namespace only", err)
		case err != nil:
			// Most often the namespace went between discovery and now.
			st.Failed++
			s.cfg.Logger.Debug("cannot open network namespace", "path", f.Path, "err", err)
		default:
			next[f.Key] = h
		}
	}
	for k := range s.skipped {
		if !live[k] {
			delete(s.skipped, k)
		}
	}
	for k := range s.pending {
		if !live[k] || next[k] != nil || s.skipped[k] {
			delete(s.pending, k)
		}
	}
	st.Read = len(next)
	st.Duration = time.Since(start)
	s.publish(next, st)
	for k, h := range current {
		if _, ok := next[k]; !ok && h != s.self {
			h.Close()
		}
	}
	return nil
}

var (
	errFiltered = errors.New("filtered out")
	errPending  = errors.New("identity not settled yet")
)

func (s *Set) open(f Found) (*Handle, error) {
	var ident Identity
	if s.cfg.Identify != nil && f.Key != s.hostKey {
		var settled bool
		ident, settled = s.cfg.Identify(f)
		if !settled {
			first, ok := s.pending[f.Key]
			if !ok {
				first = time.Now()
				s.pending[f.Key] = first
			}
			if time.Since(first) < s.cfg.IdentityWait {
				return nil, errPending
			}
		}
	}
	if s.cfg.Admit != nil && !s.cfg.Admit(ident) {
		return nil, errFiltered
	}
	id := f.Name
	switch {
	case f.Key == s.hostKey:
		id = ""
	case id == "":
		id = f.Key.String()
	}
	return open(f.Path, f.Key, id, ident)
}

func (s *Set) publish(next map[Key]*Handle, st Stats) {
	ordered := make([]*Handle, 0, len(next))
	for _, h := range next {
		ordered = append(ordered, h)
	}
	slices.SortFunc(ordered, func(a, b *Handle) int {
		if (a.ID == "") != (b.ID == "") {
			if a.ID == "" {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handles, s.ordered, s.stats = next, ordered, st
}

// logOnce logs a kind of failure the first time it happens, so a missing
// privilege is one line, not one per namespace per refresh.
func (s *Set) logOnce(kind, msg string, err error) {
	if s.loggedErr[kind] {
		return
	}
	s.loggedErr[kind] = true
	s.cfg.Logger.Warn(msg, "err", err)
}

// Close closes every handle but the exporter's own.
func (s *Set) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.handles {
		if h != s.self {
			h.Close()
		}
	}
	s.handles, s.ordered = map[Key]*Handle{}, nil
}
