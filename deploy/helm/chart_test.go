// Package helm_test checks the Helm chart in deploy/helm/listenq-exporter:
// `helm lint --strict`, and `helm template` with the default values and
// with ci/all-values.yaml (every toggle on, every flag set), asserting on
// the rendered objects. It also keeps three generated things current:
// the chart's copies of alerts/listenq.rules.yml and dashboards/listenq.json
// (files/), and the plain manifests of deploy/kubernetes/, rendered from
// the chart. After changing any of their sources:
//
//	go test ./deploy/helm -update
//
// The tests that run helm find it on PATH (go install
// helm.sh/helm/v3/cmd/helm@v3.22.0); without it they skip, and fail when
// CI=true.
package helm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v2"
)

var update = flag.Bool("update", false, "rewrite the chart's copies of alerts/ and dashboards/, and deploy/kubernetes/, instead of comparing")

const (
	chart       = "listenq-exporter"
	release     = "listenq-exporter"
	allValues   = "listenq-exporter/ci/all-values.yaml"
	manifestDir = "../kubernetes"
	// The namespace and values deploy/kubernetes/ is rendered with.
	manifestNamespace = "monitoring"
	manifestSet       = "prometheus.podMonitor.enabled=true"
	helmVersion       = "v3.22.0"
)

// copies are the chart's files/ copies of the repository's single sources.
var copies = []struct{ src, dst string }{
	{"../../alerts/listenq.rules.yml", "listenq-exporter/files/listenq.rules.yml"},
	{"../../dashboards/listenq.json", "listenq-exporter/files/listenq.json"},
}

// The capabilities the DaemonSet adds, each needed by a feature (see the
// template's comments and README.md), and those acceptWait.enabled adds.
var (
	wantCapabilities           = []any{"SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"}
	wantAcceptWaitCapabilities = []any{"BPF", "PERFMON"}
)

// tracefs is the node's tracefs, which acceptWait.enabled mounts at its own
// path rather than under /host: the exporter (and cilium/ebpf) look for
// it there, not under --path.rootfs.
const tracefs = "/sys/kernel/tracing"

func TestChartCopiesAreCurrent(t *testing.T) {
	for _, c := range copies {
		src, err := os.ReadFile(c.src)
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			if err := os.WriteFile(c.dst, src, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		dst, err := os.ReadFile(c.dst)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(src, dst) {
			t.Errorf("deploy/helm/%s differs from %s: run go test ./deploy/helm -update", c.dst, strings.TrimPrefix(c.src, "../../"))
		}
	}
}

func TestLint(t *testing.T) {
	helmCmd(t, "lint", "--strict", chart)
	helmCmd(t, "lint", "--strict", "-f", allValues, chart)
}

// TestKubernetesManifestsAreCurrent: deploy/kubernetes/*.yaml are the
// chart's objects with the default values and a PodMonitor, one file per
// template.
func TestKubernetesManifestsAreCurrent(t *testing.T) {
	out := helmCmd(t, "template", release, chart, "--namespace", manifestNamespace, "--set", manifestSet)
	want := map[string]string{}
	for _, part := range strings.Split(out, "---\n# Source: ")[1:] {
		source, body, _ := strings.Cut(part, "\n")
		name := filepath.Base(source)
		header := fmt.Sprintf("# Rendered from the Helm chart deploy/helm/%s\n"+
			"# (%s) with its default values and\n"+
			"# %s, in namespace %s.\n"+
			"# Do not edit: change the chart, then go test ./deploy/helm -update\n",
			chart, strings.TrimPrefix(source, chart+"/"), manifestSet, manifestNamespace)
		want[name] += header + body
	}
	if len(want) == 0 {
		t.Fatalf("helm template gave no objects:\n%s", out)
	}
	existing, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range existing {
		if _, ok := want[filepath.Base(path)]; ok {
			continue
		}
		if *update {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("deploy/kubernetes/%s is not rendered from the chart any more: run go test ./deploy/helm -update", filepath.Base(path))
	}
	for name, body := range want {
		path := filepath.Join(manifestDir, name)
		if *update {
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != body {
			t.Errorf("deploy/kubernetes/%s is stale (%v): run go test ./deploy/helm -update", name, err)
		}
	}
	for _, name := range []string{"daemonset.yaml", "podmonitor.yaml"} {
		if _, ok := want[name]; !ok {
			t.Errorf("deploy/kubernetes/%s is read by other tests but the chart no longer renders it", name)
		}
	}
}

func TestDefaultValues(t *testing.T) {
	objs := render(t)
	checkKinds(t, objs, "DaemonSet", "Service", "ServiceAccount")
	ds := objs.one(t, "DaemonSet")
	pod := checkDaemonSet(t, ds)
	c := exporterContainer(t, ds)

	if got, want := c.str("image"), "listenq_exporter:"+appVersion(t); got != want {
		t.Errorf("image %q, want %q (the chart's appVersion)", got, want)
	}
	wantArgs := []string{
		"--path.procfs=/host/proc", "--path.rootfs=/host", "--web.listen-address=:9637",
		"--collector.netstat", "--collector.sysctl", "--collector.tcp", "--collector.unix",
	}
	if got := c.strings("args"); !slices.Equal(got, wantArgs) {
		t.Errorf("args %q, want %q", got, wantArgs)
	}
	if got := c.get("resources"); !equalYAML(got, `{requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 64Mi}}`) {
		t.Errorf("resources %v, want the figures of bench/scale-results.md", got)
	}
	if got := envValue(c, "GOMEMLIMIT"); got != "56MiB" {
		t.Errorf("GOMEMLIMIT=%q, want 56MiB", got)
	}
	if got := pod.get("tolerations"); !equalYAML(got, `[{operator: Exists}]`) {
		t.Errorf("tolerations %v, want every taint tolerated", got)
	}
	if mountPath(c, "runtime-socket") != "/host/run/containerd/containerd.sock" {
		t.Errorf("the containerd socket is not mounted under /host: %v", c.get("volumeMounts"))
	}
	sa := objs.one(t, "ServiceAccount")
	if sa.get("automountServiceAccountToken") != false {
		t.Error("the ServiceAccount automounts its token")
	}
	if pod.str("serviceAccountName") != sa.str("metadata", "name") {
		t.Errorf("the pods use ServiceAccount %q, the chart makes %q", pod.str("serviceAccountName"), sa.str("metadata", "name"))
	}
	svc := objs.one(t, "Service")
	checkService(t, svc, ds)
	if svc.str("spec", "clusterIP") != "None" {
		t.Errorf("the Service is not headless: clusterIP %q", svc.str("spec", "clusterIP"))
	}
	if svc.get("metadata", "annotations") != nil {
		t.Errorf("the Service has annotations (a prometheus.io/scrape one would invite an unrelabelled job): %v", svc.get("metadata", "annotations"))
	}

	// The CRD-based and optional objects, with default settings.
	objs = render(t, "--set", "prometheus.podMonitor.enabled=true,prometheus.monitor.enabled=true,prometheusRule.enabled=true,dashboards.enabled=true")
	checkKinds(t, objs, "DaemonSet", "Service", "ServiceAccount", "PodMonitor", "ServiceMonitor", "PrometheusRule", "ConfigMap")
	checkPodMonitor(t, objs.one(t, "PodMonitor"), ds, 0)
	checkServiceMonitor(t, objs.one(t, "ServiceMonitor"), svc, 0)
	for _, kind := range []string{"PodMonitor", "ServiceMonitor"} {
		ep := endpoints(t, objs.one(t, kind))
		if ep.str("scheme") != "http" || ep.get("tlsConfig") != nil {
			t.Errorf("%s endpoint: %v, want plain http", kind, ep)
		}
	}
	rule := objs.one(t, "PrometheusRule")
	var source obj
	readYAML(t, "../../alerts/listenq.rules.yml", &source)
	if !reflect.DeepEqual(rule.get("spec"), source.m) {
		t.Error("the PrometheusRule's spec is not alerts/listenq.rules.yml")
	}
	checkDashboard(t, objs.one(t, "ConfigMap"), "grafana_dashboard", "1")
}

func TestAllValues(t *testing.T) {
	objs := render(t, "-f", allValues)
	checkKinds(t, objs, "DaemonSet", "Service", "ServiceAccount", "Secret", "PodMonitor", "ServiceMonitor", "PrometheusRule", "ConfigMap", "NetworkPolicy")
	wantNamespace := map[string]string{"PodMonitor": "prometheus", "ServiceMonitor": "prometheus", "PrometheusRule": "prometheus", "ConfigMap": "grafana"}
	for _, o := range objs {
		want := wantNamespace[o.str("kind")]
		if want == "" {
			want = "observability"
		}
		if got := o.str("metadata", "namespace"); got != want {
			t.Errorf("%s in namespace %q, want %q", o.str("kind"), got, want)
		}
		labels := o.obj("metadata", "labels")
		if labels.str("team") != "sre" || labels.str("release") != release {
			t.Errorf("%s lacks commonLabels or the release label: %v", o.str("kind"), labels.m)
		}
	}

	ds := objs.one(t, "DaemonSet")
	pod := checkDaemonSet(t, ds)
	c := exporterContainer(t, ds)
	if got, want := c.str("image"), "registry.example.com/infra/listenq_exporter:v9.9.9@sha256:"+strings.Repeat("0", 64); got != want {
		t.Errorf("image %q, want %q", got, want)
	}
	wantArgs := []string{
		"--path.procfs=/host/proc",
		"--path.rootfs=/host",
		"--web.listen-address=:19637",
		"--web.config.file=/etc/listenq-exporter/web/web.yml",
		"--web.telemetry-path=/metrics",
		"--web.max-requests=0",
		"--collector.netstat",
		"--no-collector.sysctl",
		"--collector.tcp",
		"--no-collector.unix",
		"--collector.tcp.syn-queue",
		"--collector.tcp.syn-queue.interval=30s",
		"--collector.acceptwait",
		"--collector.acceptwait.method=tracepoint",
		`--filter.listener-include=0\.0\.0\.0:.*|/run/.*`,
		`--filter.listener-exclude=127\.0\.0\.1:.*`,
		"--filter.port-include=80|443|8[0-9]{3}",
		"--filter.port-exclude=22",
		"--filter.process-include=nginx|php-fpm.*",
		"--filter.process-exclude=sshd",
		"--filter.max-listeners=25000",
		"--sampler.interval=250ms",
		"--sampler.window=2m",
		"--sampler.max-cpu=0.02",
		"--no-netns.discovery",
		"--netns.refresh-interval=30s",
		"--netns.namespace-include=team-.*",
		"--netns.namespace-exclude=kube-system",
		"--netns.pod-include=web-.*",
		"--netns.pod-exclude=debug-.*",
		"--owner.min-scan-interval=10s",
		"--runtime.endpoint=unix:///host/run/crio/crio.sock",
		"--runtime.endpoint=docker:///host/var/run/docker.sock",
		"--runtime.disable",
		"--runtime.timeout=5s",
		"--log.level=debug",
		"--log.format=json",
		"--no-web.systemd-socket",
	}
	if got := c.strings("args"); !slices.Equal(got, wantArgs) {
		t.Errorf("args:\n got %q\nwant %q", got, wantArgs)
	}
	if got := envValue(c, "GOMEMLIMIT"); got != "200MiB" {
		t.Errorf("GOMEMLIMIT=%q, want 200MiB", got)
	}
	if envValue(c, "TZ") != "UTC" {
		t.Errorf("extraEnv missing: %v", c.get("env"))
	}
	if mountPath(c, "runtime-socket") != "/host/run/crio/crio.sock" {
		t.Errorf("the CRI-O socket is not mounted under /host: %v", c.get("volumeMounts"))
	}
	if mountPath(c, "docker-netns") != "/host/var/run/docker/netns" {
		t.Errorf("extraHostVolumeMounts missing: %v", c.get("volumeMounts"))
	}
	for key, want := range map[string]string{
		"tolerations":                   `[{key: dedicated, operator: Equal, value: ingress, effect: NoSchedule}]`,
		"priorityClassName":             `system-node-critical`,
		"nodeSelector":                  `{kubernetes.io/os: linux, node-role.example.com/worker: "true"}`,
		"affinity":                      `{nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: type, operator: NotIn, values: [virtual-kubelet]}]}]}}}`,
		"imagePullSecrets":              `[{name: pull-secret}]`,
		"serviceAccountName":            `lq-sa`,
		"terminationGracePeriodSeconds": `10`,
	} {
		if got := pod.get(key); !equalYAML(got, want) {
			t.Errorf("pod %s = %v, want %s", key, got, want)
		}
	}
	tmpl := ds.obj("spec", "template", "metadata")
	if tmpl.str("labels", "tier") != "monitoring" || tmpl.str("annotations", "example.com/scraped-by") != "operator" {
		t.Errorf("podLabels or podAnnotations missing: %v", tmpl.m)
	}
	if tmpl.str("annotations", "checksum/web-config") == "" {
		t.Error("no checksum/web-config annotation: pods would not restart when the web configuration changes")
	}
	if ds.str("metadata", "labels", "example.com/ds") != "yes" {
		t.Error("daemonsetLabels missing")
	}
	if !equalYAML(ds.get("spec", "updateStrategy"), `{type: RollingUpdate, rollingUpdate: {maxUnavailable: 10%}}`) {
		t.Errorf("updateStrategy %v", ds.get("spec", "updateStrategy"))
	}
	for _, probe := range []string{"livenessProbe", "readinessProbe"} {
		if !equalYAML(c.get(probe), `{tcpSocket: {port: metrics}}`) {
			t.Errorf("%s %v", probe, c.get(probe))
		}
	}

	// TLS: the chart's web configuration Secret and the TLS Secret.
	secret := objs.one(t, "Secret")
	var webConfig any
	if err := yaml.Unmarshal([]byte(secret.str("stringData", "web.yml")), &webConfig); err != nil {
		t.Fatal(err)
	}
	if !equalYAML(normalize(webConfig), `{tls_server_config: {cert_file: /etc/listenq-exporter/tls/tls.crt, key_file: /etc/listenq-exporter/tls/tls.key}}`) {
		t.Errorf("web configuration %v", webConfig)
	}
	if got := volume(t, pod, "web-config").str("secret", "secretName"); got != secret.str("metadata", "name") {
		t.Errorf("the web-config volume uses Secret %q, the chart makes %q", got, secret.str("metadata", "name"))
	}
	if mountPath(c, "web-config") != "/etc/listenq-exporter/web" || mountPath(c, "tls") != "/etc/listenq-exporter/tls" {
		t.Errorf("web configuration or TLS not mounted: %v", c.get("volumeMounts"))
	}
	if got := volume(t, pod, "tls").str("secret", "secretName"); got != "lq-tls" {
		t.Errorf("the tls volume uses Secret %q, want lq-tls", got)
	}

	svc := objs.one(t, "Service")
	checkService(t, svc, ds)
	if svc.get("spec", "clusterIP") != nil {
		t.Errorf("clusterIP %v, want none set", svc.get("spec", "clusterIP"))
	}
	for _, kind := range []string{"PodMonitor", "ServiceMonitor"} {
		m := objs.one(t, kind)
		if kind == "PodMonitor" {
			checkPodMonitor(t, m, ds, 1)
		} else {
			checkServiceMonitor(t, m, svc, 1)
		}
		if !equalYAML(m.get("spec", "namespaceSelector"), `{matchNames: [observability]}`) {
			t.Errorf("%s namespaceSelector %v", kind, m.get("spec", "namespaceSelector"))
		}
		ep := endpoints(t, m)
		if ep.str("scheme") != "https" || !equalYAML(ep.get("tlsConfig"), `{insecureSkipVerify: true}`) || ep.str("interval") != "30s" {
			t.Errorf("%s endpoint %v", kind, ep.m)
		}
		if !equalYAML(ep.get("relabelings").([]any)[0], `{sourceLabels: [__meta_kubernetes_pod_node_name], targetLabel: host}`) {
			t.Errorf("%s: the user's relabeling is not first: %v", kind, ep.get("relabelings"))
		}
		if m.str("metadata", "labels", "prometheus") != "main" {
			t.Errorf("%s additionalLabels missing", kind)
		}
	}
	if ep := endpoints(t, objs.one(t, "ServiceMonitor")); !equalYAML(ep.get("metricRelabelings"), `[{sourceLabels: [__name__], regex: go_.*, action: drop}]`) {
		t.Errorf("ServiceMonitor metricRelabelings %v", ep.get("metricRelabelings"))
	}

	// The rules, with the cluster label and job matcher renamed.
	rule := objs.one(t, "PrometheusRule")
	if got, want := ruleNames(rule.obj("spec")), ruleNames(sourceRules(t)); !slices.Equal(got, want) {
		t.Errorf("PrometheusRule rules %v, want those of alerts/listenq.rules.yml %v", got, want)
	}
	clusterWord := regexp.MustCompile(`\bcluster\b`)
	for _, r := range rules(rule.obj("spec")) {
		expr := r.str("expr")
		if strings.Contains(expr, `job=~".*listenq.*"`) || !strings.Contains(expr, `job="node-listenq"`) {
			t.Errorf("%s: job matcher not replaced: %s", r.name(), expr)
		}
		if clusterWord.MatchString(expr) {
			t.Errorf("%s: cluster label not renamed: %s", r.name(), expr)
		}
	}
	if !strings.Contains(fmt.Sprint(rule.get("spec")), "k8s_cluster") {
		t.Error("the PrometheusRule never names k8s_cluster")
	}

	// promtool accepts the renamed rules.
	raw, err := yaml.Marshal(rule.get("spec"))
	if err != nil {
		t.Fatal(err)
	}
	rulesFile := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(rulesFile, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool(t, "promtool", "apt-get install prometheus"), "check", "rules", rulesFile).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the renamed rules: %v\n%s", err, out)
	}

	checkDashboard(t, objs.one(t, "ConfigMap"), "grafana_dashboard_listenq", "yes")
	if objs.one(t, "ConfigMap").str("metadata", "annotations", "grafana_folder") != "Networking" {
		t.Error("dashboard annotations missing")
	}

	np := objs.one(t, "NetworkPolicy")
	checkSubset(t, "NetworkPolicy podSelector", np.obj("spec", "podSelector", "matchLabels"), ds.obj("spec", "template", "metadata", "labels"))
	if !equalYAML(np.get("spec", "ingress"), `[{ports: [{port: 19637, protocol: TCP}], from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: prometheus}}}]}]`) {
		t.Errorf("NetworkPolicy ingress %v", np.get("spec", "ingress"))
	}
}

// TestAcceptWait: acceptWait.enabled adds the collector's flag (and its
// method's unless auto), the capabilities BPF and PERFMON and the node's
// tracefs, read-only; checkDaemonSet checks the capabilities and the mount
// whatever the values, TestDefaultValues that none of it is there by
// default.
func TestAcceptWait(t *testing.T) {
	for _, tc := range []struct {
		set  string
		want []string
	}{
		{"acceptWait.enabled=true", []string{"--collector.acceptwait"}},
		{"acceptWait.enabled=true,acceptWait.method=fexit", []string{"--collector.acceptwait", "--collector.acceptwait.method=fexit"}},
		{"acceptWait.enabled=false,acceptWait.method=tracepoint", nil},
	} {
		t.Run(tc.set, func(t *testing.T) {
			ds := render(t, "--set", tc.set).one(t, "DaemonSet")
			pod := checkDaemonSet(t, ds)
			c := exporterContainer(t, ds)
			var got []string
			for _, a := range c.strings("args") {
				if strings.HasPrefix(a, "--collector.acceptwait") {
					got = append(got, a)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("acceptwait args %q, want %q", got, tc.want)
			}
			if tc.want == nil {
				return
			}
			if !equalYAML(volume(t, pod, "tracefs").get("hostPath"), `{path: /sys/kernel/tracing}`) {
				t.Errorf("tracefs volume %v", volume(t, pod, "tracefs").m)
			}
		})
	}
}

// TestValueErrors: contradictory values fail to render.
func TestValueErrors(t *testing.T) {
	for _, set := range []string{
		"prometheus.monitor.enabled=true,service.enabled=false",
		"web.config.existingSecret=x,web.config.content.tls_server_config.cert_file=y",
		"prometheusRule.enabled=true,prometheusRule.clusterLabel=k8s-cluster",
		"acceptWait.enabled=true,acceptWait.method=kprobe",
	} {
		cmd := exec.Command(helmPath(t), "template", release, chart, "--set", set)
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("--set %s rendered:\n%.300s", set, out)
		}
	}
	// An existing Secret is mounted and used, and none is made.
	objs := render(t, "--set", "web.config.existingSecret=my-web")
	checkKinds(t, objs, "DaemonSet", "Service", "ServiceAccount")
	ds := objs.one(t, "DaemonSet")
	if got := volume(t, ds.obj("spec", "template", "spec"), "web-config").str("secret", "secretName"); got != "my-web" {
		t.Errorf("web-config volume from Secret %q, want my-web", got)
	}
	if !slices.Contains(exporterContainer(t, ds).strings("args"), "--web.config.file=/etc/listenq-exporter/web/web-config.yml") {
		t.Error("no --web.config.file")
	}
}

// --- checks ------------------------------------------------------------

// checkDaemonSet checks what must hold whatever the values, and returns
// the pod spec.
func checkDaemonSet(t *testing.T, ds obj) obj {
	t.Helper()
	tmpl := ds.obj("spec", "template")
	checkSubset(t, "DaemonSet selector", ds.obj("spec", "selector", "matchLabels"), tmpl.obj("metadata", "labels"))
	pod := tmpl.obj("spec")
	if pod.get("hostNetwork") != true || pod.get("hostPID") != true {
		t.Error("the exporter must run in the node's network and PID namespaces")
	}
	if pod.get("automountServiceAccountToken") != false {
		t.Error("the pods automount a service account token")
	}
	c := exporterContainer(t, ds)
	args := c.strings("args")
	acceptWait := slices.Contains(args, "--collector.acceptwait")
	caps := wantCapabilities
	if acceptWait {
		caps = slices.Concat(wantCapabilities, wantAcceptWaitCapabilities)
	}
	if !equalYAML(c.get("securityContext"), fmt.Sprintf(`{runAsUser: 0, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL], add: %s}}`, strings.ReplaceAll(fmt.Sprint(caps), " ", ", "))) {
		t.Errorf("securityContext %v", c.get("securityContext"))
	}
	if got := c.get("securityContext", "capabilities", "add"); !reflect.DeepEqual(got, caps) {
		t.Errorf("capabilities %v, want %v", got, caps)
	}
	volumes := map[string]obj{}
	for _, v := range pod.list("volumes") {
		volumes[v.str("name")] = v
	}
	mounted := map[string]bool{}
	for _, m := range c.list("volumeMounts") {
		name := m.str("name")
		mounted[name] = true
		v, ok := volumes[name]
		if !ok {
			t.Errorf("volumeMount %q names no volume", name)
			continue
		}
		if m.get("readOnly") != true {
			t.Errorf("volumeMount %q is writable", name)
		}
		// A host path is mounted at the same path under /host, where
		// --path.rootfs=/host finds it; tracefs at its own path.
		if p := v.str("hostPath", "path"); p == tracefs {
			if m.str("mountPath") != tracefs {
				t.Errorf("tracefs mounted at %s, want %s", m.str("mountPath"), tracefs)
			}
		} else if p != "" && m.str("mountPath") != "/host"+p {
			t.Errorf("host path %s mounted at %s, want /host%s", p, m.str("mountPath"), p)
		}
	}
	// tracefs exactly when the acceptwait collector is on.
	if mounted := mountPath(c, "tracefs") == tracefs; mounted != acceptWait {
		t.Errorf("tracefs mounted: %v, --collector.acceptwait: %v", mounted, acceptWait)
	}
	for name := range volumes {
		if !mounted[name] {
			t.Errorf("volume %q is not mounted", name)
		}
	}
	if !equalYAML(volumes["proc"].get("hostPath"), `{path: /proc}`) {
		t.Errorf("proc volume %v", volumes["proc"].m)
	}
	for _, m := range c.list("volumeMounts") {
		if m.str("name") == "netns" && m.str("mountPropagation") != "HostToContainer" {
			t.Error("/run/netns is not mounted with HostToContainer propagation: pods started later would be missed")
		}
	}
	for _, want := range []string{"--path.procfs=/host/proc", "--path.rootfs=/host"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	// The port the exporter listens on is the container port.
	port := fmt.Sprint(c.list("ports")[0].get("containerPort"))
	if !slices.Contains(args, "--web.listen-address=:"+port) {
		t.Errorf("args %q do not listen on the container port %s", args, port)
	}
	return pod
}

func checkService(t *testing.T, svc, ds obj) {
	t.Helper()
	checkSubset(t, "Service selector", svc.obj("spec", "selector"), ds.obj("spec", "template", "metadata", "labels"))
	c := exporterContainer(t, ds)
	target := svc.list("spec", "ports")[0].str("targetPort")
	if !slices.ContainsFunc(c.list("ports"), func(p obj) bool { return p.str("name") == target }) {
		t.Errorf("Service targetPort %q is no container port", target)
	}
}

// checkPodMonitor: it selects the exporter's pods, on their port, with the
// relabelling of the shipped scrape configuration after the user's
// userRelabelings.
func checkPodMonitor(t *testing.T, pm, ds obj, userRelabelings int) {
	t.Helper()
	checkSubset(t, "PodMonitor selector", pm.obj("spec", "selector", "matchLabels"), ds.obj("spec", "template", "metadata", "labels"))
	ep := endpoints(t, pm)
	c := exporterContainer(t, ds)
	if !slices.ContainsFunc(c.list("ports"), func(p obj) bool { return p.str("name") == ep.str("port") }) {
		t.Errorf("PodMonitor port %q is no container port", ep.str("port"))
	}
	checkRelabelings(t, "PodMonitor", ep, userRelabelings)
	checkJob(t, "PodMonitor", pm, ds.obj("spec", "template", "metadata", "labels"))
}

func checkServiceMonitor(t *testing.T, sm, svc obj, userRelabelings int) {
	t.Helper()
	checkSubset(t, "ServiceMonitor selector", sm.obj("spec", "selector", "matchLabels"), svc.obj("metadata", "labels"))
	ep := endpoints(t, sm)
	if svc.list("spec", "ports")[0].str("name") != ep.str("port") {
		t.Errorf("ServiceMonitor port %q is not the Service's", ep.str("port"))
	}
	checkRelabelings(t, "ServiceMonitor", ep, userRelabelings)
	checkJob(t, "ServiceMonitor", sm, svc.obj("metadata", "labels"))
}

// checkJob: the job label comes from a label whose value the rules' job
// matcher (job=~".*listenq.*") accepts.
func checkJob(t *testing.T, kind string, m, labels obj) {
	t.Helper()
	if job := labels.str(m.str("spec", "jobLabel")); !strings.Contains(job, "listenq") {
		t.Errorf("%s: job would be %q (from label %q), which the rules' job matcher does not select", kind, job, m.str("spec", "jobLabel"))
	}
}

// checkRelabelings: honorLabels, and after the user's relabelings exactly
// the relabelling of deploy/prometheus/scrape-config.yml (its discovery
// keep rules aside, which the monitor's selector replaces), in the
// operator's spelling, with the labeldrop last.
func checkRelabelings(t *testing.T, kind string, ep obj, user int) {
	t.Helper()
	if ep.get("honorLabels") != true {
		t.Errorf("%s: honorLabels is not true: pods' namespace, pod and container labels would be overwritten", kind)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			HonorLabels    bool             `yaml:"honor_labels"`
			RelabelConfigs []map[string]any `yaml:"relabel_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, "../prometheus/scrape-config.yml", &cfg)
	rename := map[string]string{"source_labels": "sourceLabels", "target_label": "targetLabel"}
	var want []any
	for _, rc := range cfg.ScrapeConfigs[0].RelabelConfigs {
		if rc["action"] == "keep" {
			continue
		}
		m := map[string]any{}
		for k, v := range rc {
			if r, ok := rename[k]; ok {
				k = r
			}
			m[k] = normalize(v)
		}
		want = append(want, m)
	}
	got, _ := ep.get("relabelings").([]any)
	if len(got) != user+len(want) {
		t.Fatalf("%s relabelings %v, want %d of the user's then %v", kind, got, user, want)
	}
	ours := got[user:]
	for _, w := range want {
		if !slices.ContainsFunc(ours, func(g any) bool { return reflect.DeepEqual(g, w) }) {
			t.Errorf("%s relabelings %v lack %v (deploy/prometheus/scrape-config.yml)", kind, ours, w)
		}
	}
	if last := ours[len(ours)-1]; !reflect.DeepEqual(last, want[len(want)-1]) || want[len(want)-1].(map[string]any)["action"] != "labeldrop" {
		t.Errorf("%s: the last relabeling is %v, want the labeldrop of the scrape config", kind, last)
	}
}

func checkDashboard(t *testing.T, cm obj, label, value string) {
	t.Helper()
	if got := cm.str("metadata", "labels", label); got != value {
		t.Errorf("dashboard ConfigMap label %s=%q, want %q", label, got, value)
	}
	src, err := os.ReadFile("../../dashboards/listenq.json")
	if err != nil {
		t.Fatal(err)
	}
	got := cm.str("data", "listenq.json")
	if got != strings.TrimSuffix(string(src), "\n") {
		t.Error("the dashboard ConfigMap's listenq.json is not dashboards/listenq.json")
	}
	if !json.Valid([]byte(got)) {
		t.Error("the dashboard ConfigMap's listenq.json is not JSON")
	}
}

func checkKinds(t *testing.T, objs objects, want ...string) {
	t.Helper()
	var got []string
	for _, o := range objs {
		got = append(got, o.str("kind"))
		if name := o.str("metadata", "name"); name == "" || len(name) > 63 {
			t.Errorf("%s has name %q", o.str("kind"), name)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("rendered kinds %v, want %v", got, want)
	}
}

// checkSubset: every label of sel is in labels, with the same value.
func checkSubset(t *testing.T, what string, sel, labels obj) {
	t.Helper()
	if len(sel.m) == 0 {
		t.Errorf("%s is empty", what)
	}
	for k, v := range sel.m {
		if labels.m[k] != v {
			t.Errorf("%s %s=%v does not match the labels %v", what, k, v, labels.m)
		}
	}
}

// --- rules -------------------------------------------------------------

func sourceRules(t *testing.T) obj {
	var o obj
	readYAML(t, "../../alerts/listenq.rules.yml", &o)
	return o
}

func rules(spec obj) []obj {
	var out []obj
	for _, g := range spec.list("groups") {
		out = append(out, g.list("rules")...)
	}
	return out
}

func ruleNames(spec obj) []string {
	var names []string
	for _, r := range rules(spec) {
		names = append(names, r.name())
	}
	return names
}

// --- helm --------------------------------------------------------------

func helmPath(t *testing.T) string {
	t.Helper()
	return tool(t, "helm", "go install helm.sh/helm/v3/cmd/helm@"+helmVersion)
}

// tool finds name on PATH; without it the test skips, or fails when
// CI=true.
func tool(t *testing.T, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := name + " is not on PATH; install it with: " + install
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true, so this is a failure, not a skip)", msg)
	}
	t.Skipf("%s; skipping. With CI=true this fails.", msg)
	return ""
}

func helmCmd(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(helmPath(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func render(t *testing.T, args ...string) objects {
	t.Helper()
	out := helmCmd(t, append([]string{"template", release, chart, "--namespace", manifestNamespace}, args...)...)
	var objs objects
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("helm template output: %v\n%s", err, out)
		}
		if doc == nil {
			continue
		}
		m, ok := normalize(doc).(map[string]any)
		if !ok {
			t.Fatalf("a rendered document is not an object: %v", doc)
		}
		objs = append(objs, obj{m})
	}
	return objs
}

func appVersion(t *testing.T) string {
	var c struct {
		AppVersion string `yaml:"appVersion"`
	}
	readYAML(t, "listenq-exporter/Chart.yaml", &c)
	return c.AppVersion
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := into.(*obj); ok {
		var v any
		if err := yaml.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		o.m, _ = normalize(v).(map[string]any)
		return
	}
	if err := yaml.Unmarshal(raw, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// --- generic objects ---------------------------------------------------

type obj struct{ m map[string]any }

type objects []obj

func (objs objects) one(t *testing.T, kind string) obj {
	t.Helper()
	var found []obj
	for _, o := range objs {
		if o.str("kind") == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s, rendered %d", kind, len(found))
	}
	return found[0]
}

func (o obj) get(path ...string) any {
	var cur any = o.m
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func (o obj) obj(path ...string) obj {
	m, _ := o.get(path...).(map[string]any)
	return obj{m}
}

func (o obj) str(path ...string) string {
	s, _ := o.get(path...).(string)
	return s
}

func (o obj) list(path ...string) []obj {
	l, _ := o.get(path...).([]any)
	var out []obj
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, obj{m})
		}
	}
	return out
}

func (o obj) strings(path ...string) []string {
	l, _ := o.get(path...).([]any)
	var out []string
	for _, e := range l {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

// name of a rule: its alert or record.
func (o obj) name() string {
	if a := o.str("alert"); a != "" {
		return a
	}
	return o.str("record")
}

func exporterContainer(t *testing.T, ds obj) obj {
	t.Helper()
	cs := ds.list("spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("want one container, got %d", len(cs))
	}
	return cs[0]
}

func endpoints(t *testing.T, monitor obj) obj {
	t.Helper()
	eps := monitor.list("spec", "podMetricsEndpoints")
	if monitor.str("kind") == "ServiceMonitor" {
		eps = monitor.list("spec", "endpoints")
	}
	if len(eps) != 1 {
		t.Fatalf("%s: want one endpoint, got %d", monitor.str("kind"), len(eps))
	}
	return eps[0]
}

func volume(t *testing.T, pod obj, name string) obj {
	t.Helper()
	for _, v := range pod.list("volumes") {
		if v.str("name") == name {
			return v
		}
	}
	t.Fatalf("no volume %q", name)
	return obj{}
}

func mountPath(c obj, name string) string {
	for _, m := range c.list("volumeMounts") {
		if m.str("name") == name {
			return m.str("mountPath")
		}
	}
	return ""
}

func envValue(c obj, name string) string {
	for _, e := range c.list("env") {
		if e.str("name") == name {
			return e.str("value")
		}
	}
	return ""
}

// equalYAML compares a rendered value with one written in YAML.
func equalYAML(got any, want string) bool {
	var w any
	if err := yaml.Unmarshal([]byte(want), &w); err != nil {
		panic(err)
	}
	return reflect.DeepEqual(normalize(got), normalize(w))
}

// normalize turns YAML's map[any]any into map[string]any, and integers
// into int, throughout.
func normalize(v any) any {
	switch v := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = normalize(e)
		}
		return m
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = normalize(e)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			l[i] = normalize(e)
		}
		return l
	case int64:
		return int(v)
	case uint64:
		return int(v)
	default:
		return v
	}
}
