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

func loadAlerts(t *testing.T) []rule {
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
	var alerts []rule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts = append(alerts, r)
			}
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
		// The description names what is in trouble, the summary where.
		want := []string{"instance"}
		if perListener.MatchString(a.Expr) {
			want = append(want, "listener", "process")
			if !strings.Contains(a.Expr, `proto="unix"`) {
				want = append(want, "port")
			}
		}
		for _, l := range want {
			if !strings.Contains(a.Annotations["description"], "$labels."+l) {
				t.Errorf("%s: description does not name the %s ($labels.%s)", a.Alert, l, l)
			}
		}
		if !strings.Contains(a.Annotations["summary"], "$labels.instance") {
			t.Errorf("%s: summary does not name the instance", a.Alert)
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
