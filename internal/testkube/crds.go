package testkube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// PrometheusOperatorModule and PrometheusOperatorVersion are the Go module
// whose example/prometheus-operator-crd/*.yaml InstallPrometheusOperatorCRDs
// installs (newer versions are refused by the module proxy here).
const (
	PrometheusOperatorModule  = "github.com/prometheus-operator/prometheus-operator"
	PrometheusOperatorVersion = "v0.85.0"
)

const (
	// crdTimeout bounds the wait for CRDs to be established.
	crdTimeout = time.Minute
	// downloadTimeout bounds go mod download.
	downloadTimeout = 5 * time.Minute
)

// InstallPrometheusOperatorCRDs installs the Prometheus Operator's CRDs
// (monitoring.coreos.com: PodMonitor, ServiceMonitor, PrometheusRule, …)
// for real and waits until they are established. It finds them in the
// module cache with go mod download, run from this repository's root,
// which needs the module proxy only the first time. It fails the test when
// they cannot be found or installed.
func (c *Cluster) InstallPrometheusOperatorCRDs(tb testing.TB) {
	tb.Helper()
	began := time.Now()
	dir, err := moduleDir(PrometheusOperatorModule, PrometheusOperatorVersion)
	if err != nil {
		tb.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "example", "prometheus-operator-crd", "*.yaml"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no CRDs in %s/example/prometheus-operator-crd (%v)", dir, err)
	}
	var names []string
	for _, f := range files {
		doc, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		if err := c.Apply(tb, doc); err != nil {
			tb.Fatalf("install the CRDs of %s: %v", filepath.Base(f), err)
		}
		parts, err := SplitYAML(doc)
		if err != nil {
			tb.Fatal(err)
		}
		for _, p := range parts {
			if obj, err := identify(p); err == nil && obj != nil && obj.Kind == "CustomResourceDefinition" {
				names = append(names, obj.Name)
			}
		}
	}
	if err := c.WaitEstablished(tb, crdTimeout, names...); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("%d Prometheus Operator CRDs established after %v", len(names), time.Since(began).Round(time.Millisecond))
}

// moduleDir returns the directory of module@version in the module cache,
// downloading it through the module proxy when it is not there.
func moduleDir(module, version string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), downloadTimeout)
	defer cancel()
	root, err := repoRoot(ctx)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module+"@"+version)
	cmd.Dir = root
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct {
		Dir   string
		Error string
	}
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("go mod download %s@%s: %s", module, version, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w\n%s%s", module, version, err, out, stderr.String())
	}
	if info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: no Dir in %s", module, version, out)
	}
	return info.Dir, nil
}

// repoRoot is the directory of this module's go.mod.
func repoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("the tests do not run inside a Go module (go env GOMOD is empty)")
	}
	return filepath.Dir(mod), nil
}
