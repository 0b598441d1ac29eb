// Package kube checks the Kubernetes manifests in deploy/kubernetes against
// a real kube-apiserver v1.37.2 with the Prometheus Operator CRDs
// installed, by server-side dry-run apply (see internal/testkube).
//
// It needs kube-apiserver, built by test/kube/build.sh DIR (about 9 minutes
// and 170 MB once; LISTENQ_KUBE_APISERVER=DIR/kube-apiserver), and Debian's
// etcd-server, which build.sh installs as root. Without them the test
// skips, or fails when CI=true. It takes about 20 to 45 s on 2 cores, most
// of it installing the CRDs.
package kube

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/listenq/listenq_exporter/internal/testkube"
)

// manifestDir is deploy/kubernetes, from this package's directory.
const manifestDir = "../../deploy/kubernetes"

func TestManifestsValidate(t *testing.T) {
	c := testkube.Start(t)
	c.InstallPrometheusOperatorCRDs(t)

	t.Run("deploy/kubernetes", func(t *testing.T) {
		files, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		names := make([]string, len(files))
		for i, f := range files {
			names[i] = filepath.Base(f)
		}
		for _, want := range []string{"daemonset.yaml", "podmonitor.yaml"} {
			if !slices.Contains(names, want) {
				t.Errorf("%s/%s is missing (found %v)", manifestDir, want, names)
			}
		}
		for _, f := range files {
			doc, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.ApplyDryRun(t, doc); err != nil {
				t.Errorf("%s: the API server rejects it:\n%v", filepath.Base(f), err)
			}
		}
	})

	// The same server rejects what is wrong, saying where: a manifest
	// passing above means something.
	rejects := []struct {
		name  string
		doc   string
		wants []string // in the error
	}{
		{
			name: "DaemonSet",
			doc: `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: broken
  namespace: testkube-broken
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: listenq-exporter
  template:
    metadata:
      labels:
        app.kubernetes.io/name: something-else
    spec:
      containers:
        - name: exporter
          image: listenq_exporter:latest
          volumeMounts:
            - name: missing
              mountPath: /host/proc
`,
			wants: []string{
				"DaemonSet testkube-broken/broken",
				"spec.template.metadata.labels",
				"`selector` does not match template `labels`",
				`spec.template.spec.containers[0].volumeMounts[0].name: Not found: "missing"`,
			},
		},
		{
			name: "PodMonitor",
			doc: `apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: broken
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: listenq-exporter
  podMetricsEndpoints:
    - port: metrics
      relabelings:
        - regex: namespace|pod|container
          action: bogus
`,
			wants: []string{
				"PodMonitor default/broken",
				"spec.podMetricsEndpoints[0].relabelings[0].action",
				`Unsupported value: "bogus"`,
			},
		},
	}
	for _, tc := range rejects {
		t.Run("rejects broken "+tc.name, func(t *testing.T) {
			err := c.ApplyDryRun(t, []byte(tc.doc))
			if err == nil {
				t.Fatal("the API server accepts it")
			}
			t.Logf("rejected as it should be: %v", err)
			for _, want := range tc.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the error does not say %q:\n%v", want, err)
				}
			}
		})
	}
}
