package main

import (
	"os"
	"regexp"
	"testing"
)

// TestBuildFilesCarryVersion: the image and the CI entry point are built
// the way the README says. Neither can be run here (no container engine;
// CI is this suite), so their files are checked.
func TestBuildFilesCarryVersion(t *testing.T) {
	for _, c := range []struct {
		file string
		want []string
	}{
		// make docker passes the version and revision make build uses...
		{"../../Makefile", []string{`docker build[^\n]*--build-arg VERSION=\$\(VERSION\)`, `docker build[^\n]*--build-arg REVISION=\$\(REV\)`}},
		// ...and the Dockerfile puts both into build_info.
		{"../../Dockerfile", []string{`ARG REVISION`, `version\.Version=\$\{VERSION\}`, `version\.Revision=\$\{REVISION\}`}},
		// A runner without root must not pass by skipping the kernel tests.
		{"../../.ci/run", []string{`(?m)^export CI=true$`, `(?m)^make test$`}},
		{"../../scripts/test.sh", []string{`go test -race `}},
	} {
		b, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		for _, re := range c.want {
			if !regexp.MustCompile(re).Match(b) {
				t.Errorf("%s does not match %s", c.file, re)
			}
		}
	}
}
