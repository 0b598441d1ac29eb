package helm_test

import (
	"testing"

	"github.com/listenq/listenq_exporter/internal/testkube"
)

// TestRenderedObjectsValidate: a real kube-apiserver (v1.37.2, with the
// Prometheus Operator's CRDs) accepts, by server-side dry-run apply, every
// object the chart renders, with every optional object on and with
// ci/all-values.yaml. Needs what internal/testkube needs (test/kube/build.sh);
// without it the test skips, or fails when CI=true.
func TestRenderedObjectsValidate(t *testing.T) {
	helmPath(t)
	c := testkube.Start(t)
	c.InstallPrometheusOperatorCRDs(t)
	for name, args := range map[string][]string{
		"every object, default values": {"--set", "prometheus.podMonitor.enabled=true,prometheus.monitor.enabled=true,prometheusRule.enabled=true,dashboards.enabled=true,networkPolicy.enabled=true,web.config.content.basic_auth_users.prometheus=$2y$10$x"},
		"ci/all-values.yaml":           {"-f", allValues},
	} {
		t.Run(name, func(t *testing.T) {
			out := helmCmd(t, append([]string{"template", release, chart, "--namespace", manifestNamespace}, args...)...)
			if err := c.ApplyDryRun(t, []byte(out)); err != nil {
				t.Errorf("the API server rejects the chart's objects:\n%v", err)
			}
		})
	}
}
