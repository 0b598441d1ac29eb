// Package testbin gives tests the real programs they run: the exporter
// binary, built once per test binary, and the Debian tools they need
// (promtool, prometheus, nginx, php-fpm), plus the plumbing to run them:
// free loopback ports, child processes stopped with their whole process
// group when the test ends, and bounded waits and HTTP fetches.
//
// A package that calls Exporter runs its tests through Wrap, which removes
// the binary once they are done:
//
//	func TestMain(m *testing.M) { os.Exit(testns.Main(testbin.Wrap(m))) }
//
// A test that needs a tool calls RequireTool, which skips without it and
// fails when CI=true, where the test command installs every tool.
package testbin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildTimeout bounds the build of the exporter.
const buildTimeout = 3 * time.Minute

var (
	wrapped bool // set by Wrap's Run, before any test runs

	build struct {
		once sync.Once
		dir  string // holds the binary; removed by Wrap's Run
		path string
		err  error
	}
)

// Wrap returns m with a Run that runs the tests and then removes the
// exporter binary Exporter built for them. TestMain hands it to testns.Main,
// or calls its Run itself.
func Wrap(m interface{ Run() int }) interface{ Run() int } { return wrapper{m} }

type wrapper struct{ m interface{ Run() int } }

func (w wrapper) Run() int {
	wrapped = true
	code := w.m.Run()
	if build.dir != "" {
		if err := os.RemoveAll(build.dir); err != nil {
			fmt.Fprintln(os.Stderr, "testbin: remove the exporter binary:", err)
		}
	}
	return code
}

// Exporter returns the path of the exporter binary, built from
// ./cmd/listenq_exporter of this module the first time a test of the test
// binary asks for it. A failed build fails every test that asks.
func Exporter(tb testing.TB) string {
	tb.Helper()
	if !wrapped {
		tb.Fatal("testbin.Exporter: TestMain must run the tests through testbin.Wrap, which removes the binary afterwards")
	}
	build.once.Do(func() { build.path, build.err = buildExporter() })
	if build.err != nil {
		tb.Fatalf("build exporter: %v", build.err)
	}
	return build.path
}

func buildExporter() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("the tests do not run inside a Go module (go env GOMOD is empty)")
	}
	dir, err := os.MkdirTemp("", "listenq-bin-")
	if err != nil {
		return "", err
	}
	build.dir = dir
	bin := filepath.Join(dir, "listenq_exporter")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/listenq_exporter")
	cmd.Dir = filepath.Dir(mod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w\n%s", err, out)
	}
	return bin, nil
}

// sbinDirs are searched after PATH, which a non-login root shell may lack
// them in, for the servers Debian installs there (nginx, php-fpm).
var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// RequireTool returns the path of the program name, looked up in PATH and
// then the sbin directories. name may be a glob, for programs Debian names
// after their version (php-fpm* finds php-fpm8.2); the highest match wins.
// Without it the test is skipped, or fails when CI=true: the test command
// (scripts/test.sh) installs debianPackage, so there it must be present.
func RequireTool(tb testing.TB, name, debianPackage string) string {
	tb.Helper()
	if path, ok := lookTool(name); ok {
		return path
	}
	msg := fmt.Sprintf("%s is not installed", name)
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s; the test command installs it: apt-get install %s (CI=true, so this is a failure, not a skip)", msg, debianPackage)
	}
	tb.Skipf("%s (apt-get install %s); skipping. With CI=true this fails.", msg, debianPackage)
	return ""
}

func lookTool(name string) (string, bool) {
	dirs := filepath.SplitList(os.Getenv("PATH"))
	for _, d := range sbinDirs {
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		matches, _ := filepath.Glob(filepath.Join(d, name))
		slices.Sort(matches)
		for _, m := range slices.Backward(matches) {
			if fi, err := os.Stat(m); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return m, true
			}
		}
	}
	return "", false
}

// FreePort returns a loopback TCP port nothing listens on right now.
func FreePort(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// ShortTempDir is tb.TempDir, unless that is too long for unix socket paths
// in it (108 bytes with the NUL) to have names of up to 27 bytes; then it
// is a shorter directory under /tmp, removed when the test ends.
func ShortTempDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	if len(dir) < 80 {
		return dir
	}
	dir, err := os.MkdirTemp("/tmp", "lq-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
