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

// perListener tells alerts about one listener from alerts about a
// namespace or the exporter: their expression reads listener metrics.
var perListener = regexp.MustCompile(`listenq_(queue_|drops_total|syn_queue_length|socket:|listener:)`)

// perNetns tells rules about one network namespace: their expression reads
// per-namespace metrics (TcpExt counters, sysctls, omitted listeners, the
// namespace's own scrape success and info).
var perNetns = regexp.MustCompile(`listenq_(tcp_|somaxconn|netns_|netns:|listeners_omitted)`)

// Identity labels. Every per-namespace and per-listener series carries
// netns, namespace and pod; listener series also container. A node holds
// the host's namespace and one per pod, so these labels are what keeps two
// pods listening on the same address apart.
var (
	netnsIdentity    = []string{"netns", "namespace", "pod"}
	listenerIdentity = []string{"netns", "namespace", "pod", "container"}
)

// identityOf returns the identity labels an expression's series carry: a
// listener's, a namespace's, or none (exporter-level series).
func identityOf(expr string) []string {
	switch {
	case perListener.MatchString(expr):
		return listenerIdentity
	case perNetns.MatchString(expr):
		return netnsIdentity
	}
	return nil
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
		identity := identityOf(r.Expr)
		if identity == nil {
			continue
		}
		for _, m := range labelList.FindAllStringSubmatch(r.Expr, -1) {
			var labels []string
			for _, l := range strings.Split(m[2], ",") {
				if l = strings.TrimSpace(l); l != "" {
					labels = append(labels, l)
				}
			}
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
		// down to the pod and container when the alert is about one.
		want := []string{"instance"}
		wantSummary := []string{"instance"}
		if perListener.MatchString(a.Expr) {
			want = append(want, "listener", "process")
			if !strings.Contains(a.Expr, `proto="unix"`) {
				want = append(want, "port")
			}
		}
		want = append(want, identityOf(a.Expr)...)
		if id := identityOf(a.Expr); id != nil {
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
		identity := identityOf(a.Expr)
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
