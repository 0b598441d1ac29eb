package main

import (
	"os"
	"regexp"
	"testing"
)

// TestBuildFilesCarryVersion: the image and the CI entry point are built
// the way the README says. test/image builds the image for real; this
// checks the files that carry the version into it, and the CI entry point,
// which is this suite.
func TestBuildFilesCarryVersion(t *testing.T) {
	for _, c := range []struct {
		file string
		want []string
	}{
		// make build stamps the version and revision into build_info;
		// make docker builds the image from that binary and passes both
		// for its labels...
		{"../../Makefile", []string{`version\.Version=\$\(VERSION\)`, `version\.Revision=\$\(REV\)`,
			`(?m)^docker: build$`, `build[^\n]*--build-arg VERSION=\$\(VERSION\)[^\n]*--build-arg REVISION=\$\(REV\)`}},
		// ...which the Dockerfile sets...
		{"../../Dockerfile", []string{`COPY listenq_exporter `, `ARG REVISION`, `org\.opencontainers\.image\.version="\$\{VERSION\}"`, `org\.opencontainers\.image\.revision="\$\{REVISION\}"`}},
		// ...and the from-source variant stamps them in itself.
		{"../../Dockerfile.build", []string{`version\.Version=\$\{VERSION\}`, `version\.Revision=\$\{REVISION\}`}},
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
