package dashboards

// TestDashboardOnAFleet: the dashboard's queries against a real Prometheus
// holding six hours of a synthetic fleet, counting the samples each panel
// reads, projected to a thousand nodes.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"

	"github.com/listenq/listenq_exporter/internal/testbin"
)

const (
	fleetNodes   = 50            // exporters (instances) in the synthetic fleet
	fleetSockets = 50            // listening sockets per node
	fleetSpan    = 6 * time.Hour // history, ending now
	fleetStep    = time.Minute   // scrape and rule evaluation interval
	fleetTarget  = 1000          // nodes the samples are projected to
	maxSamples   = 50_000_000    // Prometheus' default --query.max-samples
	fleetJob     = "listenq"     // matches the rules' job=~".*listenq.*"
	fleetWidth   = 3840          // screen width (px) for panels without maxDataPoints
	dsScrape     = fleetStep     // the Grafana data source's scrape interval setting
	fleetPoints  = int(fleetSpan/fleetStep) + 1
	rateWindow   = 5 * time.Minute  // the recording rules' rate range
	promTimeout  = 90 * time.Second // for Prometheus to get ready
	importLimit  = 5 * time.Minute  // for promtool: a guard against hangs
	queryTimeout = 60 * time.Second
)

// --- the synthetic fleet -------------------------------------------------------

// fleetSeries is one series of the synthetic data: its values at every
// point (NaN where it has no sample).
type fleetSeries struct {
	metric string
	labels string // rendered `name="value",…`, empty labels left out as Prometheus does
	values []float64
}

// lset renders label pairs (name, value, name, value…), leaving out empty
// values: Prometheus drops a label with an empty value at scrape time.
func lset(pairs ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(pairs[i])
		b.WriteString(`="`)
		b.WriteString(pairs[i+1])
		b.WriteByte('"')
	}
	return b.String()
}

// episode is a stretch of trouble at a listener: its queue peaks at fill
// of capacity, is full share of the time and drops packets at drops/s.
type episode struct {
	from, to    int // points [from, to)
	fill, full  float64
	drops       float64
	onlySibling int // 0: every sibling; n: only the n-th socket (1-based)
}

type sockSpec struct {
	container, process, proto, listener string
	limit                               float64 // the listen() backlog asked for
	siblings                            int     // SO_REUSEPORT sockets (0 = 1)
	busy                                float64 // usual peak fill
}

type podSpec struct {
	namespace, app string
	stateful       bool
	sockets        []sockSpec
}

var (
	istio = []sockSpec{
		{"istio-proxy", "envoy", "tcp", "0.0.0.0:15001", 4096, 0, 0.01},
		{"istio-proxy", "envoy", "tcp", "0.0.0.0:15006", 4096, 0, 0.01},
		{"istio-proxy", "envoy", "tcp", "0.0.0.0:15090", 4096, 0, 0},
	}
	podSpecs = []podSpec{
		{"shop", "web", false, []sockSpec{
			{"nginx", "nginx", "tcp", "0.0.0.0:8080", 511, 2, 0.03},
			{"nginx", "nginx", "tcp", "127.0.0.1:8081", 511, 0, 0},
			{"php-fpm", "php-fpm8.2", "unix", "/run/php/php-fpm.sock", 511, 0, 0.05},
		}},
		{"shop", "cart", false, append([]sockSpec{
			{"app", "java", "tcp", "[::]:8080", 100, 0, 0.05},
		}, istio...)},
		{"payments", "api", false, append([]sockSpec{
			{"api", "payments-api", "tcp", "[::]:8443", 4096, 0, 0.01},
			{"api", "payments-api", "tcp", "[::]:9102", 4096, 0, 0},
		}, istio...)},
		{"search", "opensearch", true, []sockSpec{
			{"opensearch", "java", "tcp", "[::]:9200", 4096, 0, 0.02},
			{"opensearch", "java", "tcp", "[::]:9300", 4096, 0, 0.01},
			{"exporter", "elasticsearch_e", "tcp", "[::]:9114", 4096, 0, 0},
		}},
		{"kube-system", "coredns", false, []sockSpec{
			{"coredns", "coredns", "tcp", "[::]:53", 4096, 0, 0.01},
			{"coredns", "coredns", "tcp", "[::]:8080", 4096, 0, 0},
			{"coredns", "coredns", "tcp", "[::]:8181", 4096, 0, 0},
			{"coredns", "coredns", "tcp", "[::]:9153", 4096, 0, 0},
		}},
		{"auth", "keycloak", false, []sockSpec{
			{"keycloak", "java", "tcp", "[::]:8080", 4096, 0, 0.02},
			{"keycloak", "java", "tcp", "[::]:9000", 4096, 0, 0},
			{"keycloak", "java", "tcp", "0.0.0.0:7800", 4096, 0, 0},
		}},
		{"batch", "worker", false, []sockSpec{
			{"gunicorn", "gunicorn", "unix", "/tmp/gunicorn.sock", 2048, 0, 0.1},
			{"nginx", "nginx", "tcp", "0.0.0.0:8000", 511, 0, 0.02},
		}},
		{"ingress-nginx", "ingress-nginx-controller", false, []sockSpec{
			{"controller", "nginx", "tcp", "0.0.0.0:80", 4096, 2, 0.02},
			{"controller", "nginx", "tcp", "0.0.0.0:443", 4096, 2, 0.03},
			{"controller", "nginx", "tcp", "127.0.0.1:10246", 4096, 0, 0},
			{"controller", "nginx-ingress-c", "tcp", "[::]:10254", 4096, 0, 0},
			{"controller", "nginx", "unix", "/tmp/nginx/prometheus-nginx.socket", 4096, 0, 0},
		}},
		{"monitoring", "kube-state-metrics", false, []sockSpec{
			{"kube-state-metrics", "kube-state-metr", "tcp", "[::]:8080", 4096, 0, 0},
			{"kube-state-metrics", "kube-state-metr", "tcp", "[::]:8081", 4096, 0, 0},
		}},
	}
	hostSpecs = []sockSpec{
		{"", "sshd", "tcp", "0.0.0.0:22", 128, 0, 0},
		{"", "sshd", "tcp", "[::]:22", 128, 0, 0},
		{"", "kubelet", "tcp", "127.0.0.1:10248", 4096, 0, 0},
		{"", "kubelet", "tcp", "[::]:10250", 4096, 0, 0.01},
		{"", "kube-proxy", "tcp", "127.0.0.1:10249", 4096, 0, 0},
		{"", "kube-proxy", "tcp", "[::]:10256", 4096, 0, 0},
		{"", "node_exporter", "tcp", "[::]:9100", 4096, 0, 0},
		{"", "listenq_exporte", "tcp", "[::]:9637", 4096, 0, 0},
		{"", "containerd", "unix", "/run/containerd/containerd.sock", 4096, 0, 0.01},
		{"", "dbus-daemon", "unix", "/run/dbus/system_bus_socket", 4096, 0, 0},
		{"", "systemd", "unix", "/run/systemd/private", 4096, 0, 0},
		{"", "systemd-journal", "unix", "/run/systemd/journal/stdout", 4096, 0, 0},
	}
)

type fleetNetns struct {
	netns, namespace, pod, uid string
	from, to                   int // points [from, to) it exists
	somaxconn                  float64
	synCookies                 float64 // SYN cookies sent per second (SYN-flood signs)
	readFails                  [2]int  // points [from, to) the exporter failed to read it
}

type fleetSocket struct {
	ns       *fleetNetns
	spec     sockSpec
	inode    string
	sibling  int // 1-based index among its SO_REUSEPORT siblings
	trouble  []episode
	tcp      bool
	limit    float64
	listener string
	port     string
}

type fleetNode struct {
	index    int
	instance string
	netns    []*fleetNetns
	sockets  []*fleetSocket
	down     [2]int // points [from, to) the target was down
}

const hashChars = "bcdfghjklmnpqrstvwxz2456789"

func randName(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = hashChars[r.IntN(len(hashChars))]
	}
	return string(b)
}

func randUUID(r *rand.Rand) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 36)
	for i := range b {
		switch i {
		case 8, 13, 18, 23:
			b[i] = '-'
		default:
			b[i] = hex[r.IntN(16)]
		}
	}
	return string(b)
}

// fleetInstance names node i as its exporter target: node IP and port.
func fleetInstance(i int) string { return fmt.Sprintf("10.0.%d.%d:9637", i/200, 10+i%200) }

// newFleetNode lays out node i: the host's network namespace and its
// listeners, seven or so pods (one replaced during the six hours), and
// containerd-shim sockets up to fleetSockets sockets; a few nodes carry
// trouble (see the switch below).
func newFleetNode(i int) *fleetNode {
	r := rand.New(rand.NewPCG(uint64(i), 0x6c697374656e71))
	n := &fleetNode{index: i, instance: fleetInstance(i)}
	host := &fleetNetns{to: fleetPoints, somaxconn: 4096}
	if i%10 == 3 {
		host.somaxconn = 1000 // tuned nodes
	}
	n.netns = append(n.netns, host)
	add := func(ns *fleetNetns, s sockSpec) {
		sib := max(s.siblings, 1)
		for k := 1; k <= sib; k++ {
			limit := math.Min(s.limit, ns.somaxconn)
			port := ""
			if s.proto == "tcp" {
				port = s.listener[strings.LastIndexByte(s.listener, ':')+1:]
			}
			n.sockets = append(n.sockets, &fleetSocket{
				ns: ns, spec: s, inode: strconv.Itoa(100000 + r.IntN(9000000)), sibling: k,
				tcp: s.proto == "tcp", limit: limit, listener: s.listener, port: port,
			})
		}
	}
	for _, s := range hostSpecs {
		add(host, s)
	}
	newPod := func(p podSpec, from, to int) *fleetNetns {
		name := p.app + "-" + randName(r, 10) + "-" + randName(r, 5)
		if p.stateful {
			name = fmt.Sprintf("%s-%d", p.app, r.IntN(3))
		}
		ns := &fleetNetns{netns: "cni-" + randUUID(r), namespace: p.namespace, pod: name, uid: randUUID(r),
			from: from, to: to, somaxconn: 4096}
		n.netns = append(n.netns, ns)
		for _, s := range p.sockets {
			add(ns, s)
		}
		return ns
	}
	// Pods: the one in trouble on this node (see troubleApp) first, then
	// the specs in a rotation, as many as fit in fleetSockets with the
	// host's listeners and a containerd-shim socket per pod; more shim
	// sockets (pods without listeners) fill up the rest.
	var pods []podSpec
	if app := troubleApp[i]; app != "" {
		pods = append(pods, podSpecs[slices.IndexFunc(podSpecs, func(p podSpec) bool { return p.app == app })])
	}
	used := len(n.sockets) + len(pods)
	for _, p := range pods {
		used += socketsOf(p)
	}
	for j := range podSpecs {
		p := podSpecs[(i*5+j)%len(podSpecs)]
		if slices.ContainsFunc(pods, func(q podSpec) bool { return q.app == p.app }) {
			continue
		}
		if used+socketsOf(p)+1 > fleetSockets {
			break
		}
		pods = append(pods, p)
		used += socketsOf(p) + 1
	}
	podSockets := used - len(n.sockets) - len(pods)
	for len(n.sockets)+podSockets < fleetSockets {
		add(host, sockSpec{"", "containerd-shim", "unix", "/run/containerd/s/" + randName(r, 16), 4096, 0, 0})
	}
	// The last pod is replaced (new name, network namespace, sockets)
	// somewhere in the six hours, as a rollout or eviction does.
	replaced := fleetPoints/6 + (i*37)%(fleetPoints/2)
	for j, p := range pods {
		if j == len(pods)-1 && len(pods) > 1 {
			newPod(p, 0, replaced)
			newPod(p, replaced, fleetPoints)
			continue
		}
		newPod(p, 0, fleetPoints)
	}

	find := func(app, listener string) []*fleetSocket {
		var out []*fleetSocket
		for _, s := range n.sockets {
			if s.ns.pod != "" && strings.HasPrefix(s.ns.pod, app+"-") && s.listener == listener ||
				app == "" && s.ns.pod == "" && s.listener == listener {
				out = append(out, s)
			}
		}
		return out
	}
	trouble := func(app, listener string, e episode) {
		socks := find(app, listener)
		if len(socks) == 0 {
			panic(fmt.Sprintf("node %d has no listener %s in %q for its trouble", i, listener, app))
		}
		for _, s := range socks {
			s.trouble = append(s.trouble, e)
		}
	}
	end := fleetPoints
	switch i {
	case 0: // php-fpm's unix socket full (nginx answers 502), nginx near full
		trouble("web", "/run/php/php-fpm.sock", episode{from: end - 90, to: end, fill: 1, full: 0.45})
		trouble("web", "0.0.0.0:8080", episode{from: end - 120, to: end, fill: 0.85})
	case 7: // a Java app's backlog of 100 overflows: drops
		trouble("cart", "[::]:8080", episode{from: end - 150, to: end, fill: 1, full: 0.35, drops: 12})
	case 13: // an episode that ended two hours ago
		trouble("keycloak", "[::]:8080", episode{from: end - 240, to: end - 200, fill: 1, full: 0.6, drops: 40})
	case 21: // old tuning caps every host backlog at 128
		host.somaxconn = 128
		for _, s := range n.sockets {
			if s.ns == host {
				s.limit = math.Min(s.spec.limit, 128)
			}
		}
		trouble("", "[::]:10250", episode{from: 0, to: end, fill: 0.9})
	case 34: // one of two reuseport siblings full
		trouble("ingress-nginx-controller", "0.0.0.0:443", episode{from: end - 60, to: end, fill: 1, full: 0.2, drops: 3, onlySibling: 2})
	case 42: // SYN flood at the host
		host.synCookies = 25
		trouble("", "[::]:10250", episode{from: end - 40, to: end, fill: 0.7, drops: 0.5})
	case 45: // a pod's namespace unreadable for a while
		n.netns[1].readFails = [2]int{end - 100, end - 80}
	case 49: // target down for ten minutes
		n.down = [2]int{end - 30, end - 20}
	}
	return n
}

// troubleApp is the pod (app) in trouble on a node, which the node runs
// for sure; see newFleetNode.
var troubleApp = map[int]string{0: "web", 7: "cart", 13: "keycloak", 34: "ingress-nginx-controller"}

func socketsOf(p podSpec) int {
	c := 0
	for _, s := range p.sockets {
		c += max(s.siblings, 1)
	}
	return c
}

// noise is a cheap deterministic value in [0, 1) for (seed, k).
func noise(seed uint64, k int) float64 {
	x := seed ^ uint64(k)*0x9e3779b97f4a7c15
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

func seedOf(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}

// promRate is rate(v[5m]) at point k the way Prometheus 2.x computes it
// (extrapolatedRate; the range includes both ends), NaN without two
// samples in the range.
func promRate(v []float64, k int) float64 {
	w := int(rateWindow / fleetStep)
	var first, last, n int
	first = -1
	result := 0.0
	prev := math.NaN()
	for j := max(0, k-w); j <= k; j++ {
		if math.IsNaN(v[j]) {
			continue
		}
		if first < 0 {
			first = j
		} else if v[j] < prev {
			result += prev // counter reset
		}
		prev = v[j]
		last = j
		n++
	}
	if n < 2 {
		return math.NaN()
	}
	step := fleetStep.Seconds()
	result += v[last] - v[first]
	durationToStart := float64(first-(k-w)) * step
	durationToEnd := float64(k-last) * step
	sampled := float64(last-first) * step
	avg := sampled / float64(n-1)
	if result > 0 && v[first] >= 0 {
		if toZero := sampled * (v[first] / result); toZero < durationToStart {
			durationToStart = toZero
		}
	}
	threshold := avg * 1.1
	extrapolate := sampled
	if durationToStart < threshold {
		extrapolate += durationToStart
	} else {
		extrapolate += avg / 2
	}
	if durationToEnd < threshold {
		extrapolate += durationToEnd
	} else {
		extrapolate += avg / 2
	}
	return result * (extrapolate / sampled) / rateWindow.Seconds()
}

// sockValues are one socket's raw series.
type sockValues struct {
	length, peak, limit, syn, fullTotal, dropsTotal []float64
}

func nanSlice() []float64 {
	v := make([]float64, fleetPoints)
	for i := range v {
		v[i] = math.NaN()
	}
	return v
}

// series returns every series of node n: raw, and recorded as the rules
// in rulesFile compute them (generated here, not evaluated by Prometheus:
// see fleetRecorded).
func (n *fleetNode) series() []fleetSeries {
	var out []fleetSeries
	up := func(k int) bool { return k < n.down[0] || k >= n.down[1] }
	base := func(ns *fleetNetns) []string {
		return []string{"job", fleetJob, "instance", n.instance, "netns", ns.netns, "namespace", ns.namespace, "pod", ns.pod}
	}

	// Sockets.
	vals := make([]sockValues, len(n.sockets))
	for si, s := range n.sockets {
		seed := seedOf(n.instance + s.inode)
		v := sockValues{nanSlice(), nanSlice(), nanSlice(), nanSlice(), nanSlice(), nanSlice()}
		full, drops := 0.0, 0.0
		capacity := s.limit + 1
		for k := s.ns.from; k < s.ns.to; k++ {
			if !up(k) {
				continue
			}
			u := noise(seed, k)
			peak := math.Floor(s.spec.busy * capacity * 2 * u)
			fullShare, dropRate := 0.0, 0.0
			for _, e := range s.trouble {
				if k >= e.from && k < e.to && (e.onlySibling == 0 || e.onlySibling == s.sibling) {
					peak = math.Min(capacity, math.Round(e.fill*capacity*(0.97+0.03*u)))
					if e.full > 0 { // full part of the time: the sampler saw it full
						peak = capacity
					}
					fullShare = e.full * (0.8 + 0.4*u)
					dropRate = e.drops * (0.7 + 0.6*u)
				}
			}
			full += fullShare * fleetStep.Seconds()
			drops += math.Round(dropRate * fleetStep.Seconds())
			v.peak[k] = peak
			v.length[k] = math.Floor(peak * noise(seed+1, k))
			v.limit[k] = s.limit
			v.fullTotal[k] = full
			v.dropsTotal[k] = drops
			if s.tcp {
				v.syn[k] = math.Floor(3 * noise(seed+2, k) * noise(seed+3, k))
			}
		}
		vals[si] = v
		ls := lset(append(base(s.ns), "container", s.spec.container, "proto", s.spec.proto,
			"listener", s.listener, "port", s.port, "process", s.spec.process, "inode", s.inode)...)
		out = append(out,
			fleetSeries{"listenq_queue_length", ls, v.length},
			fleetSeries{"listenq_queue_peak_length", ls, v.peak},
			fleetSeries{"listenq_queue_limit", ls, v.limit},
			fleetSeries{"listenq_queue_full_seconds_total", ls, v.fullTotal})
		if s.tcp {
			out = append(out,
				fleetSeries{"listenq_syn_queue_length", ls, v.syn},
				fleetSeries{"listenq_drops_total", ls, v.dropsTotal})
		}
	}

	// Listeners: SO_REUSEPORT siblings folded (every label but inode).
	type listener struct {
		labels string
		tcp    bool
		socks  []int
	}
	var listeners []*listener
	byLabels := map[string]*listener{}
	for si, s := range n.sockets {
		ls := lset(append(base(s.ns), "container", s.spec.container, "proto", s.spec.proto,
			"listener", s.listener, "port", s.port, "process", s.spec.process)...)
		l := byLabels[ls]
		if l == nil {
			l = &listener{labels: ls, tcp: s.tcp}
			byLabels[ls] = l
			listeners = append(listeners, l)
		}
		l.socks = append(l.socks, si)
	}
	fold := func(l *listener, f func(v sockValues, k int) float64, combine func(a, b float64) float64) []float64 {
		out := nanSlice()
		for k := range out {
			for _, si := range l.socks {
				x := f(vals[si], k)
				switch {
				case math.IsNaN(x):
				case math.IsNaN(out[k]):
					out[k] = x
				default:
					out[k] = combine(out[k], x)
				}
			}
		}
		return out
	}
	sum := func(a, b float64) float64 { return a + b }
	for _, l := range listeners {
		out = append(out,
			fleetSeries{"listenq_listener:queue_fill_ratio:peak_max", l.labels,
				fold(l, func(v sockValues, k int) float64 { return v.peak[k] / (v.limit[k] + 1) }, math.Max)},
			fleetSeries{"listenq_listener:queue_fill_ratio:current_max", l.labels,
				fold(l, func(v sockValues, k int) float64 { return v.length[k] / (v.limit[k] + 1) }, math.Max)},
			fleetSeries{"listenq_listener:queue_full_ratio:max_rate5m", l.labels,
				fold(l, func(v sockValues, k int) float64 { return promRate(v.fullTotal, k) }, math.Max)},
			fleetSeries{"listenq_listener:sockets:count", l.labels,
				fold(l, func(v sockValues, k int) float64 { return v.limit[k]*0 + 1 }, sum)})
		if l.tcp {
			out = append(out, fleetSeries{"listenq_listener:drops:rate5m", l.labels,
				fold(l, func(v sockValues, k int) float64 { return promRate(v.dropsTotal, k) }, sum)})
		}
	}

	// Network namespaces: counters, sysctls, identity, read status.
	for _, ns := range n.netns {
		seed := seedOf(n.instance + ns.netns)
		counters := map[string][]float64{}
		for _, c := range []string{"tcp_listen_overflows", "tcp_listen_drops", "tcp_syn_queue_drops",
			"tcp_syn_queue_cookies", "tcp_syncookies_sent", "tcp_syncookies_received", "tcp_syncookies_failed"} {
			counters[c] = nanSlice()
		}
		gauges := map[string][]float64{}
		for _, g := range []string{"somaxconn", "tcp_max_syn_backlog", "tcp_syncookies", "tcp_abort_on_overflow", "netns_info", "netns_scrape_success"} {
			gauges[g] = nanSlice()
		}
		omitted := nanSlice()
		total := map[string]float64{}
		for k := ns.from; k < ns.to; k++ {
			if !up(k) {
				continue
			}
			overflows := 0.0
			for si, s := range n.sockets {
				if s.ns == ns && s.tcp && k > 0 && !math.IsNaN(vals[si].dropsTotal[k]) && !math.IsNaN(vals[si].dropsTotal[k-1]) {
					overflows += vals[si].dropsTotal[k] - vals[si].dropsTotal[k-1]
				}
			}
			cookies := math.Round(ns.synCookies * fleetStep.Seconds() * (0.8 + 0.4*noise(seed, k)))
			total["tcp_listen_overflows"] += overflows
			total["tcp_listen_drops"] += overflows
			if noise(seed+1, k) < 0.02 { // the odd drop for another reason
				total["tcp_listen_drops"]++
			}
			total["tcp_syn_queue_cookies"] += cookies
			total["tcp_syncookies_sent"] += cookies
			total["tcp_syncookies_received"] += math.Round(cookies * 0.6)
			total["tcp_syncookies_failed"] += math.Round(cookies * 0.05)
			for c, v := range counters {
				v[k] = total[c]
			}
			maxSyn := 512.0
			if ns.netns == "" {
				maxSyn = 4096
			}
			gauges["somaxconn"][k] = ns.somaxconn
			gauges["tcp_max_syn_backlog"][k] = maxSyn
			gauges["tcp_syncookies"][k] = 1
			gauges["tcp_abort_on_overflow"][k] = 0
			gauges["netns_info"][k] = 1
			gauges["netns_scrape_success"][k] = 1
			if k >= ns.readFails[0] && k < ns.readFails[1] {
				gauges["netns_scrape_success"][k] = 0
			}
			omitted[k] = 0
		}
		ls := lset(base(ns)...)
		for _, c := range slices.Sorted(maps.Keys(counters)) {
			out = append(out, fleetSeries{"listenq_" + c + "_total", ls, counters[c]})
			rate := nanSlice()
			for k := range rate {
				rate[k] = promRate(counters[c], k)
			}
			out = append(out, fleetSeries{"listenq_netns:" + c + ":rate5m", ls, rate})
		}
		for _, g := range slices.Sorted(maps.Keys(gauges)) {
			if g == "netns_info" {
				runtime := "containerd"
				if ns.pod == "" {
					runtime = ""
				}
				out = append(out, fleetSeries{"listenq_netns_info", lset(append(base(ns), "pod_uid", ns.uid, "runtime", runtime)...), gauges[g]})
				continue
			}
			name := "listenq_" + g
			out = append(out, fleetSeries{name, ls, gauges[g]})
		}
		for _, proto := range []string{"tcp", "unix"} {
			for _, reason := range []string{"cap", "filter", "owner_pending"} {
				out = append(out, fleetSeries{"listenq_listeners_omitted", lset(append(base(ns), "proto", proto, "reason", reason)...), omitted})
			}
		}
	}

	// The exporter itself, and Prometheus' up.
	seed := seedOf(n.instance)
	gauge := func(f func(k int) float64) []float64 {
		v := nanSlice()
		for k := range v {
			if up(k) {
				v[k] = f(k)
			}
		}
		return v
	}
	inst := []string{"job", fleetJob, "instance", n.instance}
	upv := make([]float64, fleetPoints)
	for k := range upv {
		if up(k) {
			upv[k] = 1
		}
	}
	out = append(out, fleetSeries{"up", lset(inst...), upv})
	version := "0.4.0"
	if n.index >= 40 {
		version = "0.5.0-rc.1" // a rollout in progress
	}
	out = append(out, fleetSeries{"listenq_exporter_build_info", lset(append(inst, "version", version, "revision", "85e8066",
		"branch", "main", "goversion", "go1.26.8")...), gauge(func(int) float64 { return 1 })})
	for ci, c := range []string{"netstat", "sysctl", "tcp", "unix"} {
		out = append(out,
			fleetSeries{"listenq_scrape_collector_success", lset(append(inst, "collector", c)...), gauge(func(k int) float64 {
				if n.index == 45 && c == "netstat" && k >= fleetPoints-100 && k < fleetPoints-80 {
					return 0
				}
				return 1
			})},
			fleetSeries{"listenq_scrape_collector_duration_seconds", lset(append(inst, "collector", c)...), gauge(func(k int) float64 {
				return 0.0005 + 0.004*noise(seed+uint64(ci), k)
			})})
	}
	for _, st := range []string{"read", "filtered", "pending", "denied", "failed"} {
		out = append(out, fleetSeries{"listenq_netns_discovered", lset(append(inst, "state", st)...), gauge(func(k int) float64 {
			if st != "read" {
				return 0
			}
			c := 0.0
			for _, ns := range n.netns {
				if k >= ns.from && k < ns.to {
					c++
				}
			}
			return c
		})})
	}
	out = append(out,
		fleetSeries{"listenq_runtime_up", lset(append(inst, "runtime", "containerd", "endpoint", "unix:///run/containerd/containerd.sock")...), gauge(func(int) float64 { return 1 })},
		fleetSeries{"listenq_sampler_round_duration_seconds", lset(inst...), gauge(func(k int) float64 { return 0.002 + 0.003*noise(seed+9, k) })},
	)
	return out
}

// fleetRecorded lists the recording rules the generator writes series for,
// computed from the synthetic raw samples as the rules' expressions do.
var fleetRecorded = map[string]bool{
	"listenq_listener:queue_fill_ratio:peak_max":    true,
	"listenq_listener:queue_fill_ratio:current_max": true,
	"listenq_listener:queue_full_ratio:max_rate5m":  true,
	"listenq_listener:sockets:count":                true,
	"listenq_listener:drops:rate5m":                 true,
	"listenq_netns:tcp_listen_overflows:rate5m":     true,
	"listenq_netns:tcp_listen_drops:rate5m":         true,
	"listenq_netns:tcp_syn_queue_drops:rate5m":      true,
	"listenq_netns:tcp_syn_queue_cookies:rate5m":    true,
	"listenq_netns:tcp_syncookies_sent:rate5m":      true,
	"listenq_netns:tcp_syncookies_received:rate5m":  true,
	"listenq_netns:tcp_syncookies_failed:rate5m":    true,
}

// writeFleet writes the fleet as OpenMetrics, split in time: the first
// half of every series to files[0], the rest to files[1], so two promtool
// processes import it in parallel into two blocks that do not overlap.
// Only the metrics in emit are written, and those in emitFirst for the
// first node. Two goroutines render the nodes. It returns the number of
// samples written.
func writeFleet(files [2]string, end time.Time, emit, emitFirst map[string]bool) (int, error) {
	chunks := make(chan nodeText, 2)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := w; i < fleetNodes; i += 2 {
				chunks <- renderNode(i, end, emit, emitFirst)
			}
		})
	}
	go func() { wg.Wait(); close(chunks) }()

	var ws [2]*bufio.Writer
	var errs []error
	for i, f := range files {
		fh, err := os.Create(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		defer fh.Close()
		ws[i] = bufio.NewWriterSize(fh, 1<<20)
	}
	samples := 0
	for c := range chunks { // drained even after an error, so the goroutines end
		samples += c.samples
		for i, w := range ws {
			if w != nil {
				if _, err := w.Write(c.text[i]); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	for _, w := range ws {
		if w != nil {
			if _, err := w.WriteString("# EOF\n"); err != nil {
				errs = append(errs, err)
			}
			errs = append(errs, w.Flush())
		}
	}
	return samples, errors.Join(errs...)
}

// nodeText is one node's series in OpenMetrics text, series after series:
// its first half of points in text[0], the rest in text[1].
type nodeText struct {
	text    [2][]byte
	samples int
}

// renderNode renders node i.
func renderNode(i int, end time.Time, emit, emitFirst map[string]bool) (c nodeText) {
	start := end.Add(-fleetSpan).Unix()
	step := int64(fleetStep / time.Second)
	half := fleetPoints / 2
	var series []fleetSeries
	for _, s := range newFleetNode(i).series() {
		if emit[s.metric] || i == 0 && emitFirst[s.metric] {
			series = append(series, s)
		}
	}
	// Room for every line (value and timestamp up to 40 bytes), so the
	// buffers are not copied over and over as they grow.
	for h, part := range [2][2]int{{0, half}, {half, fleetPoints}} {
		size := 0
		for _, s := range series {
			size += (part[1] - part[0]) * (len(s.metric) + len(s.labels) + 40)
		}
		c.text[h] = make([]byte, 0, size)
	}
	for _, s := range series {
		for k, v := range s.values {
			if math.IsNaN(v) {
				continue
			}
			h := 0
			if k >= half {
				h = 1
			}
			b := c.text[h]
			b = append(b, s.metric...)
			b = append(b, '{')
			b = append(b, s.labels...)
			b = append(b, "} "...)
			b = strconv.AppendFloat(b, v, 'g', -1, 64)
			b = append(b, ' ')
			b = strconv.AppendInt(b, start+int64(k)*step, 10)
			b = append(b, '\n')
			c.text[h] = b
			c.samples++
		}
	}
	return c
}

// --- Grafana's query parameters ---------------------------------------------

// roundInterval is Grafana's rangeutil.roundInterval, from 1 s up.
func roundInterval(d time.Duration) time.Duration {
	ms := d.Milliseconds()
	for _, r := range []struct{ below, to int64 }{
		{1500, 1000}, {3500, 2000}, {7500, 5000}, {12500, 10000}, {17500, 15000}, {25000, 20000},
		{45000, 30000}, {90000, 60000}, {210000, 120000}, {450000, 300000}, {750000, 600000},
		{1050000, 900000}, {1500000, 1200000}, {2700000, 1800000}, {5400000, 3600000},
		{9000000, 7200000}, {16200000, 10800000}, {32400000, 21600000}, {86400000, 43200000},
	} {
		if ms < r.below {
			return time.Duration(r.to) * time.Millisecond
		}
	}
	return 24 * time.Hour
}

// parseGrafanaDuration parses "1m", "30s", "1h" (and Go's "1m30s").
func parseGrafanaDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	if strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		return time.Duration(n) * 24 * time.Hour, err
	}
	return 0, fmt.Errorf("bad duration %q", s)
}

// queryPlan is how Grafana sends one target to Prometheus.
type queryPlan struct {
	instant      bool
	step         time.Duration
	rateInterval time.Duration
}

// planQuery computes a target's step and $__rate_interval as Grafana's
// Prometheus data source does (pkg/promlib/models/query.go): the interval
// is the time range over the panel's max data points (its width in pixels
// unless set; a wide screen is assumed, the worst case), rounded, and at
// least the panel's or target's min interval, else the data source's
// scrape interval; $__rate_interval is max(interval + scrape, 4 × scrape).
func planQuery(p panel, tg target, span time.Duration) (queryPlan, error) {
	q := queryPlan{instant: tg.Instant && !tg.Range}
	if p.Type == "stat" || p.Type == "table" {
		q.instant = q.instant || !tg.Range
	}
	minInterval := dsScrape
	for _, s := range []string{p.Interval, tg.Interval} {
		if s == "" {
			continue
		}
		d, err := parseGrafanaDuration(s)
		if err != nil {
			return q, err
		}
		minInterval = d
	}
	points := p.MaxDataPoints
	if points == 0 {
		points = max(p.GridPos.W, 1) * fleetWidth / 24
	}
	q.step = max(roundInterval(span/time.Duration(points)), minInterval, span/11000)
	scrape := dsScrape
	if tg.Interval != "" {
		scrape, _ = parseGrafanaDuration(tg.Interval)
	}
	q.rateInterval = max(q.step+scrape, 4*scrape)
	return q, nil
}

// grafanaExpr substitutes the dashboard's variables as Grafana does for
// Prometheus: vars holds each variable's regexp value, already escaped.
func grafanaExpr(expr string, vars map[string]string, q queryPlan, span time.Duration) (string, error) {
	secs := func(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) + "s" }
	builtins := map[string]string{
		"__interval":         secs(q.step),
		"__interval_ms":      strconv.FormatInt(q.step.Milliseconds(), 10),
		"__rate_interval":    secs(q.rateInterval),
		"__rate_interval_ms": strconv.FormatInt(q.rateInterval.Milliseconds(), 10),
		"__range":            secs(span),
		"__range_s":          strconv.FormatInt(int64(span/time.Second), 10),
		"__range_ms":         strconv.FormatInt(span.Milliseconds(), 10),
	}
	var errs []error
	out := varRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := varRef.FindStringSubmatch(ref)
		name := m[1] + m[2] + m[3]
		if v, ok := builtins[name]; ok {
			return v
		}
		if v, ok := vars[name]; ok {
			return v
		}
		errs = append(errs, fmt.Errorf("no value for %s", ref))
		return ref
	})
	return out, errors.Join(errs...)
}

// promRegexpEscape is Grafana's prometheusSpecialRegexEscape: a variable's
// value in a =~ matcher, with regexp metacharacters escaped inside the
// PromQL string.
func promRegexpEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c == '\\':
			b.WriteString(`\\\\`)
		case strings.ContainsRune(`$^*{}[]'+?.()|`, c):
			b.WriteString(`\\`)
			b.WriteRune(c)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// --- Prometheus ---------------------------------------------------------------

type promResult struct {
	Metric map[string]string `json:"metric"`
	Value  []any             `json:"value"`
	Values [][]any           `json:"values"`
}

type promAnswer struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		Result []promResult `json:"result"`
		Stats  struct {
			Samples struct {
				TotalQueryableSamples int64 `json:"totalQueryableSamples"`
				PeakSamples           int64 `json:"peakSamples"`
			} `json:"samples"`
		} `json:"stats"`
	} `json:"data"`
}

type promClient struct {
	base   string
	client *http.Client
}

func (c promClient) query(path string, params url.Values) (*promAnswer, error) {
	resp, err := c.client.PostForm(c.base+path, params)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var a promAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return nil, fmt.Errorf("%s: status %s, undecodable answer: %w", path, resp.Status, err)
	}
	if a.Status != "success" {
		return nil, fmt.Errorf("%s: %s: %s", path, a.ErrorType, a.Error)
	}
	return &a, nil
}

// instant runs expr at t.
func (c promClient) instant(expr string, t time.Time) (*promAnswer, error) {
	return c.query("/api/v1/query", url.Values{"query": {expr}, "time": {strconv.FormatInt(t.Unix(), 10)}, "stats": {"all"}})
}

// ranged runs expr over [start, end] every step.
func (c promClient) ranged(expr string, start, end time.Time, step time.Duration) (*promAnswer, error) {
	return c.query("/api/v1/query_range", url.Values{
		"query": {expr}, "start": {strconv.FormatInt(start.Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)},
		"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}, "stats": {"all"}})
}

// runPromtool imports an OpenMetrics file into blocks under dir.
func runPromtool(ctx context.Context, promtool, file, dir string) error {
	// --max-block-duration (hidden in 2.x) large: one block per file rather
	// than one per 2 h, each of which would re-read the whole file.
	cmd := exec.CommandContext(ctx, promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet", "--max-block-duration=8760h", file, dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("promtool tsdb create-blocks-from openmetrics %s: %w\n%s", filepath.Base(file), err, out)
	}
	return nil
}

// --- the test -------------------------------------------------------------------

// panelCost is what one panel's queries read, for one choice of instances.
type panelCost struct {
	total, peak int64         // samples: sum over targets, largest single peak
	series      int           // result series, summed over targets
	took        time.Duration // wall time of its queries, summed
}

type panelRow struct {
	p                 panel
	collapsed         bool
	kinds             string
	defaults, fleet   panelCost
	projTotal, projPk int64
}

// TestDashboardOnAFleet proves the dashboard holds on a large fleet. It
// writes six hours of a synthetic fleet (fleetNodes nodes × fleetSockets
// listening sockets, several pods per node, a few listeners in trouble,
// one pod replaced per node) as OpenMetrics, with every metric the
// dashboard reads: raw metrics, and the recording rules' series computed
// here from the raw samples as the rules do (checked against Prometheus
// evaluating the rules' expressions on the first node, whose raw rule
// inputs are written too). promtool turns it into TSDB blocks, a
// Prometheus on loopback serves them, and every panel query runs as
// Grafana would send it over the dashboard's default time range: with the
// default variables (one instance) and with every instance selected. The
// samples each panel reads (stats=all totalQueryableSamples) are logged
// and projected linearly to fleetTarget nodes, which must stay under
// Prometheus' default --query.max-samples.
func TestDashboardOnAFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("imports six hours of 50 nodes into a Prometheus; skipped with -short")
	}
	promtool := testbin.RequireTool(t, "promtool", "prometheus")
	prometheus := testbin.RequireTool(t, "prometheus", "prometheus")
	began := time.Now()

	d := loadDashboard(t)
	span, err := dashboardSpan(d)
	if err != nil {
		t.Fatal(err)
	}
	if span > fleetSpan {
		t.Fatalf("the dashboard's default time range is %v; the synthetic fleet covers %v", span, fleetSpan)
	}

	// What to write: every metric a panel or variable reads; of recording
	// rules, those the rules file defines and the generator computes; and
	// for the first node the raw inputs of those rules, to check them.
	_, recorded := rulesQueries(t)
	ruleExprs := ruleExpressions(t)
	emit, emitFirst := map[string]bool{}, map[string]bool{}
	for _, q := range dashboardQueries(t, d) {
		sels, err := selectors(q.expr)
		if err != nil {
			t.Fatalf("%s: %v", q.where, err)
		}
		for _, s := range sels {
			emit[s.metric] = true
			if !strings.Contains(s.metric, ":") {
				continue
			}
			switch {
			case !recorded[s.metric]:
				t.Errorf("%s uses %s, which %s does not record", q.where, s.metric, rulesFile)
			case !fleetRecorded[s.metric]:
				t.Errorf("%s uses recording rule %s, which the fleet generator does not compute; add it to fleetNode.series and fleetRecorded", q.where, s.metric)
			}
		}
	}
	usedRules := []string{}
	for name := range emit {
		if strings.Contains(name, ":") {
			usedRules = append(usedRules, name)
			inputs, err := selectors(inlineRules(ruleExprs[name], ruleExprs))
			if err != nil {
				t.Fatalf("rule %s: %v", name, err)
			}
			for _, s := range inputs {
				emitFirst[s.metric] = true
			}
		}
	}
	sort.Strings(usedRules)
	if t.Failed() {
		t.FailNow()
	}

	// Data ending now, on the minute (the step of every graph).
	end := time.Now().Truncate(fleetStep)
	dir := t.TempDir()
	files := [2]string{filepath.Join(dir, "fleet-1.om"), filepath.Join(dir, "fleet-2.om")}
	written, err := writeFleet(files, end, emit, emitFirst)
	if err != nil {
		t.Fatal(err)
	}
	generated := time.Now()
	data := filepath.Join(dir, "data")
	ctx, cancel := context.WithTimeout(context.Background(), importLimit)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(files))
	for i, f := range files {
		wg.Go(func() { errs[i] = runPromtool(ctx, promtool, f, data) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		os.Remove(f) // gigabytes: not kept until the test ends
	}
	imported := time.Now()

	// Prometheus over those blocks: no scrape configs, no rules.
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + testbin.FreePort(t)
	proc := testbin.Start(t, prometheus,
		"--config.file="+cfg,
		"--storage.tsdb.path="+data,
		"--storage.tsdb.retention.time=30d",
		"--web.listen-address="+addr,
		"--query.max-samples="+strconv.Itoa(maxSamples),
		"--log.level=warn")
	// Killed by its PID when the test ends (testbin then reaps it and its
	// process group), before the temporary directory goes: cleanups run
	// last-registered first.
	t.Cleanup(func() { _ = proc.Cmd.Process.Kill() })
	if !proc.WaitHTTP(t, "http://"+addr+"/-/ready", promTimeout) {
		t.Fatalf("prometheus exited before it was ready: %v\n%s", proc.Err(), proc.Output())
	}
	prom := promClient{base: "http://" + addr, client: &http.Client{Timeout: queryTimeout}}

	// The instances, as the instance variable lists them (sorted); Grafana
	// opens on the first.
	instances, err := variableValues(prom, d, "instance", end)
	if err != nil {
		t.Fatal(err)
	}
	if len(instances) != fleetNodes || instances[0] != fleetInstance(0) {
		t.Fatalf("instance variable lists %d instances, want %d starting with %s (node 0, whose raw rule inputs are written): %v", len(instances), fleetNodes, fleetInstance(0), instances)
	}
	checkRecorded(t, prom, usedRules, ruleExprs, instances[0], end)

	defaults := map[string]string{}
	fleet := map[string]string{}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		all := v.AllValue
		if all == "" {
			all = ".*"
		}
		defaults[v.Name], fleet[v.Name] = all, all
	}
	defaults["instance"] = promRegexpEscape(instances[0])
	var esc []string
	for _, in := range instances {
		esc = append(esc, promRegexpEscape(in))
	}
	fleet["instance"] = "(" + strings.Join(esc, "|") + ")"

	// Every panel target, with both choices of instances.
	type job struct {
		row   int
		p     panel
		tg    target
		fleet bool
	}
	var rows []*panelRow
	var jobs []job
	for _, top := range d.Panels {
		for _, p := range append([]panel{top}, top.Panels...) {
			if p.Type == "row" || len(p.Targets) == 0 {
				continue
			}
			rows = append(rows, &panelRow{p: p, collapsed: p.ID != top.ID && top.Collapsed})
			for _, tg := range p.Targets {
				jobs = append(jobs, job{len(rows) - 1, p, tg, false}, job{len(rows) - 1, p, tg, true})
			}
		}
	}
	var mu sync.Mutex
	results := map[string][]promResult{} // of instant queries, by resultKey
	resultKey := func(p panel, tg target, fleet bool) string { return fmt.Sprintf("%d/%s/%v", p.ID, tg.RefID, fleet) }
	work := make(chan job)
	for range 2 {
		wg.Go(func() {
			for j := range work {
				vars := defaults
				if j.fleet {
					vars = fleet
				}
				t0 := time.Now()
				a, plan, err := runTarget(prom, j.p, j.tg, vars, span, end)
				took := time.Since(t0)
				mu.Lock()
				r := rows[j.row]
				switch {
				case err != nil:
					t.Errorf("panel %d %q target %s: %v", j.p.ID, j.p.Title, j.tg.RefID, err)
				case a.Data.Stats.Samples.TotalQueryableSamples == 0:
					t.Errorf("panel %d %q target %s read no samples (fleet=%v): the synthetic data lacks what it queries: %s", j.p.ID, j.p.Title, j.tg.RefID, j.fleet, j.tg.Expr)
				}
				if err == nil {
					c := &r.defaults
					if j.fleet {
						c = &r.fleet
					}
					c.total += a.Data.Stats.Samples.TotalQueryableSamples
					c.peak = max(c.peak, a.Data.Stats.Samples.PeakSamples)
					c.series += len(a.Data.Result)
					c.took += took
					if plan.instant {
						results[resultKey(j.p, j.tg, j.fleet)] = a.Data.Result
					}
					kind := "instant"
					if !plan.instant {
						kind = "range/" + shortDuration(plan.step)
					}
					if !strings.Contains(r.kinds, kind) {
						r.kinds = strings.TrimPrefix(r.kinds+","+kind, ",")
					}
				}
				mu.Unlock()
			}
		})
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
	queried := time.Now()
	checkFirstScreen(t, d, func(p panel, tg target, fleet bool) []promResult { return results[resultKey(p, tg, fleet)] })

	// The table, and the projection to fleetTarget nodes: every series the
	// fleet queries read belongs to one node, so samples grow linearly
	// with nodes. With one instance selected a panel reads one node's
	// series however large the fleet.
	scale := int64(fleetTarget / fleetNodes)
	var b strings.Builder
	fmt.Fprintf(&b, "samples read per panel (totalQueryableSamples, all its targets), %v range ending now, data every %v; default = instance %s; "+
		"fleet = all %d instances; proj = fleet × %d (%d nodes), peak = largest peakSamples of a target × %d; limit %d (--query.max-samples); "+
		"series and time: result series and query time with every instance\n",
		span, fleetStep, instances[0], fleetNodes, scale, fleetTarget, scale, maxSamples)
	fmt.Fprintf(&b, "%-4s %-52s %-10s %10s %11s %8s %13s %13s %7s %s\n", "id", "panel", "query", "default",
		fmt.Sprintf("fleet(%d)", fleetNodes), "series", fmt.Sprintf("proj(%d)", fleetTarget), fmt.Sprintf("peak(%d)", fleetTarget), "time", "")
	var sumDefault, sumFleet int64
	for _, r := range rows {
		r.projTotal = r.fleet.total * scale
		r.projPk = r.fleet.peak * scale
		verdict := "ok"
		if r.projTotal > maxSamples || r.projPk > maxSamples || r.defaults.total > maxSamples {
			verdict = "OVER THE LIMIT"
			t.Errorf("panel %d %q would read %d samples on %d nodes (peak %d), over --query.max-samples %d", r.p.ID, r.p.Title, r.projTotal, fleetTarget, r.projPk, maxSamples)
		}
		title := r.p.Title
		if r.collapsed {
			title += " (collapsed)"
		}
		if len(title) > 52 {
			title = title[:51] + "…"
		}
		fmt.Fprintf(&b, "%-4d %-52s %-10s %10d %11d %8d %13d %13d %7s %s\n", r.p.ID, title, r.kinds, r.defaults.total, r.fleet.total, r.fleet.series, r.projTotal, r.projPk, r.fleet.took.Round(time.Millisecond), verdict)
		sumDefault += r.defaults.total
		sumFleet += r.fleet.total
	}
	fmt.Fprintf(&b, "%-4s %-52s %-10s %10d %11d %8s %13d\n", "", "whole dashboard (every panel, every target)", "", sumDefault, sumFleet, "", sumFleet*scale)
	fmt.Fprintf(&b, "%d samples in %d files (%v to generate), imported in %v, queried in %v; total %v",
		written, len(files), generated.Sub(began).Round(time.Millisecond), imported.Sub(generated).Round(time.Millisecond),
		queried.Sub(imported).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	t.Log("\n" + b.String())
}

// shortDuration writes d as Grafana does: 1m, 30s, 2h.
func shortDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

// checkFirstScreen checks what the first screen's tables show: with the
// default instance (node 0), its php-fpm socket, full, tops the fill
// ranking; with every instance selected, the drop ranking lists exactly
// the listeners dropping now (not node 13's, whose episode ended).
func checkFirstScreen(t *testing.T, d dashboard, result func(panel, target, bool) []promResult) {
	t.Helper()
	tables := firstScreenTables(d)
	top := func(rs []promResult) (map[string]string, float64) {
		best, bestV := map[string]string(nil), math.Inf(-1)
		for _, r := range rs {
			if len(r.Value) == 2 {
				s, _ := r.Value[1].(string)
				if v, err := strconv.ParseFloat(s, 64); err == nil && v > bestV {
					best, bestV = r.Metric, v
				}
			}
		}
		return best, bestV
	}
	if rt, ok := tables["fill ratio"]; ok {
		m, v := top(result(rt.p, rt.tg, false))
		if m["listener"] != "/run/php/php-fpm.sock" || m["pod"] == "" || m["container"] != "php-fpm" || m["process"] != "php-fpm8.2" || v < 1 {
			t.Errorf("panel %d %q with the default instance: top listener %v at %v, want shop/web's php-fpm socket, full (1)", rt.p.ID, rt.p.Title, m, v)
		}
	}
	if rt, ok := tables["drop rate"]; ok {
		var got []string
		for _, r := range result(rt.p, rt.tg, true) {
			got = append(got, r.Metric["instance"]+" "+r.Metric["listener"])
		}
		sort.Strings(got)
		want := []string{fleetInstance(7) + " [::]:8080", fleetInstance(34) + " 0.0.0.0:443", fleetInstance(42) + " [::]:10250"}
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("panel %d %q with every instance: %q, want the listeners dropping now %q", rt.p.ID, rt.p.Title, got, want)
		}
	}
}

// dashboardSpan is the length of the dashboard's default time range
// ("now-6h" to "now").
func dashboardSpan(d dashboard) (time.Duration, error) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		return 0, err
	}
	var tr struct {
		Time struct{ From, To string } `json:"time"`
	}
	if err := json.Unmarshal(raw, &tr); err != nil {
		return 0, err
	}
	if tr.Time.To != "now" || !strings.HasPrefix(tr.Time.From, "now-") {
		return 0, fmt.Errorf("dashboard %q: default time range %s to %s; want now-<duration> to now", d.Title, tr.Time.From, tr.Time.To)
	}
	return parseGrafanaDuration(strings.TrimPrefix(tr.Time.From, "now-"))
}

// runTarget sends one target as Grafana would, with vars for the
// dashboard's variables.
func runTarget(prom promClient, p panel, tg target, vars map[string]string, span time.Duration, end time.Time) (*promAnswer, queryPlan, error) {
	plan, err := planQuery(p, tg, span)
	if err != nil {
		return nil, plan, err
	}
	expr, err := grafanaExpr(tg.Expr, vars, plan, span)
	if err != nil {
		return nil, plan, err
	}
	if plan.instant {
		a, err := prom.instant(expr, end)
		return a, plan, err
	}
	// Grafana aligns the range to the step.
	from := end.Add(-span).Truncate(plan.step)
	to := end.Truncate(plan.step)
	a, err := prom.ranged(expr, from, to, plan.step)
	return a, plan, err
}

// variableValues lists a label_values variable's values as Grafana would,
// sorted, with the variables before it at All.
func variableValues(prom promClient, d dashboard, name string, end time.Time) ([]string, error) {
	i := slices.IndexFunc(d.Templating.List, func(v variable) bool { return v.Name == name })
	if i < 0 {
		return nil, fmt.Errorf("no variable %s", name)
	}
	m := labelValuesQuery.FindStringSubmatch(d.Templating.List[i].queryText())
	if m == nil {
		return nil, fmt.Errorf("variable %s is not label_values(...)", name)
	}
	sel := varRef.ReplaceAllString(m[1], ".*")
	a, err := prom.instant(fmt.Sprintf("count by (%s) (last_over_time(%s[%ds]))", m[2], sel, int64(fleetSpan/time.Second)), end)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range a.Data.Result {
		out = append(out, r.Metric[m[2]])
	}
	sort.Strings(out)
	return out, nil
}

// ruleExpressions maps each recording rule of rulesFile to its expression.
func ruleExpressions(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				out[r.Record] = r.Expr
			}
		}
	}
	return out
}

// inlineRules replaces references to recorded series by their rules'
// expressions, so the expression reads raw metrics only.
func inlineRules(expr string, rules map[string]string) string {
	for range 5 {
		changed := false
		for name, e := range rules {
			re := regexp.MustCompile(`(^|[^A-Za-z0-9_:])` + regexp.QuoteMeta(name) + `($|[^A-Za-z0-9_:{\[])`)
			if re.MatchString(expr) {
				expr = re.ReplaceAllString(expr, "${1}("+strings.ReplaceAll(e, "$", "$$")+")${2}")
				changed = true
			}
		}
		if !changed {
			break
		}
	}
	return expr
}

// checkRecorded compares the recorded series the generator wrote for
// instance with what Prometheus computes from the raw samples with the
// rules' own expressions, at end: the same series (label sets) and values.
func checkRecorded(t *testing.T, prom promClient, names []string, rules map[string]string, instance string, end time.Time) {
	t.Helper()
	key := func(m map[string]string) string {
		var parts []string
		for k, v := range m {
			if k != "__name__" {
				parts = append(parts, k+"="+strconv.Quote(v))
			}
		}
		sort.Strings(parts)
		return strings.Join(parts, ",")
	}
	value := func(r promResult) float64 {
		if len(r.Value) != 2 {
			return math.NaN()
		}
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return math.NaN()
		}
		return v
	}
	checked := 0
	defer func() {
		t.Logf("recorded series checked against %s's expressions on %s: %d series of %s", rulesFile, instance, checked, strings.Join(names, ", "))
	}()
	for _, name := range names {
		expr := inlineRules(rules[name], rules)
		got, err := prom.instant(fmt.Sprintf(`%s{instance=%q}`, name, instance), end)
		if err != nil {
			t.Errorf("recorded %s: %v", name, err)
			continue
		}
		want, err := prom.instant(fmt.Sprintf(`(%s) and on (instance) up{instance=%q}`, expr, instance), end)
		if err != nil {
			t.Errorf("rule %s evaluated on the raw samples: %v", name, err)
			continue
		}
		wantBy := map[string]float64{}
		for _, r := range want.Data.Result {
			wantBy[key(r.Metric)] = value(r)
		}
		if len(want.Data.Result) == 0 {
			t.Errorf("rule %s: its expression returns nothing on the raw samples of %s", name, instance)
		}
		for _, r := range got.Data.Result {
			k := key(r.Metric)
			w, ok := wantBy[k]
			if !ok {
				t.Errorf("recorded %s{%s}: the rule's expression has no such series (the generator's labels differ from %s's)", name, k, rulesFile)
				continue
			}
			delete(wantBy, k)
			// Equal with Prometheus 2.x; the tolerance leaves room for 3.x,
			// whose ranges leave out their start (one sample fewer).
			if g := value(r); math.Abs(g-w) > 1e-9+0.1*math.Abs(w) {
				t.Errorf("recorded %s{%s} = %v, the rule's expression gives %v", name, k, g, w)
			}
			checked++
		}
		for k := range wantBy {
			t.Errorf("rule %s gives a series {%s} the generator did not write", name, k)
		}
	}
}
