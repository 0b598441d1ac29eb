package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"

	"github.com/listenq/listenq_exporter/internal/testbin"
)

// --- the Prometheus server -------------------------------------------------

type prometheus struct {
	proc *testbin.Proc
	api  promAPI
}

// startPrometheus runs Debian's Prometheus server on a free loopback port,
// scraping target every second and evaluating rulesPath every second, and
// waits until it is ready.
func startPrometheus(t *testing.T, bin, dir, rulesPath, target string) *prometheus {
	t.Helper()
	return startPrometheusJobs(t, bin, dir, rulesPath, fmt.Sprintf(`
  - job_name: listenq
    static_configs:
      - targets: [%q]
`, target))
}

// startPrometheusJobs is startPrometheus with the scrape_configs list
// given as YAML.
func startPrometheusJobs(t *testing.T, bin, dir, rulesPath, jobs string) *prometheus {
	t.Helper()
	addr := "127.0.0.1:" + testbin.FreePort(t)
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:%s`, rulesPath, jobs)
	configPath := filepath.Join(dir, "prometheus.yml")
	writeFile(t, configPath, []byte(config))
	p := testbin.Start(t, bin,
		"--config.file="+configPath,
		"--storage.tsdb.path="+filepath.Join(dir, "prometheus-data"),
		"--web.listen-address="+addr,
		// For POST /-/reload, which swaps in the rules with short windows.
		"--web.enable-lifecycle",
	)
	prom := &prometheus{proc: p, api: promAPI{base: "http://" + addr}}
	if !p.WaitHTTP(t, prom.api.base+"/-/ready", 30*time.Second) {
		t.Fatalf("Prometheus exited before it was ready: %v", p.Err())
	}
	return prom
}

// reload makes Prometheus read its configuration and rule files again.
func (p *prometheus) reload() error {
	resp, err := httpClient.Post(p.api.base+"/-/reload", "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /-/reload: %s: %s", resp.Status, body)
	}
	return nil
}

// promAPI is the little of Prometheus' HTTP API the test needs.
type promAPI struct{ base string }

type sample struct {
	metric map[string]string
	value  float64
}

// get decodes the data of a successful API answer into data.
func (a promAPI) get(path string, params url.Values, data any) error {
	u := a.base + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	body, err := testbin.Get(httpClient, u)
	if err != nil {
		return err
	}
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("GET %s: status %s: %s", u, env.Status, env.Error)
	}
	return json.Unmarshal(env.Data, data)
}

// query runs an instant query now; a scalar is one sample without labels.
func (a promAPI) query(q string) ([]sample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := a.get("/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return nil, err
	}
	parse := func(v [2]any) (float64, error) {
		s, _ := v[1].(string)
		return strconv.ParseFloat(s, 64)
	}
	switch data.ResultType {
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &vec); err != nil {
			return nil, err
		}
		out := make([]sample, 0, len(vec))
		for _, s := range vec {
			f, err := parse(s.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, sample{metric: s.Metric, value: f})
		}
		return out, nil
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(data.Result, &v); err != nil {
			return nil, err
		}
		f, err := parse(v)
		return []sample{{value: f}}, err
	}
	return nil, fmt.Errorf("query %s: unexpected result type %q", q, data.ResultType)
}

type promAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	Value       string            `json:"value"`
}

func (a promAPI) alerts() ([]promAlert, error) {
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	err := a.get("/api/v1/alerts", nil, &data)
	return data.Alerts, err
}

// recordingQueries returns the expression Prometheus has loaded for each
// recording rule.
func (a promAPI) recordingQueries() (map[string]string, error) {
	var data struct {
		Groups []struct {
			Rules []struct {
				Name  string `json:"name"`
				Query string `json:"query"`
				Type  string `json:"type"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := a.get("/api/v1/rules", url.Values{"type": {"record"}}, &data); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			out[r.Name] = r.Query
		}
	}
	return out, nil
}

func findAlert(alerts []promAlert, name, listener, state string) (promAlert, bool) {
	for _, a := range alerts {
		if a.Labels["alertname"] == name && a.Labels["listener"] == listener && a.State == state {
			return a, true
		}
	}
	return promAlert{}, false
}

// summarize lists alerts briefly for logs and failure messages.
func summarize(alerts []promAlert) string {
	var s []string
	for _, a := range alerts {
		id := a.Labels["alertname"]
		if l := a.Labels["listener"]; l != "" {
			id += "{listener=" + strconv.Quote(l) + "}"
		}
		s = append(s, id+" "+a.State)
	}
	sort.Strings(s)
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// --- the rules under test --------------------------------------------------

type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type ruleGroups struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type ruleFile struct {
	raw    []byte
	parsed ruleGroups
}

func loadRules(t *testing.T, path string) *ruleFile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := &ruleFile{raw: raw}
	if err := yaml.Unmarshal(raw, &f.parsed); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f
}

func (f *ruleFile) alert(name string) (rule, bool) {
	for _, g := range f.parsed.Groups {
		for _, r := range g.Rules {
			if r.Alert == name {
				return r, true
			}
		}
	}
	return rule{}, false
}

// shortWindowRE finds the range of the shipped recording rules.
var shortWindowRE = regexp.MustCompile(`\[5m\]`)

// testRules returns the shipped rules with every alert's for: set to
// testFor and nothing else changed; with shortWindows, the recording
// rules' [5m] ranges also become [shortWindow] (see shortenWindows). It
// checks the result against the shipped rules, so a change to the rule
// file's layout cannot make the test run rules other than the shipped ones.
func testRules(t *testing.T, shipped *ruleFile, shortWindows bool) []byte {
	t.Helper()
	var doc yaml.MapSlice
	if err := yaml.Unmarshal(shipped.raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, g := range asSlice(t, lookup(t, doc, "groups")) {
		for _, r := range asSlice(t, lookup(t, asMap(t, g), "rules")) {
			rm := asMap(t, r)
			for i := range rm {
				switch rm[i].Key {
				case "for":
					rm[i].Value = testFor
				case "expr":
					if shortWindows && hasKey(rm, "record") {
						rm[i].Value = shortWindowRE.ReplaceAllString(rm[i].Value.(string), "["+shortWindow+"]")
					}
				}
			}
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}

	var got ruleGroups
	if err := yaml.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := shipped.parsed
	if len(got.Groups) != len(want.Groups) {
		t.Fatalf("test copy of the rules has %d groups, shipped %d", len(got.Groups), len(want.Groups))
	}
	shortened := 0
	for gi, g := range want.Groups {
		if g.Name != got.Groups[gi].Name || len(g.Rules) != len(got.Groups[gi].Rules) {
			t.Fatalf("test copy of rule group %s differs from the shipped one", g.Name)
		}
		for ri, w := range g.Rules {
			r := got.Groups[gi].Rules[ri]
			if w.Alert != "" {
				if w.For == "" || r.For != testFor {
					t.Fatalf("alert %s: for: %q in the test copy, want %s (shipped %q)", w.Alert, r.For, testFor, w.For)
				}
				w.For = testFor
			}
			if shortWindows && w.Record != "" {
				if e := shortWindowRE.ReplaceAllString(w.Expr, "["+shortWindow+"]"); e != w.Expr {
					w.Expr = e
					shortened++
				}
			}
			if fmt.Sprint(r) != fmt.Sprint(w) {
				t.Fatalf("test copy of rule %s%s differs from the shipped one beyond for: and windows:\n got %+v\nwant %+v", w.Alert, w.Record, r, w)
			}
		}
	}
	if shortWindows && shortened == 0 {
		t.Fatal("no recording rule has a [5m] range any more; update shortenWindows")
	}
	return out
}

func lookup(t *testing.T, m yaml.MapSlice, key string) any {
	t.Helper()
	for _, it := range m {
		if it.Key == key {
			return it.Value
		}
	}
	t.Fatalf("rules file: no %q key", key)
	return nil
}

func hasKey(m yaml.MapSlice, key string) bool {
	return slices.ContainsFunc(m, func(it yaml.MapItem) bool { return it.Key == key })
}

func asSlice(t *testing.T, v any) []any {
	t.Helper()
	s, ok := v.([]any)
	if !ok {
		t.Fatalf("rules file: %T, want a list", v)
	}
	return s
}

func asMap(t *testing.T, v any) yaml.MapSlice {
	t.Helper()
	m, ok := v.(yaml.MapSlice)
	if !ok {
		t.Fatalf("rules file: %T, want a map", v)
	}
	return m
}

// shortenWindows swaps in a copy of the rules whose recording rules use
// [shortWindow] instead of [5m], while the load is still on, and checks
// both alerts keep firing.
//
// Why: both alerts are rate()s over 5-minute windows
// (listenq_listener:drops:rate5m, listenq_listener:queue_full_ratio:max_rate5m)
// and neither requires the queue to be full now, so after the drain they
// stay above their thresholds until the overflow has left the 5m window:
// ListenerDroppingConnections for up to 5 minutes, ListenQueueFull until
// less than 30 s of full time is left in it (~4.5 minutes). A series that
// disappears does not help either: rate() keeps using its samples for the
// whole window. So the alerts have fired with the shipped expressions
// (only for: shortened), and only their resolution is watched with
// shorter windows; the alerting rules themselves are unchanged, and the
// alert group is carried over by the reload with its firing alerts.
// LISTENQ_E2E_SHIPPED_WINDOWS=1 skips this and waits out the 5m windows.
func shortenWindows(t *testing.T, prom *prometheus, rulesPath string, shipped *ruleFile, procs []*testbin.Proc, listener string) {
	t.Helper()
	writeFile(t, rulesPath, testRules(t, shipped, true))
	if err := prom.reload(); err != nil {
		t.Fatal(err)
	}
	testbin.WaitFor(t, 10*time.Second, "Prometheus to load the rules with "+shortWindow+" windows", procs, func() (bool, string) {
		q, err := prom.api.recordingQueries()
		if err != nil {
			return false, err.Error()
		}
		got := q["listenq_listener:drops:rate5m"]
		return strings.Contains(got, "["+shortWindow+"]"), "listenq_listener:drops:rate5m is " + got
	})
	// The load is still on: a few evaluations later both alerts still fire,
	// so what resolves them afterwards is the drain, not the reload.
	for range 3 {
		time.Sleep(time.Second)
		alerts, err := prom.api.alerts()
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{dropAlert, fullAlert} {
			if _, ok := findAlert(alerts, name, listener, "firing"); !ok {
				t.Fatalf("%s stopped firing after the reload, with the load still on: %s", name, summarize(alerts))
			}
		}
	}
}

// --- the dashboard ---------------------------------------------------------

type dashPanel struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"` // a collapsed row's panels
}

type dashVariable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
}

// grafanaVar matches $name, ${name}, ${name:format} and [[name]].
var grafanaVar = regexp.MustCompile(`\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]`)

// grafanaBuiltins are the values Grafana would give its global variables
// for a short time range; ranges are long enough for a few 1 s scrapes.
var grafanaBuiltins = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "15s",
	"__interval_ms":   "15000",
	"__range":         "5m",
	"__range_s":       "300",
	"__range_ms":      "300000",
}

// expand substitutes Grafana variables; an unknown one is an error.
func expand(s string, vars map[string]string) (string, error) {
	var unknown []string
	out := grafanaVar.ReplaceAllStringFunc(s, func(m string) string {
		sub := grafanaVar.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		if v, ok := vars[name]; ok {
			return v
		}
		if v, ok := grafanaBuiltins[name]; ok {
			return v
		}
		unknown = append(unknown, m)
		return m
	})
	if len(unknown) > 0 {
		return out, fmt.Errorf("unknown variables %v", unknown)
	}
	return out, nil
}

var labelValues = regexp.MustCompile(`^\s*label_values\((.+),\s*(\w+)\s*\)\s*$`)

// checkDashboard runs every query of the dashboard, with its variables set
// to vars, against Prometheus and fails for each that returns no data,
// except the panels noData names (title -> why it has none in this test).
func checkDashboard(t *testing.T, api promAPI, path string, vars, noData map[string]string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels     []dashPanel `json:"panels"`
		Templating struct {
			List []dashVariable `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var failures []string

	// The variables' own queries must offer the values used below.
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		if json.Unmarshal(v.Query, &q) != nil {
			var o struct {
				Query string `json:"query"`
			}
			_ = json.Unmarshal(v.Query, &o)
			q = o.Query
		}
		if q == "" {
			q = v.Definition
		}
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			failures = append(failures, fmt.Sprintf("variable %s: query %q is not label_values(expr, label)", v.Name, q))
			continue
		}
		expr, err := expand(m[1], vars)
		if err != nil {
			failures = append(failures, fmt.Sprintf("variable %s: %v", v.Name, err))
			continue
		}
		res, err := api.query(fmt.Sprintf("count by (%s) (%s)", m[2], expr))
		if err != nil {
			failures = append(failures, fmt.Sprintf("variable %s: %v", v.Name, err))
			continue
		}
		var values []string
		for _, s := range res {
			values = append(values, s.metric[m[2]])
		}
		// ".*" is Grafana's All, which matches every value offered.
		if want, ok := vars[v.Name]; ok && want != ".*" && !slices.Contains(values, want) {
			failures = append(failures, fmt.Sprintf("variable %s offers %q, not %q", v.Name, values, want))
		}
	}

	var walk func(ps []dashPanel)
	panels, queries := 0, 0
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			walk(p.Panels)
			if len(p.Targets) == 0 {
				continue
			}
			panels++
			title, _ := expand(p.Title, vars)
			var counts []string
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					continue
				}
				queries++
				expr, err := expand(tg.Expr, vars)
				if err != nil {
					failures = append(failures, fmt.Sprintf("panel %q, query %s: %v", title, tg.RefID, err))
					continue
				}
				res, err := api.query(expr)
				switch {
				case err != nil:
					failures = append(failures, fmt.Sprintf("panel %q, query %s: %v", title, tg.RefID, err))
				case len(res) == 0 && noData[p.Title] != "":
					t.Logf("panel %q has no data here, as expected: %s", title, noData[p.Title])
				case len(res) == 0:
					failures = append(failures, fmt.Sprintf("panel %q, query %s returned no data: %s", title, tg.RefID, expr))
				}
				counts = append(counts, fmt.Sprintf("%s:%d", tg.RefID, len(res)))
			}
			t.Logf("dashboard panel %-40q series per query %v", title, counts)
		}
	}
	walk(d.Panels)
	if panels == 0 {
		t.Fatalf("%s has no panel with queries", path)
	}
	t.Logf("dashboard: %d panels, %d queries run", panels, queries)
	if len(failures) > 0 {
		t.Errorf("dashboard queries without data (variables %v, builtins %v):\n  %s", vars, grafanaBuiltins, strings.Join(failures, "\n  "))
	}
}
