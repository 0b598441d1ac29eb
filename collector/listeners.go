package collector

import (
	"bytes"
	"cmp"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/listenq/listenq_exporter/internal/netns"
	"github.com/listenq/listenq_exporter/internal/owner"
	"github.com/listenq/listenq_exporter/internal/sampler"
	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

// Listener is one listening socket as a collector read it from the kernel.
//
// A scrape holds one per socket read, tens of thousands on a busy node, so
// the fields are ordered to leave no padding: 136 bytes, not 152.
type Listener struct {
	Proto string // "tcp" or "unix"
	// Address is the local address as ss prints it: 0.0.0.0:80, [::]:443,
	// /run/php/fpm.sock, @abstract.
	Address string
	Port    string // "" for unix
	Inode   uint64
	// Cookie is the TCP socket cookie, which ties the listener to what the
	// acceptwait collector's BPF programs recorded; 0 for unix.
	Cookie uint64
	// Drops is the listener's sk_drops; only TCP listeners have it.
	Drops uint64
	// Local is the TCP local address, used to attribute SYN-queue entries.
	Local  netip.AddrPort
	Length uint32 // connections waiting to be accepted
	Limit  uint32 // effective backlog; full when Length > Limit

	// Set by the sampler.
	FullSeconds float64
	Peak        uint32
	// Set by SYN-queue counting.
	SynQueue uint32

	HasDrops, HasStats, HasSynQueue bool
}

// The per-listener metrics, in the order of listenerRow.values.
const (
	mQueueLength = iota
	mQueueLimit
	mDrops
	mPeak
	mFullSeconds
	mSynQueue
	numListenerMetrics
)

var listenerMetrics = [numListenerMetrics]struct {
	name, help string
	typ        dto.MetricType
}{
	mQueueLength: {namespace + "_queue_length",
		"Connections waiting in the listen queue to be accepted by the application right now (ss Recv-Q).",
		dto.MetricType_GAUGE},
	mQueueLimit: {namespace + "_queue_limit",
		"Effective backlog of the listener (ss Send-Q): the application's listen() backlog capped by net.core.somaxconn. The queue is full when the length exceeds this.",
		dto.MetricType_GAUGE},
	mDrops: {namespace + "_drops_total",
		"Packets the kernel dropped at this TCP listener (sk_drops), mostly SYNs and handshake ACKs refused because its accept queue was full.",
		dto.MetricType_COUNTER},
	mPeak: {namespace + "_queue_peak_length",
		"Highest listen-queue length the background sampler saw over the trailing --sampler.window; catches bursts that fill and drain between scrapes.",
		dto.MetricType_GAUGE},
	mFullSeconds: {namespace + "_queue_full_seconds_total",
		"Seconds the background sampler saw this listen queue full (length above limit), when new connections are dropped or refused; estimated from samples every --sampler.interval.",
		dto.MetricType_COUNTER},
	mSynQueue: {namespace + "_syn_queue_length",
		"TCP handshakes in progress (SYN received, final ACK not yet) for this listener, refreshed every --collector.tcp.syn-queue.interval.",
		dto.MetricType_GAUGE},
}

var omittedDesc = prometheus.NewDesc(namespace+"_listeners_omitted",
	"Listeners seen in this scrape but not exported: reason=filter (excluded by --filter.* flags), cap (over --filter.max-listeners, counted across all namespaces), owner_pending (new socket whose owner lookup is rate-limited; exported from the next scrape on).",
	[]string{"netns", "namespace", "pod", "proto", "reason"}, nil)

// ListenerFilters are the cardinality controls shared by all listener
// collectors.
type ListenerFilters struct {
	ListenerInclude, ListenerExclude *regexp.Regexp
	PortInclude, PortExclude         *regexp.Regexp
	ProcessInclude, ProcessExclude   *regexp.Regexp
	// MaxListeners caps the listeners exported, across all protocols and
	// namespaces.
	MaxListeners int
}

// maxListenersLimit bounds --filter.max-listeners: far above any host, low
// enough that no arithmetic on it overflows.
const maxListenersLimit = 10_000_000

// FilterFlags holds the raw flag values until they are compiled.
type FilterFlags struct {
	listenerInclude, listenerExclude *string
	portInclude, portExclude         *string
	processInclude, processExclude   *string
	// maxListeners is parsed here, not by kingpin, whose Int turns an
	// out-of-range number into a wrong one instead of an error.
	maxListeners *string
}

// AddFilterFlags adds the --filter.* flags to app.
func AddFilterFlags(app *kingpin.Application) *FilterFlags {
	re := func(name, help string) *string {
		return app.Flag("filter."+name, help+" (a regular expression matched against the whole value).").Default("").String()
	}
	return &FilterFlags{
		listenerInclude: re("listener-include", "Export only listeners whose address matches, e.g. '0\\.0\\.0\\.0:.*|/run/.*'"),
		listenerExclude: re("listener-exclude", "Do not export listeners whose address matches"),
		portInclude:     re("port-include", "Export only TCP listeners whose port matches, e.g. '80|443|8[0-9]{3}'"),
		portExclude:     re("port-exclude", "Do not export TCP listeners whose port matches"),
		processInclude:  re("process-include", "Export only listeners whose owning process name matches"),
		processExclude:  re("process-exclude", "Do not export listeners whose owning process name matches"),
		maxListeners: app.Flag("filter.max-listeners",
			"Export at most this many listeners in all, across protocols and network namespaces (the oldest sockets are kept); the rest are counted in listenq_listeners_omitted{reason=\"cap\"}.").
			Default("5000").String(),
	}
}

// Compile checks and compiles the flag values.
func (f *FilterFlags) Compile() (ListenerFilters, error) {
	var lf ListenerFilters
	for _, p := range []struct {
		flag string
		src  *string
		dst  **regexp.Regexp
	}{
		{"listener-include", f.listenerInclude, &lf.ListenerInclude},
		{"listener-exclude", f.listenerExclude, &lf.ListenerExclude},
		{"port-include", f.portInclude, &lf.PortInclude},
		{"port-exclude", f.portExclude, &lf.PortExclude},
		{"process-include", f.processInclude, &lf.ProcessInclude},
		{"process-exclude", f.processExclude, &lf.ProcessExclude},
	} {
		re, err := WholeMatch("filter."+p.flag, *p.src)
		if err != nil {
			return lf, err
		}
		*p.dst = re
	}
	n, err := strconv.Atoi(*f.maxListeners)
	if err != nil || n < 1 || n > maxListenersLimit {
		return lf, fmt.Errorf("--filter.max-listeners must be a whole number from 1 to %d, got %q", maxListenersLimit, *f.maxListeners)
	}
	lf.MaxListeners = n
	return lf, nil
}

// WholeMatch compiles the value of flag --NAME into a regular expression
// that must match a whole value; nil for an empty value (no filter).
func WholeMatch(name, src string) (*regexp.Regexp, error) {
	if src == "" {
		return nil, nil
	}
	// Compiling the pattern alone first keeps the error message about what
	// the user wrote, not about the anchors added here.
	if _, err := regexp.Compile(src); err != nil {
		return nil, fmt.Errorf("--%s: %w", name, err)
	}
	return regexp.MustCompile("^(?:" + src + ")$"), nil
}

// Admits reports whether s passes an include/exclude pair; a nil include
// admits everything.
func Admits(include, exclude *regexp.Regexp, s string) bool {
	if include != nil && !include.MatchString(s) {
		return false
	}
	return exclude == nil || !exclude.MatchString(s)
}

// ListenerExporter turns the listeners collectors read into series:
// deduplication, filters, owner and container names, the cap. It also keeps
// the per-namespace state of every listener source (shared reads, label
// cache, sampler tracker), created when a namespace is first read and
// dropped when it goes.
type ListenerExporter struct {
	filters ListenerFilters
	// owners is one Resolver for every namespace: socket inodes are unique
	// host-wide, and one /proc scan names the owners of them all.
	owners *owner.Resolver
	// events is set when the acceptwait collector runs: it makes TCP
	// listeners' peaks and full time exact and adds their wait histograms.
	events *eventStats

	order    orderCache
	segments segmentCache

	mu        sync.Mutex
	protocols map[string]protocol
	sources   map[sourceKey]*source
	// newTracker is set when the sampler runs.
	newTracker func() *sampler.Tracker
}

// protocol is how one listener collector reads a namespace.
type protocol struct {
	read   readFunc
	queues func(*netns.Handle, []sockdiag.Queue) ([]sockdiag.Queue, error)
}

// readFunc reads the listeners of a namespace. known is the address an
// inode was exported with (or ""), which a read may use as the Address of
// a listener whose name it finds unchanged, rather than build a string
// equal to it: a node's unix names are tens of thousands a scrape.
type readFunc func(ns *netns.Handle, known func(inode uint64) string) ([]Listener, error)

type sourceKey struct {
	ns    *netns.Handle
	proto string
}

// NewListenerExporter returns a ListenerExporter that names owners with
// owners.
func NewListenerExporter(f ListenerFilters, owners *owner.Resolver) *ListenerExporter {
	return &ListenerExporter{filters: f, owners: owners, protocols: map[string]protocol{}, sources: map[sourceKey]*source{}}
}

// register makes proto's sources readable, by scrapes and by the sampler.
func (x *ListenerExporter) register(proto string, p protocol) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.protocols[proto] = p
}

// source returns the source of proto's listeners in ns, creating it the
// first time.
func (x *ListenerExporter) source(ns *netns.Handle, proto string) *source {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.sourceLocked(ns, proto)
}

func (x *ListenerExporter) sourceLocked(ns *netns.Handle, proto string) *source {
	k := sourceKey{ns, proto}
	if src, ok := x.sources[k]; ok {
		return src
	}
	p := x.protocols[proto]
	src := &source{ns: ns, proto: proto, read: p.read, queues: p.queues}
	if x.newTracker != nil {
		src.tracker = x.newTracker()
	}
	x.sources[k] = src
	return src
}

// allSources returns the source of every registered protocol in every
// namespace of handles, for a sampler round.
func (x *ListenerExporter) allSources(handles []*netns.Handle) []*source {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]*source, 0, len(handles)*len(x.protocols))
	for _, h := range handles {
		for proto := range x.protocols {
			out = append(out, x.sourceLocked(h, proto))
		}
	}
	return out
}

// prune forgets the sources of namespaces that are no longer read.
func (x *ListenerExporter) prune(handles []*netns.Handle) {
	live := make(map[*netns.Handle]bool, len(handles))
	for _, h := range handles {
		live[h] = true
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for k := range x.sources {
		if !live[k.ns] {
			delete(x.sources, k)
		}
	}
}

// labelSets returns each listener's labels, from the cache where the
// listener was exported before, and forgets listeners that are gone. A
// listener's labels never change, so building them once (not on every
// scrape, for every metric) takes much of the work out of exporting
// thousands of listeners, and the set's identity lets a gzipped scrape
// reuse the segments of unchanged series.
func (s *source) labelSets(out []exported) []*labelSet {
	s.labelMu.Lock()
	defer s.labelMu.Unlock()
	if s.labels == nil {
		s.labels = make(map[uint64]*labelSet, len(out))
	}
	s.labelRound++
	ns := s.nsLabelSet()
	sets := make([]*labelSet, len(out))
	for i, l := range out {
		ls, ok := s.labels[l.Inode]
		if !ok || !sameLabels(ls, ns, l) {
			ls = newLabelSet(ns, l)
			s.labels[l.Inode] = ls
		}
		ls.round, sets[i] = s.labelRound, ls
	}
	if len(s.labels) > len(out) { // some are gone
		for ino, ls := range s.labels {
			if ls.round != s.labelRound {
				delete(s.labels, ino)
			}
		}
	}
	return sets
}

// nsLabelSet returns the labels of the source's namespace, the same value for
// as long as they do not change. Called under labelMu.
func (s *source) nsLabelSet() *listenerNS {
	id := &s.ns.Identity
	if n := s.nsl; n == nil || n.namespace != id.Namespace || n.netns != s.ns.ID || n.pod != id.Pod {
		s.nsl = &listenerNS{namespace: id.Namespace, netns: s.ns.ID, pod: id.Pod}
	}
	return s.nsl
}

// labelSet is one listener's labels, in the order of listenerLabelNames
// (container, inode, listener, namespace, netns, pod, port, process,
// proto). The text form (appendText) and client_golang's label pairs
// (pairs) are built from them on use: either, kept for every listener,
// would cost more than the set. A busy node keeps tens of thousands of
// sets, so the namespace's labels are shared and the inode is kept as the
// number: 128 bytes a set.
type labelSet struct {
	ns                                        *listenerNS
	inode                                     uint64
	container, listener, port, process, proto string
	// escape has bit i set when label i needs escaping in the text
	// format: nearly none do, and the others are appended as they are.
	escape uint16
	// cut ends a gzip segment after this listener's series (segmentCut).
	cut bool
	// round is the last labelSets call that exported the listener.
	round uint32
	// rank is the set's place in the orderCache's sort number rankOf.
	rank   int32
	rankOf uint64
	// id names the set for as long as the process runs, where a pointer
	// could be reused once the set is freed (segmentEntry.sum).
	id uint64
}

// listenerNS are the labels a namespace gives all its listeners.
type listenerNS struct{ namespace, netns, pod string }

// labelSetIDs numbers label sets.
var labelSetIDs atomic.Uint64

const (
	numListenerLabels = 9
	inodeIndex        = 1 // the one label kept as a number
)

// listenerLabelNames are the labels of every per-listener series, sorted
// as the exposition format wants them; all series share these strings.
var listenerLabelNames = func() [numListenerLabels]*string {
	var names [numListenerLabels]*string
	for i, n := range [numListenerLabels]string{"container", "inode", "listener", "namespace", "netns", "pod", "port", "process", "proto"} {
		names[i] = proto.String(n)
	}
	return names
}()

func newLabelSet(ns *listenerNS, l exported) *labelSet {
	return finishLabelSet(&labelSet{ns: ns, inode: l.Inode, container: l.owner.Container,
		listener: l.Address, port: l.Port, process: l.process(), proto: l.Proto})
}

// finishLabelSet sets what follows from the labels.
func finishLabelSet(ls *labelSet) *labelSet {
	for i := range numListenerLabels {
		if i != inodeIndex && needsEscape(ls.value(i)) {
			ls.escape |= 1 << i
		}
	}
	ls.cut, ls.id = segmentCut(ls), labelSetIDs.Add(1)
	return ls
}

// value returns label i's value; the inode's is formatted anew, so callers
// on the scrape's path use appendValue for it.
func (ls *labelSet) value(i int) string {
	switch i {
	case 0:
		return ls.container
	case inodeIndex:
		return strconv.FormatUint(ls.inode, 10)
	case 2:
		return ls.listener
	case 3:
		return ls.ns.namespace
	case 4:
		return ls.ns.netns
	case 5:
		return ls.ns.pod
	case 6:
		return ls.port
	case 7:
		return ls.process
	}
	return ls.proto
}

// appendValue appends label i's value, unescaped, to b.
func (ls *labelSet) appendValue(b []byte, i int) []byte {
	if i == inodeIndex {
		return strconv.AppendUint(b, ls.inode, 10)
	}
	return append(b, ls.value(i)...)
}

// values returns every label value, for client_golang.
func (ls *labelSet) values() []string {
	v := make([]string, numListenerLabels)
	for i := range v {
		v[i] = ls.value(i)
	}
	return v
}

// pairs builds the label pairs of client_golang's data model, in one
// allocation.
func (ls *labelSet) pairs() []*dto.LabelPair {
	type block struct {
		values [numListenerLabels]string
		pairs  [numListenerLabels]dto.LabelPair
		ptrs   [numListenerLabels]*dto.LabelPair
	}
	b := &block{}
	for i := range b.pairs {
		b.values[i] = ls.value(i)
		b.pairs[i].Name, b.pairs[i].Value = listenerLabelNames[i], &b.values[i]
		b.ptrs[i] = &b.pairs[i]
	}
	return b.ptrs[:]
}

// compareLabelSets is the registry's order of series: label values in
// turn, as strings (the inode's too: "10" before "9").
func compareLabelSets(a, b *labelSet) int {
	for i := range numListenerLabels {
		var c int
		if i == inodeIndex {
			var ab, bb [20]byte
			c = bytes.Compare(a.appendValue(ab[:0], i), b.appendValue(bb[:0], i))
		} else {
			c = strings.Compare(a.value(i), b.value(i))
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// sameLabels guards the cache against an inode reused by a new socket. The
// inode is the cache's key, so it is not compared.
func sameLabels(ls *labelSet, ns *listenerNS, l exported) bool {
	return ls.ns == ns && ls.container == l.owner.Container && ls.listener == l.Address &&
		ls.port == l.Port && ls.process == l.process() && ls.proto == l.Proto
}

// exported is a listener that passed every filter, with its owner.
type exported struct {
	// *Listener points into the scrape's read batches, which outlive it:
	// a copy of every listener was megabytes a scrape on a big node.
	*Listener
	// owner is the Resolver's answer, which it never changes; nil while
	// pending.
	owner *owner.Owner
	batch int
}

// process is the owner's command name as the process label shows it.
func (e exported) process() string { return printableString(e.owner.Comm) }

// readBatch is what one source read in one scrape.
type readBatch struct {
	src *source
	ls  []Listener
}

// readBatches collects the reads of every listener collector in a scrape.
type readBatches struct {
	mu      sync.Mutex
	batches []readBatch
}

func (r *readBatches) add(src *source, ls []Listener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, readBatch{src, ls})
}

var omitReasons = [...]string{"filter", "cap", "owner_pending"}

const (
	omitFilter = iota
	omitCap
	omitPending
)

// seenInodes are maps for selectListeners, kept from scrape to scrape: one
// of 25,000 inodes is a megabyte to build.
var seenInodes = sync.Pool{New: func() any { return map[uint64]struct{}{} }}

// selectListeners applies deduplication, filters, owner lookup and the cap
// to everything read in a scrape, and returns the listeners to export, in
// batch order, plus how many of each batch were left out and why.
func (x *ListenerExporter) selectListeners(batches []readBatch) ([]exported, [][3]int) {
	f := x.filters
	omitted := make([][3]int, len(batches))
	total := 0
	for _, b := range batches {
		total += len(b.ls)
	}
	out := make([]exported, 0, total)
	inodes := make([]uint64, 0, total)
	seen := seenInodes.Get().(map[uint64]struct{})
	defer seenInodes.Put(seen)
	for bi, b := range batches {
		// A dump under churn can report one socket twice, and a duplicate
		// series would fail the whole scrape.
		clear(seen)
		for i := range b.ls {
			l := &b.ls[i]
			if _, dup := seen[l.Inode]; dup {
				continue
			}
			seen[l.Inode] = struct{}{}
			if !Admits(f.ListenerInclude, f.ListenerExclude, l.Address) ||
				(l.Port != "" && !Admits(f.PortInclude, f.PortExclude, l.Port)) {
				omitted[bi][omitFilter]++
				continue
			}
			out = append(out, exported{Listener: l, batch: bi})
			inodes = append(inodes, l.Inode)
		}
	}
	owners := x.owners.LookupAll(inodes)
	kept := out[:0]
	for i, e := range out {
		e.owner = owners[i]
		switch {
		case e.owner == nil:
			omitted[e.batch][omitPending]++
		case !Admits(f.ProcessInclude, f.ProcessExclude, e.process()):
			omitted[e.batch][omitFilter]++
		default:
			kept = append(kept, e)
		}
	}
	out = kept
	if len(out) > f.MaxListeners {
		// Keep the oldest sockets (lowest inodes, host-wide) so the
		// exported set is stable while short-lived listeners come and go.
		slices.SortFunc(out, func(a, b exported) int { return cmp.Compare(a.Inode, b.Inode) })
		for _, e := range out[f.MaxListeners:] {
			omitted[e.batch][omitCap]++
		}
		out = out[:f.MaxListeners]
		// Back in batch order, which export relies on.
		slices.SortStableFunc(out, func(a, b exported) int { return cmp.Compare(a.batch, b.batch) })
	}
	return out, omitted
}

// export puts the series of everything the scrape read into fams.
func (x *ListenerExporter) export(s Scrape, fams *listenerFamilies) {
	s.reads.mu.Lock()
	batches := s.reads.batches
	s.reads.mu.Unlock()
	out, omitted := x.selectListeners(batches)
	// out is in batch order: each batch's listeners are one stretch of it.
	byBatch := make([][]exported, len(batches))
	for start := 0; start < len(out); {
		end := start + 1
		for end < len(out) && out[end].batch == out[start].batch {
			end++
		}
		byBatch[out[start].batch] = out[start:end]
		start = end
	}
	rows := make([]listenerRow, 0, len(out))
	waits := s.waits
	for bi, b := range batches {
		sets := b.src.labelSets(byBatch[bi])
		for i, l := range byBatch[bi] {
			if b.src.proto == "tcp" {
				waits.attribute(sets[i], l.Listener)
			}
			rows = append(rows, newListenerRow(sets[i], l.Listener))
		}
		labels := append(nsLabelValues(b.src.ns), b.src.proto, "")
		for reason, n := range omitted[bi] {
			labels[len(labels)-1] = omitReasons[reason]
			s.Metrics <- prometheus.MustNewConstMetric(omittedDesc, prometheus.GaugeValue, float64(n), labels...)
		}
	}
	fams.add(rows)
	if x.events != nil {
		fams.help = &x.events.help
	}
	waits.emit(s.Metrics)
}

func newListenerRow(labels *labelSet, l *Listener) listenerRow {
	r := listenerRow{labels: labels}
	r.set(mQueueLength, float64(l.Length))
	r.set(mQueueLimit, float64(l.Limit))
	if l.HasDrops {
		r.set(mDrops, float64(l.Drops))
	}
	if l.HasStats {
		r.set(mPeak, float64(l.Peak))
		r.set(mFullSeconds, l.FullSeconds)
	}
	if l.HasSynQueue {
		r.set(mSynQueue, float64(l.SynQueue))
	}
	return r
}

// listenerRow is every metric of one listener in one scrape.
type listenerRow struct {
	labels *labelSet
	values [numListenerMetrics]float64
	has    [numListenerMetrics]bool
}

func (r *listenerRow) set(m int, v float64) { r.values[m], r.has[m] = v, true }

// listenerFamilies collects the rows of every listener collector during one
// scrape and turns them into metric families.
type listenerFamilies struct {
	mu   sync.Mutex
	rows []listenerRow
	help *[numListenerMetrics]string
}

func newListenerFamilies() *listenerFamilies { return &listenerFamilies{} }

func (f *listenerFamilies) add(rows []listenerRow) {
	f.mu.Lock()
	if len(f.rows) == 0 {
		f.rows = rows // the usual single call: no copy of every row
	} else {
		f.rows = append(f.rows, rows...)
	}
	f.mu.Unlock()
}

// sorted returns the rows sorted by label values, as the registry sorts
// series, using and updating the order c remembers.
func (f *listenerFamilies) sorted(c *orderCache) listenerRows {
	f.mu.Lock()
	defer f.mu.Unlock()
	c.sort(f.rows)
	return listenerRows{rows: f.rows, help: f.help}
}

// orderCache remembers the order of the last sort. Sorting thousands of
// label sets compares values scattered over the heap (45 ms at 18,000
// listeners); while the listeners stay the same, each row goes straight to
// its remembered place.
type orderCache struct {
	mu    sync.Mutex
	sorts uint64 // number of full sorts, which stamps labelSet.rankOf
	n     int
}

func (c *orderCache) sort(rows []listenerRow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.place(rows) {
		return
	}
	slices.SortFunc(rows, func(a, b listenerRow) int { return compareLabelSets(a.labels, b.labels) })
	c.sorts++
	c.n = len(rows)
	for i := range rows {
		rows[i].labels.rank, rows[i].labels.rankOf = int32(i), c.sorts
	}
}

// place puts rows in their remembered order, if they are the rows of the
// last sort. It swaps each row into its place, in the rows themselves: a
// second slice of 25,000 rows would be 1.6 MB held between scrapes. On
// false the rows may be partly moved, which the full sort after it does
// not mind.
func (c *orderCache) place(rows []listenerRow) bool {
	if c.sorts == 0 || len(rows) != c.n {
		return false
	}
	for i := range rows {
		if rows[i].labels.rankOf != c.sorts {
			return false
		}
	}
	// Every rank is below c.n, the length of the sort that set it.
	for i := range rows {
		for r := int(rows[i].labels.rank); r != i; r = int(rows[i].labels.rank) {
			if int(rows[r].labels.rank) == r {
				return false // its place is taken: a label set twice
			}
			rows[i], rows[r] = rows[r], rows[i]
		}
	}
	return true
}

// listenerRows are one scrape's listener series, sorted, with how many
// series each metric has.
type listenerRows struct {
	rows []listenerRow
	// help is each metric's Help; the acceptwait collector changes it for
	// the metrics its events make exact.
	help *[numListenerMetrics]string
}

func (r listenerRows) helpOf(m int) string {
	if r.help != nil && r.help[m] != "" {
		return r.help[m]
	}
	return listenerMetrics[m].help
}

func (r listenerRows) count(m int) int {
	n := 0
	for i := range r.rows {
		if r.rows[i].has[m] {
			n++
		}
	}
	return n
}

// families builds one family per metric that has series.
func (r listenerRows) families() []*dto.MetricFamily {
	pairs := make([][]*dto.LabelPair, len(r.rows))
	for i := range r.rows {
		pairs[i] = r.rows[i].labels.pairs()
	}
	var out []*dto.MetricFamily
	for m, def := range listenerMetrics {
		n := r.count(m)
		if n == 0 {
			continue
		}
		// One allocation per kind of object rather than three per series.
		metrics := make([]dto.Metric, n)
		values := make([]float64, n)
		ptrs := make([]*dto.Metric, n)
		var gauges []dto.Gauge
		var counters []dto.Counter
		if def.typ == dto.MetricType_COUNTER {
			counters = make([]dto.Counter, n)
		} else {
			gauges = make([]dto.Gauge, n)
		}
		j := 0
		for i := range r.rows {
			row := &r.rows[i]
			if !row.has[m] {
				continue
			}
			values[j] = row.values[m]
			metrics[j].Label = pairs[i]
			if counters != nil {
				counters[j].Value = &values[j]
				metrics[j].Counter = &counters[j]
			} else {
				gauges[j].Value = &values[j]
				metrics[j].Gauge = &gauges[j]
			}
			ptrs[j] = &metrics[j]
			j++
		}
		out = append(out, &dto.MetricFamily{
			Name:   proto.String(def.name),
			Help:   proto.String(r.helpOf(m)),
			Type:   def.typ.Enum(),
			Metric: ptrs,
		})
	}
	return out
}

// printable returns b with every byte that is not printable UTF-8, and the
// backslash, escaped as \xNN. Socket names and process names are bytes
// chosen by programs, but a label value must be valid UTF-8, and control
// characters in one would only confuse whoever reads it.
func printable(b []byte) string {
	if plainASCII(b) {
		return string(b)
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError || !unicode.IsPrint(r) || r == '\\' {
			for _, c := range b[:size] {
				fmt.Fprintf(&sb, `\x%02x`, c)
			}
		} else {
			sb.WriteRune(r)
		}
		b = b[size:]
	}
	return sb.String()
}

// printableString is printable for a string, without copying the string
// when it needs no escaping: owner names are looked up every scrape.
func printableString(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '\\' {
			return printable([]byte(s))
		}
	}
	return s
}

// plainASCII reports whether b is printable ASCII without backslashes, as
// nearly every name is; such names need no escaping.
func plainASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e || c == '\\' {
			return false
		}
	}
	return true
}
