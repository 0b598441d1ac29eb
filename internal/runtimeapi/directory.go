package runtimeapi

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// ClientStatus is how one runtime client fared, for a metric such as
// listenq_runtime_up{runtime,endpoint}.
type ClientStatus struct {
	Runtime  string // Client.Runtime() now
	Endpoint string // Client.Endpoint()
	// Checked reports whether the client has been called yet. Until it has,
	// Up is false and means nothing.
	Checked bool
	// Up reports whether the last call succeeded.
	Up bool
	// LastSuccess is when a call last succeeded (zero if never).
	LastSuccess time.Time
	// LastErrorTime and LastError are the last failure (zero and nil if
	// none); they are kept after the runtime recovers.
	LastErrorTime time.Time
	LastError     error
	// Pods and Containers count what the last successful call listed.
	Pods, Containers int
}

// Directory caches what the runtimes said and answers lookups without
// calling a runtime per scrape. It is safe for concurrent use.
//
// A lookup of a known ID answers from the cache. A lookup of an unknown ID
// refreshes from every runtime (in parallel, each within its client's
// timeout), at most once per minRefresh: a miss inside that interval
// answers from the cache, and callers that miss while a refresh is under
// way wait for that one instead of starting another. A refresh replaces,
// per runtime that answered, everything that runtime listed before, so
// pods and containers it no longer lists are forgotten; what a failing
// runtime listed last is kept until it answers again.
//
// When two runtimes list the same ID, the client earlier in the list given
// to NewDirectory wins.
type Directory struct {
	clients    []Client
	minRefresh time.Duration
	logger     *slog.Logger
	now        func() time.Time

	mu         sync.Mutex
	state      []clientState // per client, same order
	pods       map[string]entry[Pod]
	containers map[string]entry[Container]
	lastStart  time.Time
	refreshes  uint64
	inflight   chan struct{} // closed when the refresh under way ends
}

type entry[T any] struct {
	v       T
	runtime string
}

type clientState struct {
	snap    Snapshot // last successful listing
	runtime string   // the client's runtime name when it listed snap
	status  ClientStatus
	// downSince is when the current run of failures began.
	downSince time.Time
}

// NewDirectory returns a Directory over clients that refreshes at most once
// per minRefresh. A nil logger discards. It makes no call until the first
// lookup or Refresh.
func NewDirectory(clients []Client, minRefresh time.Duration, logger *slog.Logger) *Directory {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Directory{
		clients:    clients,
		minRefresh: minRefresh,
		logger:     logger,
		now:        time.Now,
		state:      make([]clientState, len(clients)),
		pods:       map[string]entry[Pod]{},
		containers: map[string]entry[Container]{},
	}
}

// Pod returns the pod with this UID (as the runtime reports it, e.g.
// "6a4c8f1e-..."), and the name of the runtime that listed it. On a miss it
// refreshes as the type's documentation says; it waits for that refresh at
// most until ctx ends.
func (d *Directory) Pod(ctx context.Context, uid string) (Pod, string, bool) {
	if uid == "" {
		return Pod{}, "", false
	}
	e, ok := lookup(ctx, d, func() map[string]entry[Pod] { return d.pods }, uid)
	return e.v, e.runtime, ok
}

// Container returns the container with this full ID and the name of the
// runtime that listed it. Misses refresh as for Pod.
func (d *Directory) Container(ctx context.Context, id string) (Container, string, bool) {
	if id == "" {
		return Container{}, "", false
	}
	e, ok := lookup(ctx, d, func() map[string]entry[Container] { return d.containers }, id)
	return e.v, e.runtime, ok
}

// lookup finds key in the map that m returns (called with d.mu held: a
// refresh replaces the maps).
func lookup[T any](ctx context.Context, d *Directory, m func() map[string]entry[T], key string) (entry[T], bool) {
	d.mu.Lock()
	if e, ok := m()[key]; ok {
		d.mu.Unlock()
		return e, true
	}
	done := d.inflight
	if done == nil {
		if d.refreshes > 0 && d.now().Sub(d.lastStart) < d.minRefresh {
			d.mu.Unlock()
			return entry[T]{}, false
		}
		done = d.startLocked(ctx)
	}
	d.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := m()[key]
	return e, ok
}

// Refresh asks every runtime now, whatever the rate limit (joining a
// refresh already under way), and returns when it is done or ctx ends. Use
// it to fill the cache and the Status at start.
func (d *Directory) Refresh(ctx context.Context) {
	d.mu.Lock()
	done := d.inflight
	if done == nil {
		done = d.startLocked(ctx)
	}
	d.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Refreshes reports how many refreshes the Directory has started.
func (d *Directory) Refreshes() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.refreshes
}

// Status reports, per client in the order given to NewDirectory, how its
// last call went.
func (d *Directory) Status() []ClientStatus {
	d.mu.Lock()
	out := make([]ClientStatus, len(d.state))
	for i := range d.state {
		out[i] = d.state[i].status
	}
	d.mu.Unlock()
	for i, c := range d.clients {
		out[i].Runtime, out[i].Endpoint = c.Runtime(), c.Endpoint()
	}
	return out
}

// startLocked starts a refresh and returns the channel closed when it ends.
// The refresh runs on its own so that it outlives a caller that stops
// waiting; it keeps ctx's values but not its cancellation, the clients'
// timeouts bounding it.
func (d *Directory) startLocked(ctx context.Context) chan struct{} {
	done := make(chan struct{})
	d.inflight = done
	d.lastStart = d.now()
	d.refreshes++
	go d.refresh(context.WithoutCancel(ctx), done)
	return done
}

type listResult struct {
	snap    Snapshot
	runtime string
	err     error
}

func (d *Directory) refresh(ctx context.Context, done chan struct{}) {
	results := make([]listResult, len(d.clients))
	var wg sync.WaitGroup
	for i, c := range d.clients {
		wg.Go(func() {
			snap, err := c.List(ctx)
			results[i] = listResult{snap: snap, runtime: c.Runtime(), err: err}
		})
	}
	wg.Wait()

	d.mu.Lock()
	now := d.now()
	for i, r := range results {
		d.apply(i, r, now)
	}
	d.rebuildLocked()
	d.inflight = nil
	close(done)
	d.mu.Unlock()
}

// apply records one client's result and logs when its state changes: once
// when it starts failing, once when it answers again.
func (d *Directory) apply(i int, r listResult, now time.Time) {
	st := &d.state[i]
	was := st.status
	endpoint := d.clients[i].Endpoint()
	if r.err != nil {
		st.status.Checked, st.status.Up = true, false
		st.status.LastErrorTime, st.status.LastError = now, r.err
		if !was.Checked || was.Up {
			st.downSince = now
			d.logger.Warn("container runtime not answering", "runtime", r.runtime, "endpoint", endpoint, "err", r.err)
		}
		return
	}
	st.snap, st.runtime = r.snap, r.runtime
	st.status.Checked, st.status.Up = true, true
	st.status.LastSuccess = now
	st.status.Pods, st.status.Containers = len(r.snap.Pods), len(r.snap.Containers)
	switch {
	case !was.Checked:
		d.logger.Info("container runtime answering", "runtime", r.runtime, "endpoint", endpoint,
			"pods", len(r.snap.Pods), "containers", len(r.snap.Containers))
	case !was.Up:
		d.logger.Info("container runtime answering again", "runtime", r.runtime, "endpoint", endpoint,
			"down_since", st.downSince)
	}
}

// rebuildLocked makes the lookup maps anew from each client's last
// listing, earlier clients winning, so that what no runtime lists any more
// is dropped.
func (d *Directory) rebuildLocked() {
	pods := make(map[string]entry[Pod], len(d.pods))
	ctrs := make(map[string]entry[Container], len(d.containers))
	for _, st := range d.state {
		for _, p := range st.snap.Pods {
			if _, dup := pods[p.UID]; p.UID != "" && !dup {
				pods[p.UID] = entry[Pod]{v: p, runtime: st.runtime}
			}
		}
		for _, c := range st.snap.Containers {
			if _, dup := ctrs[c.ID]; c.ID != "" && !dup {
				ctrs[c.ID] = entry[Container]{v: c, runtime: st.runtime}
			}
		}
	}
	d.pods, d.containers = pods, ctrs
}
