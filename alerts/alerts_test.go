package alerts

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v2"

	"github.com/listenq/listenq_exporter/internal/testbin"
)

const (
	rulesFile   = "listenq.rules.yml"
	testsGlob   = "tests/*.yml"
	runbookFile = "../docs/runbook.md"
	runbookURL  = "https://github.com/listenq/listenq_exporter/blob/main/docs/runbook.md#"
)

func testFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(testsGlob)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no promtool unit tests match %s", testsGlob)
	}
	return files
}

func TestPromtoolCheckRules(t *testing.T) {
	out, err := exec.Command(testbin.RequireTool(t, "promtool", "prometheus"), "check", "rules", rulesFile).CombinedOutput()
	if err != nil {
		t.Errorf("promtool check rules %s: %v\n%s", rulesFile, err, out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	tool := testbin.RequireTool(t, "promtool", "prometheus")
	args := append([]string{"test", "rules"}, testFiles(t)...)
	out, err := exec.Command(tool, args...).CombinedOutput()
	if err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// loadRules returns every rule of the rules file, recording and alerting.
func loadRules(t *testing.T) []rule {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var rules []rule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules
}

func loadAlerts(t *testing.T) []rule {
	t.Helper()
	var alerts []rule
	for _, r := range loadRules(t) {
		if r.Alert != "" {
			alerts = append(alerts, r)
		}
	}
	if len(alerts) == 0 {
		t.Fatalf("%s has no alerts", rulesFile)
	}
	return alerts
}

// githubAnchor is the anchor GitHub gives a Markdown heading.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(runbookFile)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*#*\s*$`).FindAllStringSubmatch(string(raw), -1) {
		anchors[githubAnchor(m[1])] = true
	}
	return anchors
}

// perListener tells rules about listeners from rules about a namespace or
// the exporter: their expression reads listener metrics.
var perListener = regexp.MustCompile(`listenq_(queue_|drops_total|syn_queue_length|accept_wait_seconds|accepted_total|socket:|listener:)`)

// perNetns tells rules about one network namespace: their expression reads
// per-namespace metrics (TcpExt counters, sysctls, omitted listeners, the
// namespace's own scrape success and info, the sampler's errors reading
// it).
var perNetns = regexp.MustCompile(`listenq_(tcp_|somaxconn|netns_|netns:|listeners_omitted|sampler_errors)`)

// Identity labels. Every per-namespace and per-listener series carries
// netns, namespace and pod; listener series also container. A node holds
// the host's namespace and one per pod, so these labels are what keeps two
// pods listening on the same address apart.
var (
	netnsIdentity    = []string{"netns", "namespace", "pod"}
	listenerIdentity = []string{"netns", "namespace", "pod", "container"}
)

// exporterScoped are alerts about the exporter itself whose expressions
// also read a per-namespace metric, only to rule out a cause that another
// alert reports per namespace. They join on the exporter alone (cluster,
// job, instance) and their alerts carry no namespace labels.
var exporterScoped = map[string]string{
	"ListenqSamplerStalled": "no clean sampler round, unless a namespace's read errors explain it (ListenqSamplerFailing)",
}

// identityOf returns the identity labels a rule's result carries: a
// listener's, a namespace's, or none (exporter-level series). A rule that
// reads listener series but aggregates them by (…) a list without
// listener adds listeners up into their namespace.
func identityOf(r rule) []string {
	if _, ok := exporterScoped[r.Alert]; ok && r.Alert != "" {
		return nil
	}
	folds := false
	for _, m := range labelList.FindAllStringSubmatch(r.Expr, -1) {
		if m[1] == "by" && !slices.Contains(splitLabels(m[2]), "listener") {
			folds = true
		}
	}
	switch {
	case perListener.MatchString(r.Expr) && !folds:
		return listenerIdentity
	case perListener.MatchString(r.Expr) || perNetns.MatchString(r.Expr):
		return netnsIdentity
	}
	return nil
}

func splitLabels(list string) []string {
	var labels []string
	for _, l := range strings.Split(list, ",") {
		if l = strings.TrimSpace(l); l != "" {
			labels = append(labels, l)
		}
	}
	return labels
}

// labelList matches PromQL's label lists: by (…), without (…), on (…) and
// ignoring (…).
var labelList = regexp.MustCompile(`\b(by|without|on|ignoring)\s*\(([^)]*)\)`)

// TestRulesKeepIdentityLabels checks every rule's aggregations and joins:
// by (…) must name every identity label of the series it folds and
// without (…) none; on (…) must name netns, namespace and pod and
// ignoring (…) none of them. Otherwise the listeners (or namespaces) of
// two pods are added up, or joined across pods, and alerts lose the pod
// they are about.
func TestRulesKeepIdentityLabels(t *testing.T) {
	for _, r := range loadRules(t) {
		name := r.Record
		if name == "" {
			name = "alert " + r.Alert
		}
		identity := identityOf(r)
		if identity == nil {
			if _, ok := exporterScoped[r.Alert]; ok {
				// Joined on the exporter: the same exporter, never a
				// namespace's identity half-matched.
				for _, m := range labelList.FindAllStringSubmatch(r.Expr, -1) {
					if labels := splitLabels(m[2]); m[1] == "on" && (!slices.Contains(labels, "job") || !slices.Contains(labels, "instance")) {
						t.Errorf("%s: on (%s) must match the exporter (job, instance)", name, m[2])
					}
				}
			}
			continue
		}
		for _, m := range labelList.FindAllStringSubmatch(r.Expr, -1) {
			labels := splitLabels(m[2])
			// Aggregations keep the identity of the series they fold;
			// joins (a listener with its namespace, at most) match on the
			// namespace's.
			keep := identity
			if m[1] == "on" || m[1] == "ignoring" {
				keep = netnsIdentity
			}
			for _, l := range keep {
				listed := slices.Contains(labels, l)
				if listed != (m[1] == "by" || m[1] == "on") {
					t.Errorf("%s: %s (%s) loses %s, so series of different pods merge or cross: %s", name, m[1], m[2], l, strings.TrimSpace(r.Expr))
				}
			}
		}
	}
}

func TestAlertsAreLabelledAndDocumented(t *testing.T) {
	anchors := runbookAnchors(t)
	seen := map[string]bool{}
	for _, a := range loadAlerts(t) {
		if seen[a.Alert] {
			t.Errorf("alert %s defined twice", a.Alert)
		}
		seen[a.Alert] = true
		if !slices.Contains([]string{"critical", "warning", "info"}, a.Labels["severity"]) {
			t.Errorf("%s: severity %q, want critical, warning or info", a.Alert, a.Labels["severity"])
		}
		if d, err := model.ParseDuration(a.For); err != nil || d < model.Duration(time.Minute) {
			t.Errorf("%s: for: %q; every alert must wait for a sustained condition (at least 1m)", a.Alert, a.For)
		}
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(a.Annotations[k]) == "" {
				t.Errorf("%s: missing annotation %s", a.Alert, k)
			}
		}
		url := a.Annotations["runbook_url"]
		if anchor, ok := strings.CutPrefix(url, runbookURL); !ok || anchor != strings.ToLower(a.Alert) {
			t.Errorf("%s: runbook_url %q, want %s%s", a.Alert, url, runbookURL, strings.ToLower(a.Alert))
		} else if !anchors[anchor] {
			t.Errorf("%s: %s has no section with anchor #%s", a.Alert, runbookFile, anchor)
		}
		// The description names what is in trouble, the summary where,
		// down to the pod and container when the alert is about one. An
		// absent() alert is about targets that are not there: it has no
		// instance to name.
		var want, wantSummary []string
		if !strings.HasPrefix(strings.TrimSpace(a.Expr), "absent(") {
			want = append(want, "instance")
			wantSummary = append(wantSummary, "instance")
		}
		id := identityOf(a)
		if slices.Contains(id, "container") {
			want = append(want, "listener", "process")
			if !strings.Contains(a.Expr, `proto="unix"`) {
				want = append(want, "port")
			}
		}
		want = append(want, id...)
		if id != nil {
			wantSummary = append(wantSummary, "namespace", "pod")
			if slices.Contains(id, "container") {
				wantSummary = append(wantSummary, "container")
			}
		}
		for _, l := range want {
			if !strings.Contains(a.Annotations["description"], "$labels."+l) {
				t.Errorf("%s: description does not name the %s ($labels.%s)", a.Alert, l, l)
			}
		}
		for _, l := range wantSummary {
			if !strings.Contains(a.Annotations["summary"], "$labels."+l) {
				t.Errorf("%s: summary does not name the %s ($labels.%s)", a.Alert, l, l)
			}
		}
	}
}

type unitTests struct {
	EvaluationInterval string `yaml:"evaluation_interval"`
	Tests              []struct {
		AlertRuleTest []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestEveryAlertIsUnitTested requires, for every alert, a promtool test in
// which it fires with its annotations spelled out, and a for: boundary: an
// alert expected at one evaluation and absent one evaluation earlier.
func TestEveryAlertIsUnitTested(t *testing.T) {
	type evalCase struct {
		at     time.Duration
		alerts map[string]bool // label sets, canonicalised
	}
	cases := map[string][]evalCase{} // alertname -> evaluations, per test file and group
	steps := map[string]time.Duration{}
	for _, file := range testFiles(t) {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var ut unitTests
		if err := yaml.Unmarshal(raw, &ut); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		step := time.Minute
		if ut.EvaluationInterval != "" {
			d, err := model.ParseDuration(ut.EvaluationInterval)
			if err != nil {
				t.Fatalf("%s: evaluation_interval: %v", file, err)
			}
			step = time.Duration(d)
		}
		for i, tc := range ut.Tests {
			for _, at := range tc.AlertRuleTest {
				d, err := model.ParseDuration(at.EvalTime)
				if err != nil {
					t.Fatalf("%s: eval_time %q: %v", file, at.EvalTime, err)
				}
				set := map[string]bool{}
				for _, e := range at.ExpAlerts {
					if len(e.ExpAnnotations) == 0 {
						t.Errorf("%s: %s at %s: expected alert %v without exp_annotations", file, at.Alertname, at.EvalTime, e.ExpLabels)
					}
					keys := make([]string, 0, len(e.ExpLabels))
					for k, v := range e.ExpLabels {
						keys = append(keys, fmt.Sprintf("%s=%q", k, v))
					}
					sort.Strings(keys)
					set[strings.Join(keys, ",")] = true
				}
				key := fmt.Sprintf("%s\x00%s\x00%d", at.Alertname, file, i)
				cases[key] = append(cases[key], evalCase{time.Duration(d), set})
				steps[key] = step
			}
		}
	}

	for _, a := range loadAlerts(t) {
		fires, boundary := false, false
		for key, evals := range cases {
			if !strings.HasPrefix(key, a.Alert+"\x00") {
				continue
			}
			byTime := map[time.Duration]map[string]bool{}
			for _, e := range evals {
				byTime[e.at] = e.alerts
				if len(e.alerts) > 0 {
					fires = true
				}
			}
			for at, set := range byTime {
				before, ok := byTime[at-steps[key]]
				if !ok {
					continue
				}
				for labels := range set {
					if !before[labels] {
						boundary = true
					}
				}
			}
		}
		if !fires {
			t.Errorf("%s: no promtool test (%s) expects it to fire", a.Alert, testsGlob)
		}
		if !boundary {
			t.Errorf("%s: no promtool test checks its for: boundary (absent one evaluation before it is expected)", a.Alert)
		}
	}
}

// expectedFirings returns, per alert name, the label sets each evaluation
// of the promtool tests expects to fire.
func expectedFirings(t *testing.T) map[string][][]map[string]string {
	t.Helper()
	out := map[string][][]map[string]string{}
	for _, file := range testFiles(t) {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var ut unitTests
		if err := yaml.Unmarshal(raw, &ut); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, tc := range ut.Tests {
			for _, at := range tc.AlertRuleTest {
				var eval []map[string]string
				for _, e := range at.ExpAlerts {
					eval = append(eval, e.ExpLabels)
				}
				out[at.Alertname] = append(out[at.Alertname], eval)
			}
		}
	}
	return out
}

// TestAlertsAreUnitTestedPerPod requires, for every alert about a listener
// or a network namespace, promtool tests in which it fires for a pod (with
// namespace and pod labels, and container for a listener) and for
// something outside any pod (those labels empty, as on the host); and for
// listener alerts, an evaluation in which two pods of different Kubernetes
// namespaces with the same listener and port fire as two alerts.
func TestAlertsAreUnitTestedPerPod(t *testing.T) {
	firings := expectedFirings(t)
	for _, a := range loadAlerts(t) {
		identity := identityOf(a)
		if identity == nil {
			continue
		}
		isListener := slices.Contains(identity, "container")
		var forPod, outsidePods, twoPods bool
		for _, eval := range firings[a.Alert] {
			for i, l := range eval {
				switch {
				case l["pod"] == "" && l["namespace"] == "":
					outsidePods = true
				case l["pod"] != "" && l["namespace"] != "" && (!isListener || l["container"] != ""):
					forPod = true
				}
				for _, m := range eval[i+1:] {
					if l["pod"] != "" && m["pod"] != "" && l["namespace"] != m["namespace"] &&
						l["listener"] == m["listener"] && l["port"] == m["port"] {
						twoPods = true
					}
				}
			}
		}
		if !forPod {
			want := "namespace and pod"
			if isListener {
				want = "namespace, pod and container"
			}
			t.Errorf("%s: no promtool test expects it to fire for a pod (with %s labels)", a.Alert, want)
		}
		if !outsidePods {
			t.Errorf("%s: no promtool test expects it to fire outside any pod (namespace and pod empty, as on the host)", a.Alert)
		}
		if isListener && !twoPods {
			t.Errorf("%s: no promtool test expects two pods in different Kubernetes namespaces with the same listener and port to fire as two alerts", a.Alert)
		}
	}
}

// The defaults the rules file is written for. docs/runbook.md ("Multi-cluster
// and job selection") says how to change both in a copy of the file.
const (
	// clusterLabel tells the clusters of a global view (Thanos, Mimir,
	// federation) apart. Every on (…) and by (…) list names it, as the
	// kubernetes-mixin does: series of two clusters never meet, and a
	// label absent on both sides matches, so one Prometheus without it is
	// unaffected.
	clusterLabel = "cluster"
	// jobMatcher selects the exporter's targets. Every selector carries
	// it, so the rules never read another job's series of the same name.
	jobMatcher = `job=~".*listenq.*"`
)

// TestRulesKeepTheCluster checks every join and aggregation: on (…) and
// by (…) must name the cluster label, ignoring (…) and without (…) must
// not (they would drop or ignore it). Queries in annotations (template
// query) must select the alert's own cluster and job.
func TestRulesKeepTheCluster(t *testing.T) {
	querySel := regexp.MustCompile(`printf "([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}"]*)\}"`)
	for _, r := range loadRules(t) {
		name := r.Record
		if name == "" {
			name = "alert " + r.Alert
		}
		for _, m := range labelList.FindAllStringSubmatch(r.Expr, -1) {
			listed := slices.Contains(splitLabels(m[2]), clusterLabel)
			if listed != (m[1] == "by" || m[1] == "on") {
				t.Errorf("%s: %s (%s) must %sname %s, so that two clusters' series never meet: %s", name, m[1], m[2], map[bool]string{true: "not ", false: ""}[listed], clusterLabel, strings.TrimSpace(r.Expr))
			}
		}
		for k, text := range r.Annotations {
			for _, m := range querySel.FindAllStringSubmatch(text, -1) {
				for _, want := range []string{clusterLabel + "=%q", "job=%q", "instance=%q"} {
					if !strings.Contains(m[2], want) {
						t.Errorf("%s: annotation %s queries %s{%s} without %s: it may read another target's or cluster's series", name, k, m[1], m[2], want)
					}
				}
			}
		}
	}
}

// TestRulesSelectTheJob checks that every selector of every rule carries
// the job matcher.
func TestRulesSelectTheJob(t *testing.T) {
	n := 0
	for _, r := range loadRules(t) {
		name := r.Record
		if name == "" {
			name = "alert " + r.Alert
		}
		sels, err := selectors(r.Expr)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, sel := range sels {
			n++
			if !slices.Contains(sel.matchers, jobMatcher) {
				t.Errorf("%s: selector %s{%s} lacks %s", name, sel.metric, strings.Join(sel.matchers, ","), jobMatcher)
			}
		}
	}
	if n == 0 {
		t.Fatal("found no selectors in the rules")
	}
}

// selector is one vector selector of a PromQL expression: its metric name
// ("" for a bare {…}) and its matchers, each written name, operator and
// quoted value without spaces (job=~".*listenq.*").
type selector struct {
	metric   string
	matchers []string
}

// PromQL aggregations: with by (…) or without (…) between their name and
// their arguments, they are followed by neither ( nor {.
var promqlAggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
}

// PromQL words that are neither metric names nor functions.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true, "Inf": true, "NaN": true,
}

// selectors lists the vector selectors of a PromQL expression. It knows
// just enough PromQL for the rules file: strings, numbers, durations in
// […], label lists after by/without/on/ignoring/group_left/group_right,
// function calls and selectors.
func selectors(expr string) ([]selector, error) {
	var sels []selector
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
	isIdent := func(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }
	skipSpace := func(i int) int {
		for i < len(expr) && strings.ContainsRune(" \t\r\n", rune(expr[i])) {
			i++
		}
		return i
	}
	readString := func(i int) (int, error) { // i at the opening quote; returns the index after the closing one
		q := expr[i]
		for j := i + 1; j < len(expr); j++ {
			switch {
			case expr[j] == '\\' && q != '`':
				j++
			case expr[j] == q:
				return j + 1, nil
			}
		}
		return 0, fmt.Errorf("unterminated string at %d in %q", i, expr)
	}
	readMatchers := func(i int) ([]string, int, error) { // i at '{'
		var ms []string
		i++
		for {
			i = skipSpace(i)
			if i >= len(expr) {
				return nil, 0, fmt.Errorf("unterminated {…} in %q", expr)
			}
			if expr[i] == '}' {
				return ms, i + 1, nil
			}
			if expr[i] == ',' {
				i++
				continue
			}
			start := i
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
			label := expr[start:i]
			i = skipSpace(i)
			opStart := i
			for i < len(expr) && strings.ContainsRune("=!~", rune(expr[i])) {
				i++
			}
			op := expr[opStart:i]
			i = skipSpace(i)
			if label == "" || op == "" || i >= len(expr) || !strings.ContainsRune("\"'`", rune(expr[i])) {
				return nil, 0, fmt.Errorf("cannot read the matcher at %d in %q", start, expr)
			}
			end, err := readString(i)
			if err != nil {
				return nil, 0, err
			}
			ms = append(ms, label+op+expr[i:end])
			i = end
		}
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end, err := readString(i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '[':
			end := strings.IndexByte(expr[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unterminated […] in %q", expr)
			}
			i += end + 1
		case c == '{':
			ms, end, err := readMatchers(i)
			if err != nil {
				return nil, err
			}
			sels = append(sels, selector{"", ms})
			i = end
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
			word := expr[start:i]
			j := skipSpace(i)
			switch {
			case j < len(expr) && expr[j] == '(' && promqlKeywords[word]:
				// by (…), on (…) and the like: a label list.
				end := strings.IndexByte(expr[j:], ')')
				if end < 0 {
					return nil, fmt.Errorf("unterminated label list in %q", expr)
				}
				i = j + end + 1
			case j < len(expr) && expr[j] == '(':
				// A function or an aggregation: its arguments follow.
				i = j + 1
			case promqlKeywords[word] || promqlAggregations[word]:
			default:
				sel := selector{metric: word}
				if j < len(expr) && expr[j] == '{' {
					ms, end, err := readMatchers(j)
					if err != nil {
						return nil, err
					}
					sel.matchers, i = ms, end
				}
				sels = append(sels, sel)
			}
		default:
			i++
		}
	}
	return sels, nil
}

func TestSelectors(t *testing.T) {
	got, err := selectors(`max without (inode) (a{job=~".*listenq.*",proto="tcp"} / on (cluster, job) group_left () b:c{x!="}"} offset 5m) > bool 0.8 unless rate(d[5m]) or absent(up) and {job="j"} + 1e3`)
	if err != nil {
		t.Fatal(err)
	}
	want := []selector{
		{"a", []string{`job=~".*listenq.*"`, `proto="tcp"`}},
		{"b:c", []string{`x!="}"`}},
		{"d", nil},
		{"up", nil},
		{"", []string{`job="j"`}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("selectors:\n got %v\nwant %v", got, want)
	}
}

// TestRangesAreShort keeps every range of the rules at an hour or less:
// rules run at every evaluation over every series they select, and a range
// of a day over every target (the old ListenqExporterDown) reads a day of
// samples each time.
func TestRangesAreShort(t *testing.T) {
	rangeRE := regexp.MustCompile(`\[([0-9][0-9a-z]*)(?::[0-9a-z]*)?\]`)
	for _, r := range loadRules(t) {
		for _, m := range rangeRE.FindAllStringSubmatch(r.Expr, -1) {
			d, err := model.ParseDuration(m[1])
			if err != nil {
				t.Errorf("%s%s: range %s: %v", r.Record, r.Alert, m[0], err)
			} else if time.Duration(d) > time.Hour {
				t.Errorf("%s%s: range %s is longer than an hour", r.Record, r.Alert, m[0])
			}
		}
	}
}

// TestRecordingRulesAreUsed requires every recording rule to be read by
// another rule or by the dashboard: a recorded series nobody reads costs
// a series per listener or namespace for nothing.
func TestRecordingRulesAreUsed(t *testing.T) {
	dashboard, err := os.ReadFile("../dashboards/listenq.json")
	if err != nil {
		t.Fatal(err)
	}
	uses := func(text, name string) bool {
		for i := 0; ; {
			j := strings.Index(text[i:], name)
			if j < 0 {
				return false
			}
			end := i + j + len(name)
			if end == len(text) || !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:", rune(text[end])) {
				return true
			}
			i = end
		}
	}
	rules := loadRules(t)
	for _, r := range rules {
		if r.Record == "" {
			continue
		}
		used := uses(string(dashboard), r.Record)
		for _, o := range rules {
			if o.Record != r.Record && uses(o.Expr, r.Record) {
				used = true
			}
		}
		if !used {
			t.Errorf("recording rule %s is used by no rule and not by dashboards/listenq.json; remove it", r.Record)
		}
	}
}

// onePageFile is the promtool test of a full unix socket.
const onePageFile = "tests/one_page_per_problem.yml"

// TestFullUnixSocketPagesOnce checks that the test of a full unix socket
// evaluates every critical alert at each of its evaluation times, and
// that exactly one of them fires each time: one page per problem.
func TestFullUnixSocketPagesOnce(t *testing.T) {
	var critical []string
	for _, a := range loadAlerts(t) {
		if a.Labels["severity"] == "critical" {
			critical = append(critical, a.Alert)
		}
	}
	raw, err := os.ReadFile(onePageFile)
	if err != nil {
		t.Fatal(err)
	}
	var ut unitTests
	if err := yaml.Unmarshal(raw, &ut); err != nil {
		t.Fatalf("%s: %v", onePageFile, err)
	}
	evaluated := map[string]map[string]bool{} // eval_time -> alert names
	pages := map[string]int{}
	for _, tc := range ut.Tests {
		for _, at := range tc.AlertRuleTest {
			if evaluated[at.EvalTime] == nil {
				evaluated[at.EvalTime] = map[string]bool{}
			}
			evaluated[at.EvalTime][at.Alertname] = true
			for _, e := range at.ExpAlerts {
				if e.ExpLabels["severity"] == "critical" {
					pages[at.EvalTime]++
				}
			}
		}
	}
	if len(evaluated) == 0 {
		t.Fatalf("%s evaluates nothing", onePageFile)
	}
	for at, names := range evaluated {
		for _, c := range critical {
			if !names[c] {
				t.Errorf("%s: at %s, critical alert %s is not evaluated", onePageFile, at, c)
			}
		}
		if pages[at] != 1 {
			t.Errorf("%s: at %s, %d critical alerts are expected to fire, want exactly 1", onePageFile, at, pages[at])
		}
	}
}
