package dashboards

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v2"

	"github.com/listenq/listenq_exporter/internal/testbin"
	"github.com/listenq/listenq_exporter/internal/testns"
)

const (
	dashboardFile = "listenq.json"
	rulesFile     = "../alerts/listenq.rules.yml"
	// datasourceRef is how every panel and query must name its data source,
	// so the dashboard imports as is into any Grafana.
	datasourceRef = "${datasource}"
)

func TestMain(m *testing.M) { os.Exit(testbin.Wrap(m).Run()) }

// pendingExporterMetrics are the metrics the dashboard and the rules use
// that the exporter does not serve yet (network-namespace discovery and
// container-runtime identity are being added to it). TestMetricsExist logs
// these instead of failing when a scrape lacks them. Remove each name once
// the exporter serves it (the test says so when it sees one).
var pendingExporterMetrics = map[string]bool{}

// prometheusMetrics are series Prometheus itself writes for every target;
// the dashboard and rules may use them although no exporter serves them.
var prometheusMetrics = map[string]bool{"up": true}

// exporterMetrics are the exporter's own series: about the exporter
// process, not about a network namespace or a listener, so they carry no
// netns, namespace or pod label and are not filtered on them. Every other
// listenq_ metric (and every recording rule) is about a namespace or a
// listener and carries netns, namespace and pod.
var exporterMetrics = map[string]bool{
	"listenq_exporter_build_info":               true,
	"listenq_scrape_collector_success":          true,
	"listenq_scrape_collector_duration_seconds": true,
	"listenq_netns_discovered":                  true,
	"listenq_netns_discovery_duration_seconds":  true,
	"listenq_runtime_up":                        true,
	"listenq_sampler_round_duration_seconds":    true,
}

// identityVars are the dashboard variables that pick pods. Host series
// have namespace="" and pod="", so their All value must match "".
var identityVars = []string{"namespace", "pod"}

// --- the dashboard ---------------------------------------------------------

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID              int                      `json:"id"`
	Type            string                   `json:"type"`
	Title           string                   `json:"title"`
	Description     string                   `json:"description"`
	Datasource      json.RawMessage          `json:"datasource"`
	Targets         []target                 `json:"targets"`
	Panels          []panel                  `json:"panels"` // a collapsed row's panels
	Repeat          string                   `json:"repeat"`
	Transformations []transformation         `json:"transformations"`
	GridPos         struct{ H, W, X, Y int } `json:"gridPos"`
	Collapsed       bool                     `json:"collapsed"`
	Interval        string                   `json:"interval"`      // min interval of its queries
	MaxDataPoints   int                      `json:"maxDataPoints"` // 0: the panel's width in pixels
}

type target struct {
	RefID        string          `json:"refId"`
	Expr         string          `json:"expr"`
	Datasource   json.RawMessage `json:"datasource"`
	LegendFormat string          `json:"legendFormat"`
	Instant      bool            `json:"instant"`
	Range        bool            `json:"range"`
	Interval     string          `json:"interval"` // min step
}

type transformation struct {
	ID      string `json:"id"`
	Options struct {
		IndexByName map[string]int `json:"indexByName"`
	} `json:"options"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Datasource json.RawMessage `json:"datasource"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
	Current    json.RawMessage `json:"current"`
}

// queryText returns a query variable's query, which Grafana stores either
// as a string or as {"query": "..."}.
func (v variable) queryText() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	if json.Unmarshal(v.Query, &o) == nil && o.Query != "" {
		return o.Query
	}
	return v.Definition
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardFile, err)
	}
	return d
}

// allPanels flattens rows, including the panels inside collapsed rows.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// query is one PromQL expression of the dashboard and where it comes from.
type query struct {
	where string
	expr  string // Grafana variables already substituted
}

var (
	// Grafana's built-in variables, replaced by values of the right kind.
	builtinVars = map[string]string{
		"__rate_interval": "1m",
		"__interval":      "1m",
		"__interval_ms":   "60000",
		"__range":         "1h",
		"__range_s":       "3600",
		"__range_ms":      "3600000",
	}
	// $name, ${name}, ${name:format} and [[name]].
	varRef = regexp.MustCompile(`\$\{([A-Za-z_]\w*)(?::[^}]*)?\}|\[\[([A-Za-z_]\w*)(?::[^\]]*)?\]\]|\$([A-Za-z_]\w*)`)
	// label_values(selector, label) and query_result(expr) variable queries.
	labelValuesQuery = regexp.MustCompile(`^\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*$`)
	queryResultQuery = regexp.MustCompile(`^\s*query_result\((.*)\)\s*$`)
)

// substitute replaces Grafana variables by values PromQL accepts: durations
// for the built-ins, a regexp matching anything for the dashboard's own
// variables (they are used in =~ matchers, escaped by Grafana).
func substitute(expr string, defined map[string]bool) (string, error) {
	var errs []error
	out := varRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := varRef.FindStringSubmatch(ref)
		name := m[1] + m[2] + m[3]
		if v, ok := builtinVars[name]; ok {
			return v
		}
		if defined[name] {
			return ".+"
		}
		errs = append(errs, fmt.Errorf("variable %s is not defined in the dashboard's templating", ref))
		return ref
	})
	return out, errors.Join(errs...)
}

// dashboardQueries returns every PromQL expression of the dashboard: panel
// targets and the selectors of query variables.
func dashboardQueries(t *testing.T, d dashboard) []query {
	t.Helper()
	defined := map[string]bool{}
	for _, v := range d.Templating.List {
		defined[v.Name] = true
	}
	var qs []query
	add := func(where, expr string) {
		s, err := substitute(expr, defined)
		if err != nil {
			t.Errorf("%s: %v", where, err)
		}
		qs = append(qs, query{where, s})
	}
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %d %q target %s has no expression", p.ID, p.Title, tg.RefID)
				continue
			}
			add(fmt.Sprintf("panel %d %q target %s", p.ID, p.Title, tg.RefID), tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := v.queryText()
		where := fmt.Sprintf("variable %s", v.Name)
		switch {
		case labelValuesQuery.MatchString(q):
			add(where, labelValuesQuery.FindStringSubmatch(q)[1])
		case queryResultQuery.MatchString(q):
			add(where, queryResultQuery.FindStringSubmatch(q)[1])
		default:
			t.Errorf("%s: query %q is neither label_values(selector, label) nor query_result(expr)", where, q)
		}
	}
	return qs
}

func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	if strings.TrimSpace(d.UID) == "" || len(d.UID) > 40 {
		t.Errorf("uid %q: want a fixed, non-empty uid of at most 40 characters", d.UID)
	}
	if strings.TrimSpace(d.Title) == "" {
		t.Error("dashboard has no title")
	}

	ids := map[int]string{}
	for _, p := range allPanels(d.Panels) {
		if p.ID <= 0 {
			t.Errorf("panel %q has no id", p.Title)
		} else if other, dup := ids[p.ID]; dup {
			t.Errorf("panel id %d used by both %q and %q", p.ID, other, p.Title)
		}
		ids[p.ID] = p.Title
		if strings.TrimSpace(p.Title) == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if len(strings.Fields(p.Description)) < 5 {
			t.Errorf("panel %d %q: description %q should explain its metric in a sentence", p.ID, p.Title, p.Description)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %d %q has no queries", p.ID, p.Title)
		}
		checkDatasource(t, fmt.Sprintf("panel %d %q", p.ID, p.Title), p.Datasource, true)
		for _, tg := range p.Targets {
			checkDatasource(t, fmt.Sprintf("panel %d %q target %s", p.ID, p.Title, tg.RefID), tg.Datasource, false)
		}
		if p.Repeat != "" && !slices.ContainsFunc(d.Templating.List, func(v variable) bool { return v.Name == p.Repeat }) {
			t.Errorf("panel %d %q repeats over undefined variable %q", p.ID, p.Title, p.Repeat)
		}
	}

	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		if _, dup := vars[v.Name]; dup {
			t.Errorf("variable %s defined twice", v.Name)
		}
		vars[v.Name] = v
	}
	if ds, ok := vars["datasource"]; !ok || ds.Type != "datasource" || ds.queryText() != "prometheus" {
		t.Errorf("want a variable datasource of type datasource with query prometheus, got %+v", ds)
	}
	for _, name := range []string{"job", "instance"} {
		v, ok := vars[name]
		if !ok || v.Type != "query" || !labelValuesQuery.MatchString(v.queryText()) {
			t.Errorf("want a query variable %s using label_values(...), got %+v", name, v)
			continue
		}
		if got := labelValuesQuery.FindStringSubmatch(v.queryText())[2]; got != name {
			t.Errorf("variable %s lists values of label %s", name, got)
		}
		checkDatasource(t, "variable "+name, v.Datasource, true)
	}
	checkInstanceDefault(t, vars["instance"])

	// namespace and pod pick pods; pod lists the pods of the picked
	// namespaces, and the listener picker the listeners of the picked pods.
	// Their All value must match the host's empty labels too.
	for _, name := range identityVars {
		v, ok := vars[name]
		if !ok || v.Type != "query" || !labelValuesQuery.MatchString(v.queryText()) {
			t.Errorf("want a query variable %s using label_values(...), got %+v", name, v)
			continue
		}
		if got := labelValuesQuery.FindStringSubmatch(v.queryText())[2]; got != name {
			t.Errorf("variable %s lists values of label %s", name, got)
		}
		checkDatasource(t, "variable "+name, v.Datasource, true)
		if !v.IncludeAll {
			t.Errorf("variable %s: want includeAll, so the dashboard can show every pod and the host", name)
		}
		if re, err := regexp.Compile("^(?:" + v.AllValue + ")$"); err != nil || v.AllValue == "" || !re.MatchString("") || !re.MatchString("shop") {
			t.Errorf("variable %s: allValue %q must be a regexp matching every value and the empty one (host series have %s=\"\"), such as \".*\"", name, v.AllValue, name)
		}
	}
	for name, uses := range map[string][]string{"pod": {"namespace"}, "listener": {"namespace", "pod"}} {
		for _, u := range uses {
			if v, ok := vars[name]; ok && !usesVar(v.queryText(), u) {
				t.Errorf("variable %s does not depend on $%s: %s", name, u, v.queryText())
			}
		}
	}
	// A variable's query can only use variables Grafana has resolved
	// before it: those defined earlier in the list.
	for i, v := range d.Templating.List {
		for _, m := range varRef.FindAllStringSubmatch(v.queryText(), -1) {
			ref := m[1] + m[2] + m[3]
			if _, builtin := builtinVars[ref]; builtin {
				continue
			}
			if !slices.ContainsFunc(d.Templating.List[:i], func(w variable) bool { return w.Name == ref }) {
				t.Errorf("variable %s uses $%s, which is not defined before it", v.Name, ref)
			}
		}
	}

	// Every query selects on the job and instance variables, so the
	// dashboard shows what the pickers say.
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			if !usesVar(tg.Expr, "job") || !usesVar(tg.Expr, "instance") {
				t.Errorf("panel %d %q target %s does not filter on $job and $instance: %s", p.ID, p.Title, tg.RefID, tg.Expr)
			}
			if regexp.MustCompile(`\[\s*\d+[smhdwy]\s*[\]:]`).MatchString(tg.Expr) {
				t.Errorf("panel %d %q target %s uses a fixed range; use $__rate_interval (or $__range): %s", p.ID, p.Title, tg.RefID, tg.Expr)
			}
			if strings.Contains(tg.Expr, "rate(") && !strings.Contains(tg.Expr, "$__rate_interval") {
				t.Errorf("panel %d %q target %s: rates should use $__rate_interval: %s", p.ID, p.Title, tg.RefID, tg.Expr)
			}
		}
	}
}

// checkInstanceDefault requires the instance variable to open the dashboard
// on one instance: a fleet of a thousand nodes selected by default would
// make every panel read a thousand nodes' series. Grafana falls back to the
// variable's first option when the saved value is missing or gone, and
// with includeAll that option is All (Scenes: defaultToAll), so includeAll
// must be off; the saved current value, if any, must be a single instance.
// Several, or all, can still be picked (multi).
func checkInstanceDefault(t *testing.T, v variable) {
	t.Helper()
	if v.IncludeAll {
		t.Errorf("variable instance: includeAll makes All its default (the first option); want includeAll false so the dashboard opens on one instance")
	}
	if len(v.Current) == 0 || string(v.Current) == "null" {
		return
	}
	var cur struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(v.Current, &cur); err != nil {
		t.Errorf("variable instance: current %s: %v", v.Current, err)
		return
	}
	var values []string
	var one string
	switch {
	case len(cur.Value) == 0:
	case json.Unmarshal(cur.Value, &one) == nil:
		values = []string{one}
	case json.Unmarshal(cur.Value, &values) == nil:
	default:
		t.Errorf("variable instance: current value %s is neither a string nor a list", cur.Value)
	}
	if len(values) > 1 || slices.ContainsFunc(values, func(s string) bool { return s == "$__all" || strings.ContainsAny(s, "*|") }) {
		t.Errorf("variable instance: saved default %v; want one instance (or none: Grafana then picks the first)", values)
	}
}

// TestDashboardQueriesAreBounded checks that no panel returns more series
// the more instances are selected: every query's result is bounded by
// topk/bottomk, by an aggregation that folds every per-node label (a
// count, a sum by state), or by "and" with such a result. With one
// instance this changes nothing; with a fleet selected a table or graph
// shows the worst N rather than tens of thousands of rows and lines.
// Graphs also set a minimum interval, so the query step (and with it the
// samples a graph reads) does not grow with the viewer's screen width.
func TestDashboardQueriesAreBounded(t *testing.T) {
	d := loadDashboard(t)
	defined := map[string]bool{}
	for _, v := range d.Templating.List {
		defined[v.Name] = true
	}
	for _, p := range allPanels(d.Panels) {
		if p.Type == "row" {
			continue
		}
		if p.Type == "timeseries" && p.Interval == "" && !slices.ContainsFunc(p.Targets, func(tg target) bool { return tg.Interval != "" }) {
			t.Errorf("panel %d %q: a graph needs a min interval (\"interval\"), so its step does not shrink with the screen width", p.ID, p.Title)
		}
		for _, tg := range p.Targets {
			where := fmt.Sprintf("panel %d %q target %s", p.ID, p.Title, tg.RefID)
			expr, err := substitute(tg.Expr, defined)
			if err != nil {
				continue // TestDashboardStructure reports it
			}
			n, err := parsePromQL(expr)
			if err != nil {
				t.Errorf("%s: cannot parse %q: %v", where, tg.Expr, err)
				continue
			}
			if ok, why := bounded(n); !ok {
				t.Errorf("%s returns more series the more instances are selected (%s); bound it with topk/bottomk or an aggregation: %s", where, why, tg.Expr)
			}
		}
	}
}

// screenRows is the height of the first screen in grid rows (a 1080p
// display).
const screenRows = 24

// firstScreenRankings are the rankings the first screen must show: a
// table of the listeners topk of each recording rule.
var firstScreenRankings = map[string]string{
	"fill ratio": "listenq_listener:queue_fill_ratio:peak_max",
	"drop rate":  "listenq_listener:drops:rate5m",
}

// rankedTarget is the first-screen table target ranking listeners by one
// of firstScreenRankings.
type rankedTarget struct {
	p  panel
	tg target
}

// firstScreenTables finds, for each of firstScreenRankings, the table
// within the first screen with a target topk(…, <rule>{…}…).
func firstScreenTables(d dashboard) map[string]rankedTarget {
	out := map[string]rankedTarget{}
	for _, p := range d.Panels {
		if p.Type != "table" || p.GridPos.Y+p.GridPos.H > screenRows {
			continue
		}
		for what, rule := range firstScreenRankings {
			for _, tg := range p.Targets {
				e := strings.ReplaceAll(tg.Expr, " ", "")
				if _, seen := out[what]; !seen && strings.HasPrefix(e, "topk(") && strings.Contains(e, rule+"{") {
					out[what] = rankedTarget{p, tg}
				}
			}
		}
	}
	return out
}

// TestDashboardFirstScreen checks that the first screen (the top 24 grid
// rows) answers "which listeners are in trouble now": a table of the
// fullest listeners (topk of the fill-ratio recording rule) and one of
// those dropping the most (topk of the drop-rate rule), each naming the
// instance, namespace, pod, container, process and listener.
// TestDashboardOnAFleet checks what they show on a fleet.
func TestDashboardFirstScreen(t *testing.T) {
	d := loadDashboard(t)
	tables := firstScreenTables(d)
	for what, rule := range firstScreenRankings {
		rt, ok := tables[what]
		if !ok {
			t.Errorf("no table in the first %d grid rows ranks listeners by %s (topk of %s)", screenRows, what, rule)
			continue
		}
		shown := map[string]bool{}
		for _, tr := range rt.p.Transformations {
			if tr.ID == "organize" {
				for c := range tr.Options.IndexByName {
					shown[c] = true
				}
			}
		}
		for _, col := range []string{"instance", "namespace", "pod", "container", "process", "listener"} {
			if !shown[col] {
				t.Errorf("panel %d %q (top listeners by %s) does not show column %s", rt.p.ID, rt.p.Title, what, col)
			}
		}
	}
	if len(d.Panels) == 0 || d.Panels[0].Type != "row" || d.Panels[0].GridPos.Y != 0 || !strings.Contains(strings.ToLower(d.Panels[0].Title), "listener") {
		t.Errorf("the dashboard should open on a row about listeners, before any host-wide context")
	}
}

// identityMetric reports whether a metric's series are about a network
// namespace or a listener, and so carry netns, namespace and pod.
func identityMetric(metric string) bool {
	return strings.HasPrefix(metric, "listenq_") && !exporterMetrics[metric]
}

// TestDashboardFollowsPods checks that the dashboard keeps pods apart and
// says which pod a line or row is about: every selector of a namespace or
// listener metric filters on the namespace and pod variables; an
// aggregation that keeps netns or listener keeps namespace and pod (and
// container, with the listener); legends and table columns that show a
// netns, listener or inode show the namespace and pod too (and the
// container, with a listener or process).
func TestDashboardFollowsPods(t *testing.T) {
	d := loadDashboard(t)
	byList := regexp.MustCompile(`\bby\s*\(([^)]*)\)`)
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			where := fmt.Sprintf("panel %d %q target %s", p.ID, p.Title, tg.RefID)
			sels, err := selectors(tg.Expr)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			for _, sel := range sels {
				if !identityMetric(sel.metric) {
					continue
				}
				for _, v := range identityVars {
					if !slices.Contains(sel.matchers, matcher{v, "=~", "$" + v}) {
						t.Errorf("%s: %s does not filter on %s=~\"$%s\": %s", where, sel.metric, v, v, tg.Expr)
					}
				}
			}
			for _, m := range byList.FindAllStringSubmatch(tg.Expr, -1) {
				labels := strings.Split(strings.ReplaceAll(m[1], " ", ""), ",")
				for _, kept := range []string{"netns", "listener"} {
					if !slices.Contains(labels, kept) {
						continue
					}
					want := []string{"namespace", "pod"}
					if kept == "listener" {
						want = append(want, "container")
					}
					for _, l := range want {
						if !slices.Contains(labels, l) {
							t.Errorf("%s: by (%s) keeps %s but not %s: %s", where, m[1], kept, l, tg.Expr)
						}
					}
				}
			}
			checkIdentityShown(t, where+" legend", func(l string) bool {
				return strings.Contains(tg.LegendFormat, "{{"+l+"}}")
			})
		}
		for _, tr := range p.Transformations {
			if tr.ID != "organize" {
				continue
			}
			checkIdentityShown(t, fmt.Sprintf("panel %d %q table columns", p.ID, p.Title), func(l string) bool {
				_, ok := tr.Options.IndexByName[l]
				return ok
			})
		}
	}
}

// checkIdentityShown requires a legend or a table that shows a namespace
// or listener (has(l) for netns, listener or inode) to show namespace and
// pod, and one that shows a listener or its process to show container.
func checkIdentityShown(t *testing.T, where string, has func(string) bool) {
	t.Helper()
	if has("netns") || has("listener") || has("inode") {
		for _, l := range []string{"namespace", "pod"} {
			if !has(l) {
				t.Errorf("%s shows a network namespace or listener but not its %s", where, l)
			}
		}
	}
	if (has("listener") || has("process")) && !has("container") {
		t.Errorf("%s shows a listener but not its container", where)
	}
}

// usesVar reports whether expr refers to the dashboard variable name.
func usesVar(expr, name string) bool {
	for _, m := range varRef.FindAllStringSubmatch(expr, -1) {
		if m[1]+m[2]+m[3] == name {
			return true
		}
	}
	return false
}

// checkDatasource insists on the ${datasource} variable. A target may omit
// its data source (it inherits the panel's); a panel may not.
func checkDatasource(t *testing.T, where string, raw json.RawMessage, required bool) {
	t.Helper()
	if len(raw) == 0 || string(raw) == "null" {
		if required {
			t.Errorf("%s has no datasource; want uid %s", where, datasourceRef)
		}
		return
	}
	var ds dsRef
	if err := json.Unmarshal(raw, &ds); err != nil {
		t.Errorf("%s: datasource %s is not a {type, uid} reference: %v", where, raw, err)
		return
	}
	if ds.Type != "prometheus" || ds.UID != datasourceRef {
		t.Errorf("%s: datasource %s, want {type: prometheus, uid: %s}", where, raw, datasourceRef)
	}
}

// --- promtool ----------------------------------------------------------------

func TestDashboardQueriesAreValidPromQL(t *testing.T) {
	d := loadDashboard(t)
	qs := dashboardQueries(t, d)
	if len(qs) == 0 {
		t.Fatal("dashboard has no queries")
	}
	tool := testbin.RequireTool(t, "promtool", "prometheus")

	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []rule
	for i, q := range qs {
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: q.expr})
	}
	// JSON is YAML, so a JSON rule file is a valid Prometheus rule file.
	file := map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}}
	raw, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "check", "rules", path).CombinedOutput()
	if err != nil {
		var listing strings.Builder
		for i, q := range qs {
			fmt.Fprintf(&listing, "  dashboard:query_%d = %s: %s\n", i, q.where, q.expr)
		}
		t.Errorf("promtool check rules on the dashboard's queries: %v\n%s\nqueries:\n%s", err, out, listing.String())
	}
}

// --- PromQL selectors ----------------------------------------------------------

type matcher struct{ name, op, value string }

type selector struct {
	metric   string
	matchers []matcher
}

var (
	promqlKeywords = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"inf": true, "nan": true, "atan2": true,
	}
	// Keywords followed by a parenthesised list of label names.
	labelListKeywords = map[string]bool{
		"by": true, "without": true, "on": true, "ignoring": true,
		"group_left": true, "group_right": true,
	}
)

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdent(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func skipSpace(s string, i int) int {
	for i < len(s) && strings.IndexByte(" \t\r\n", s[i]) >= 0 {
		i++
	}
	return i
}

// readString reads the quoted string starting at s[i] and returns its value
// and the index after it.
func readString(s string, i int) (string, int, error) {
	q := s[i]
	j := i + 1
	for j < len(s) && s[j] != q {
		if s[j] == '\\' && q != '`' {
			j++
		}
		j++
	}
	if j >= len(s) {
		return "", 0, fmt.Errorf("unterminated string at %d", i)
	}
	lit := s[i : j+1]
	if q == '\'' {
		lit = `"` + strings.ReplaceAll(strings.ReplaceAll(lit[1:len(lit)-1], `\'`, `'`), `"`, `\"`) + `"`
	}
	v, err := strconv.Unquote(lit)
	if err != nil {
		return "", 0, fmt.Errorf("string %s: %w", s[i:j+1], err)
	}
	return v, j + 1, nil
}

// readMatchers parses the label matchers of {…} starting at s[i] == '{'.
func readMatchers(s string, i int) ([]matcher, int, error) {
	var ms []matcher
	i++
	for {
		i = skipSpace(s, i)
		if i < len(s) && s[i] == ',' {
			i++
			continue
		}
		if i >= len(s) {
			return nil, 0, errors.New("unterminated {")
		}
		if s[i] == '}' {
			return ms, i + 1, nil
		}
		var name string
		switch {
		case s[i] == '"' || s[i] == '\'' || s[i] == '`':
			v, next, err := readString(s, i)
			if err != nil {
				return nil, 0, err
			}
			name, i = v, next
		case isIdentStart(s[i]):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			name, i = s[i:j], j
		default:
			return nil, 0, fmt.Errorf("unexpected %q in label matchers", s[i])
		}
		i = skipSpace(s, i)
		if i >= len(s) || (s[i] != '"' && s[i] != '\'' && s[i] != '`' && strings.IndexByte("=!", s[i]) < 0) {
			// {"metric_name"}: a quoted metric name on its own.
			ms = append(ms, matcher{model.MetricNameLabel, "=", name})
			continue
		}
		var op string
		for _, o := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(s[i:], o) {
				op = o
				break
			}
		}
		if op == "" {
			return nil, 0, fmt.Errorf("bad matcher operator at %q", s[i:])
		}
		i = skipSpace(s, i+len(op))
		if i >= len(s) || strings.IndexByte("\"'`", s[i]) < 0 {
			return nil, 0, fmt.Errorf("matcher %s%s needs a quoted value", name, op)
		}
		v, next, err := readString(s, i)
		if err != nil {
			return nil, 0, err
		}
		ms = append(ms, matcher{name, op, v})
		i = next
	}
}

// selectors lists the vector selectors of a PromQL expression: every
// metric name with its matchers. It is a small lexer, not a parser (promtool
// checks syntax), that tells metric names from functions, aggregations,
// keywords, label lists, strings, durations and numbers.
func selectors(expr string) ([]selector, error) {
	var out []selector
	s := expr
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			_, next, err := readString(s, i)
			if err != nil {
				return nil, err
			}
			i = next
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return nil, errors.New("unterminated [")
			}
			i += j + 1
		case c == '{':
			ms, next, err := readMatchers(s, i)
			if err != nil {
				return nil, err
			}
			sel := selector{matchers: ms}
			for _, m := range ms {
				if m.name == model.MetricNameLabel && m.op == "=" {
					sel.metric = m.value
				}
			}
			out = append(out, sel)
			i = next
		case c >= '0' && c <= '9' || c == '.':
			// Numbers and durations: 0.8, 1e-3, 0x1f, 5m, 1h30m.
			for i < len(s) && (isIdent(s[i]) || s[i] == '.' ||
				((s[i] == '+' || s[i] == '-') && (s[i-1] == 'e' || s[i-1] == 'E'))) {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			word := s[i:j]
			k := skipSpace(s, j)
			lower := strings.ToLower(word)
			switch {
			case labelListKeywords[lower]:
				i = j
				if k < len(s) && s[k] == '(' {
					end := strings.IndexByte(s[k:], ')')
					if end < 0 {
						return nil, fmt.Errorf("unterminated label list after %s", word)
					}
					i = k + end + 1
				}
				continue
			case promqlKeywords[lower]:
				i = j
				continue
			case k < len(s) && s[k] == '(':
				i = j // a function or an aggregation: sum(…)
				continue
			}
			// An aggregation written "sum by (x) (…)" or "sum without (x) (…)".
			if k < len(s) && isIdentStart(s[k]) {
				e := k
				for e < len(s) && isIdent(s[e]) {
					e++
				}
				if next := strings.ToLower(s[k:e]); next == "by" || next == "without" {
					i = j
					continue
				}
			}
			sel := selector{metric: word}
			i = j
			if k < len(s) && s[k] == '{' {
				ms, next, err := readMatchers(s, k)
				if err != nil {
					return nil, err
				}
				sel.matchers, i = ms, next
			}
			out = append(out, sel)
		default:
			i++
		}
	}
	return out, nil
}

func TestSelectors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want string
	}{
		{`rate(listenq_drops_total{job=~"a|b", proto='tcp'}[5m])`, `listenq_drops_total{job=~"a|b",proto="tcp"}`},
		{`sum by (instance, netns) (rate(x_total[1m])) > 0.2`, `x_total{}`},
		{`sum without(inode)(a) / on (job) group_left (netns) b offset 5m`, `a{} b{}`},
		{`max by(le) (c) and ignoring(x) d @ start()`, `c{} d{}`},
		{`topk(10, rec:ord:rule{l="v\"w"}) or vector(0)`, `rec:ord:rule{l="v\"w"}`},
		{`label_replace(up{job="x"}, "dst", "$1", "src", "(.*)") == bool 1e-3`, `up{job="x"}`},
		{`{__name__="named",x!="y"} * Inf + count_values("v", e) * 0x1F`, `named{__name__="named",x!="y"} e{}`},
		{`histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m:1m])))`, `h_bucket{}`},
	} {
		sels, err := selectors(tc.expr)
		if err != nil {
			t.Errorf("selectors(%q): %v", tc.expr, err)
			continue
		}
		var got []string
		for _, s := range sels {
			var ms []string
			for _, m := range s.matchers {
				ms = append(ms, m.name+m.op+strconv.Quote(m.value))
			}
			got = append(got, s.metric+"{"+strings.Join(ms, ",")+"}")
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("selectors(%q) = %s, want %s", tc.expr, g, tc.want)
		}
	}
}

// --- the rules file --------------------------------------------------------

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record string `yaml:"record"`
			Alert  string `yaml:"alert"`
			Expr   string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// rulesQueries returns the rules file's expressions and the names it records.
func rulesQueries(t *testing.T) ([]query, map[string]bool) {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var qs []query
	recorded := map[string]bool{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			name := r.Record
			if name == "" {
				name = "alert " + r.Alert
			} else {
				recorded[name] = true
			}
			qs = append(qs, query{fmt.Sprintf("%s: %s", rulesFile, name), r.Expr})
		}
	}
	return qs, recorded
}

// --- the real exporter ----------------------------------------------------------

// scrape holds the series of the exporter's scrapes: metric name -> label
// sets.
type scrape map[string][]map[string]string

// exporter is a running exporter process.
type exporter struct {
	proc *testbin.Proc
	url  string
}

// startExporter starts bin and waits until /metrics answers. It returns nil
// and the exporter's output when the process exits before answering. The
// process is stopped when the test ends.
func startExporter(t *testing.T, bin string, args ...string) (*exporter, string) {
	t.Helper()
	addr := "127.0.0.1:" + testbin.FreePort(t)
	// A runtime endpoint nothing listens on: listenq_runtime_up is then
	// served (as 0), as on a node whose runtime is down.
	noRuntime := "unix://" + filepath.Join(testbin.ShortTempDir(t), "none.sock")
	args = append([]string{"--web.listen-address=" + addr, "--owner.min-scan-interval=0s", "--runtime.endpoint=" + noRuntime}, args...)
	e := &exporter{proc: testbin.Start(t, bin, args...), url: "http://" + addr + "/metrics"}
	if !e.proc.WaitHTTP(t, e.url, 20*time.Second) {
		return nil, fmt.Sprintf("exited (%v) before serving /metrics:\n%s", e.proc.Err(), e.proc.Output())
	}
	return e, ""
}

// scrapeOnce reads the exporter's metrics into s.
func (e *exporter) scrapeOnce(s scrape) error {
	body, err := testbin.Get(nil, e.url)
	if err != nil {
		return err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("parse scrape: %w", err)
	}
	for name, mf := range families {
		names := []string{name}
		switch mf.GetType().String() {
		case "HISTOGRAM", "GAUGE_HISTOGRAM":
			names = append(names, name+"_bucket", name+"_sum", name+"_count")
		case "SUMMARY":
			names = append(names, name+"_sum", name+"_count")
		}
		for _, m := range mf.GetMetric() {
			ls := map[string]string{}
			for _, lp := range m.GetLabel() {
				ls[lp.GetName()] = lp.GetValue()
			}
			for _, n := range names {
				s[n] = append(s[n], ls)
			}
		}
	}
	return nil
}

// has reports whether some series of metric carries label=value.
func (s scrape) has(metric, label, value string) bool {
	for _, ls := range s[metric] {
		if ls[label] == value {
			return true
		}
	}
	return false
}

// use is one metric (with one equality matcher, when it has one) that a
// query needs from the exporter.
type use struct {
	where  string
	metric string
	label  string // "" for the metric alone
	value  string
}

// requiredSeries lists what the queries need the exporter to export:
// every metric name, and for each equality matcher on a label the exporter
// sets (not job/instance, which Prometheus adds), a series with that value.
func requiredSeries(t *testing.T, qs []query, recorded map[string]bool) []use {
	t.Helper()
	var uses []use
	for _, q := range qs {
		sels, err := selectors(q.expr)
		if err != nil {
			t.Errorf("%s: cannot read the selectors of %q: %v", q.where, q.expr, err)
			continue
		}
		for _, sel := range sels {
			switch {
			case sel.metric == "":
				t.Errorf("%s: selector without a metric name in %q", q.where, q.expr)
				continue
			case recorded[sel.metric] || prometheusMetrics[sel.metric]:
				continue
			case strings.Contains(sel.metric, ":"):
				t.Errorf("%s: %s looks like a recording rule but %s does not define it", q.where, sel.metric, rulesFile)
				continue
			}
			uses = append(uses, use{where: q.where, metric: sel.metric})
			for _, m := range sel.matchers {
				if m.op != "=" || m.value == "" || m.name == model.MetricNameLabel ||
					m.name == "job" || m.name == "instance" || strings.Contains(m.value, "$") {
					continue
				}
				uses = append(uses, use{q.where, sel.metric, m.name, m.value})
			}
		}
	}
	return uses
}

func (u use) satisfied(s scrape) bool {
	if u.label == "" {
		return len(s[u.metric]) > 0
	}
	return s.has(u.metric, u.label, u.value)
}

func (u use) String() string {
	if u.label == "" {
		return u.metric
	}
	return fmt.Sprintf("%s{%s=%q}", u.metric, u.label, u.value)
}

// TestMetricsExist checks every metric the dashboard and the rules use
// against a real scrape of the exporter, started with every optional
// feature they rely on (--collector.tcp.syn-queue, and
// --collector.acceptwait for ListenerAcceptWaitHigh: it needs root and
// tracefs, mounted here when missing).
func TestMetricsExist(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the exporter; skipped with -short")
	}
	var qs []query
	dq := dashboardQueries(t, loadDashboard(t))
	rq, recorded := rulesQueries(t)
	qs = append(append(qs, dq...), rq...)
	uses := requiredSeries(t, qs, recorded)
	if len(uses) == 0 {
		t.Fatal("found no metric names in the dashboard and rules")
	}

	// Listeners for the exporter to report: its own TCP listening socket,
	// and a unix stream listener owned by this test.
	sockDir, err := os.MkdirTemp("", "lq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	ul, err := net.Listen("unix", filepath.Join(sockDir, "q.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()

	bin := testbin.Exporter(t)
	testns.EnsureTracefs(t)
	optional := []string{"--collector.tcp.syn-queue", "--collector.acceptwait"}
	e, failure := startExporter(t, bin, optional...)
	if e == nil {
		// Report it, then carry on without the flags so everything else is
		// still checked.
		t.Errorf("exporter with %s %s", strings.Join(optional, " "), failure)
		if e, failure = startExporter(t, bin); e == nil {
			t.Fatalf("exporter %s", failure)
		}
	}

	// Scrape until everything needed has shown up (new listeners may wait
	// one owner scan; the sampler needs a moment), for at most 10 seconds.
	got := scrape{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := e.scrapeOnce(got); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(uses, func(u use) bool { return !u.satisfied(got) }) || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}

	// The acceptwait collector loads its eBPF programs only with CAP_BPF
	// and CAP_PERFMON (root here): not root and not CI, its metrics are
	// logged when missing, like the namespace tests that skip.
	acceptWaitOptional := os.Geteuid() != 0 && os.Getenv("CI") != "true"
	missing := map[string][]string{}
	pendingUsed := map[string]bool{}
	for _, u := range uses {
		if acceptWaitOptional && strings.HasPrefix(u.metric, "listenq_accept") && !u.satisfied(got) {
			t.Logf("%s is not in the scrape: the acceptwait collector needs root (CI=true makes this a failure); used by %s", u, u.where)
			continue
		}
		if pendingExporterMetrics[u.metric] {
			pendingUsed[u.metric] = true
			if !u.satisfied(got) {
				t.Logf("%s is not in the exporter's scrape yet (listed in pendingExporterMetrics); used by %s", u, u.where)
				continue
			}
		}
		if !u.satisfied(got) {
			missing[u.String()] = append(missing[u.String()], u.where)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(pendingExporterMetrics)) {
		switch {
		case !pendingUsed[name]:
			t.Errorf("pendingExporterMetrics lists %s, which neither the dashboard nor the rules use; remove it", name)
		case len(got[name]) > 0:
			t.Logf("%s is served by the exporter now; remove it from pendingExporterMetrics", name)
		}
	}
	keys := make([]string, 0, len(missing))
	for k := range missing {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		where := slices.Compact(missing[k])
		if len(where) > 3 {
			where = append(where[:3], fmt.Sprintf("and %d more", len(where)-3))
		}
		t.Errorf("%s is not in the exporter's scrape; used by %s", k, strings.Join(where, "; "))
	}
	if t.Failed() {
		names := make([]string, 0, len(got))
		for n := range got {
			if strings.HasPrefix(n, "listenq_") {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		t.Logf("listenq_ metrics the exporter served: %s", strings.Join(names, " "))
	}
}
