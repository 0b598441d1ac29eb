package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/internal/gctune"
	"github.com/listenq/listenq_exporter/internal/testbin"
	"github.com/listenq/listenq_exporter/internal/testns"
)

func TestMain(m *testing.M) {
	os.Exit(testns.Main(testbin.Wrap(m)))
}

func TestBadInputFailsAtStartup(t *testing.T) {
	binary := testbin.Exporter(t)
	badConfig := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(badConfig, []byte("tls_server_config: [not, a, map\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--no-such-flag"}, "unknown long flag '--no-such-flag'"},
		{"bad regexp", []string{"--filter.port-include=(80"}, "--filter.port-include"},
		{"bad cap", []string{"--filter.max-listeners=0"}, "--filter.max-listeners"},
		{"huge cap", []string{"--filter.max-listeners=99999999999999999999"}, `got "99999999999999999999"`},
		{"tiny sampler interval", []string{"--sampler.interval=1ns"}, "--sampler.interval"},
		{"negative window, sampler off", []string{"--sampler.interval=0", "--sampler.window=-1s"}, "--sampler.window"},
		{"negative syn-queue interval", []string{"--collector.tcp.syn-queue.interval=-1s"}, "--collector.tcp.syn-queue.interval"},
		{"relative telemetry path", []string{"--web.telemetry-path=metrics"}, "--web.telemetry-path"},
		{"empty telemetry path", []string{"--web.telemetry-path="}, "--web.telemetry-path"},
		{"wildcard telemetry path", []string{"--web.telemetry-path=/{x}"}, "--web.telemetry-path"},
		{"method in telemetry path", []string{"--web.telemetry-path=GET /metrics"}, "--web.telemetry-path"},
		{"subtree telemetry path", []string{"--web.telemetry-path=/metrics/"}, "--web.telemetry-path"},
		{"negative max requests", []string{"--web.max-requests=-1"}, "--web.max-requests"},
		{"sampler max cpu", []string{"--sampler.max-cpu=2"}, "--sampler.max-cpu"},
		{"unreadable procfs", []string{"--path.procfs=" + filepath.Join(t.TempDir(), "nope")}, "--path.procfs"},
		{"bad web config", []string{"--web.config.file=" + badConfig}, "--web.config.file"},
		{"missing web config", []string{"--web.config.file=" + badConfig + ".missing"}, "--web.config.file"},
		{"bad namespace filter", []string{"--netns.namespace-include=team-(a"}, "--netns.namespace-include"},
		{"bad pod filter", []string{"--netns.pod-exclude=[x"}, "--netns.pod-exclude"},
		{"short refresh", []string{"--netns.refresh-interval=10ms"}, "--netns.refresh-interval"},
		{"negative refresh", []string{"--netns.refresh-interval=-1s"}, "--netns.refresh-interval"},
		{"bad runtime endpoint", []string{"--runtime.endpoint=tcp://10.0.0.1:1"}, "--runtime.endpoint"},
		{"relative runtime endpoint", []string{"--runtime.endpoint=run/containerd.sock"}, "--runtime.endpoint"},
		{"zero runtime timeout", []string{"--runtime.endpoint=/run/x.sock", "--runtime.timeout=0s"}, "--runtime.timeout"},
		{"negative owner interval", []string{"--owner.min-scan-interval=-1s"}, "--owner.min-scan-interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--web.listen-address=127.0.0.1:" + testbin.FreePort(t)}, tc.args...)
			cmd := exec.Command(binary, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("exit status 0, want failure")
				}
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("still running after 10s, want a start-up failure")
			}
			msg := strings.TrimSpace(stderr.String())
			if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, tc.want) {
				t.Errorf("stderr = %q, want one line mentioning %q", msg, tc.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(testbin.Exporter(t), "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "listenq_exporter, version") {
		t.Errorf("--version: %v: %q", err, out)
	}
}

func TestScrapeOverHTTP(t *testing.T) {
	testns.Require(t)
	l := testns.ListenTCP(t, "127.0.0.1:0", 2, false)
	testns.DialTCP(t, l.Addr, 5)
	base := startExporter(t)

	body := get(t, http.DefaultClient, base+"/metrics", http.StatusOK)
	want := fmt.Sprintf(`listenq_queue_length{container="",inode="%d",listener="%s",namespace="",netns="",pod="",port="%d",process="%s",proto="tcp"} 3`,
		l.Inode, l.Addr, l.Addr.Port(), testComm(t))
	if !strings.Contains(body, want) {
		t.Errorf("scrape lacks %q", want)
	}
	for _, name := range []string{"listenq_exporter_build_info", "go_goroutines", "process_resident_memory_bytes", "listenq_scrape_collector_success"} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("scrape lacks %s", name)
		}
	}
	t.Run("promtool check metrics", func(t *testing.T) { promtoolCheckMetrics(t, body) })

	landing := get(t, http.DefaultClient, base+"/", http.StatusOK)
	if strings.Contains(landing, "debug/pprof") {
		t.Errorf("landing page links profiles the exporter does not serve: %q", landing)
	}
	if !strings.Contains(landing, `href="/metrics"`) {
		t.Errorf("landing page does not link to /metrics: %q", landing)
	}
}

// The first scrape names the owners of TCP and unix listeners alike, even
// with a long owner-scan rate limit: each protocol has its own limit.
func TestFirstScrapeNamesAllOwners(t *testing.T) {
	testns.Require(t)
	tl := testns.ListenTCP(t, "127.0.0.1:0", 4, false)
	ul := testns.ListenUnix(t, filepath.Join(t.TempDir(), "app.sock"), unix.SOCK_STREAM, 4)
	base := startExporter(t, "--owner.min-scan-interval=1h")
	body := get(t, http.DefaultClient, base+"/metrics", http.StatusOK)
	comm := testComm(t)
	for _, want := range []string{
		fmt.Sprintf(`listenq_queue_limit{container="",inode="%d",listener="%s",namespace="",netns="",pod="",port="%d",process="%s",proto="tcp"} 4`, tl.Inode, tl.Addr, tl.Addr.Port(), comm),
		fmt.Sprintf(`listenq_queue_limit{container="",inode="%d",listener="%s",namespace="",netns="",pod="",port="",process="%s",proto="unix"} 4`, ul.Inode, ul.Path, comm),
		`listenq_listeners_omitted{namespace="",netns="",pod="",proto="tcp",reason="owner_pending"} 0`,
		`listenq_listeners_omitted{namespace="",netns="",pod="",proto="unix",reason="owner_pending"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("first scrape lacks %s", want)
		}
	}
}

// promtoolCheckMetrics lints the exposition the way Prometheus maintainers
// do; promtool comes from Debian's prometheus package. It runs as a subtest
// of its own, so that without promtool (and without CI=true) only the lint
// is skipped.
func promtoolCheckMetrics(t *testing.T, body string) {
	t.Helper()
	cmd := exec.Command(testbin.RequireTool(t, "promtool", "prometheus"), "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSignedCert(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "web.yml")
	web := fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prometheus: %s\n", certFile, keyFile, hash)
	if err := os.WriteFile(config, []byte(web), 0o600); err != nil {
		t.Fatal(err)
	}
	base := strings.Replace(startExporter(t, "--web.config.file="+config), "http://", "https://", 1)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	get(t, client, base+"/metrics", http.StatusUnauthorized)
	get(t, client, strings.Replace(base, "https://", "https://prometheus:wrong@", 1)+"/metrics", http.StatusUnauthorized)
	body := get(t, client, strings.Replace(base, "https://", "https://prometheus:s3cret@", 1)+"/metrics", http.StatusOK)
	if !strings.Contains(body, "listenq_scrape_collector_success") {
		t.Errorf("authenticated scrape lacks exporter metrics")
	}
	// Plain HTTP to a TLS port is refused.
	get(t, client, strings.Replace(base, "https://", "http://", 1)+"/metrics", http.StatusBadRequest)
}

// startExporter runs the binary on a free loopback port until the test ends
// and returns its base URL once it accepts connections.
func startExporter(t *testing.T, args ...string) string {
	t.Helper()
	addr := "127.0.0.1:" + testbin.FreePort(t)
	flags := []string{"--web.listen-address=" + addr}
	if !strings.Contains(strings.Join(args, " "), "--owner.min-scan-interval") {
		flags = append(flags, "--owner.min-scan-interval=0s")
	}
	// These tests read the private namespace they run in as the exporter's
	// own (netns=""); discovery would label it by inode, as it is not PID
	// 1's.
	if !strings.Contains(strings.Join(args, " "), "netns.discovery") {
		flags = append(flags, "--no-netns.discovery")
	}
	p := testbin.Start(t, testbin.Exporter(t), append(flags, args...)...)
	testbin.WaitFor(t, 10*time.Second, "the exporter to listen on "+addr, []*testbin.Proc{p}, func() (bool, string) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false, err.Error()
		}
		c.Close()
		return true, ""
	})
	return "http://" + addr
}

// get fetches url and fails the test unless the answer has wantStatus.
func get(t *testing.T, c *http.Client, url string, wantStatus int) string {
	t.Helper()
	status, body, err := testbin.Fetch(c, url)
	if err != nil {
		t.Fatal(err)
	}
	if status != wantStatus {
		t.Fatalf("GET %s: status %d, want %d", url, status, wantStatus)
	}
	return body
}

func testComm(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func selfSignedCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "listenq test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDiscoveryWithoutPrivilege: run as nobody, with no capabilities, the
// exporter cannot enter other namespaces. It serves its own, logs one line
// saying what is missing, and counts the namespaces it could not read.
func TestDiscoveryWithoutPrivilege(t *testing.T) {
	testns.Require(t)
	setpriv := testbin.RequireTool(t, "setpriv", "util-linux")
	testns.AddNamedNetns(t, "denied")
	// nobody must be able to run the binary.
	dir, err := os.MkdirTemp("", "lq-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "listenq_exporter")
	b, err := os.ReadFile(testbin.Exporter(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l := testns.ListenTCP(t, "127.0.0.1:0", 3, false)
	addr := "127.0.0.1:" + testbin.FreePort(t)
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
		bin, "--web.listen-address="+addr, "--netns.discovery", "--runtime.disable", "--owner.min-scan-interval=0s")
	p := testbin.StartCmd(t, cmd)
	var body string
	testbin.WaitFor(t, 10*time.Second, "a scrape with the own namespace's listener", []*testbin.Proc{p}, func() (bool, string) {
		body, err = testbin.Get(http.DefaultClient, "http://"+addr+"/metrics")
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(body, fmt.Sprintf(`inode="%d"`, l.Inode)), "listener not in scrape"
	})
	if !regexp.MustCompile(`(?m)^listenq_netns_discovered\{state="denied"\} [1-9]`).MatchString(body) {
		t.Errorf("scrape does not count denied namespaces:\n%s", grepLines(body, "listenq_netns_discovered"))
	}
	if !regexp.MustCompile(`(?m)^listenq_netns_discovered\{state="read"\} 1$`).MatchString(body) {
		t.Errorf("want exactly the own namespace read:\n%s", grepLines(body, "listenq_netns_discovered"))
	}
	const want = "cannot enter other network namespaces: needs CAP_SYS_ADMIN"
	if n := strings.Count(p.Output(), want); n != 1 {
		t.Errorf("log says %q %d times, want once:\n%s", want, n, p.Output())
	}
}

func grepLines(body, substr string) string {
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestDaemonSetCapabilitiesSuffice runs the exporter as the shipped
// DaemonSet does: uid 0 with every capability dropped but those the
// manifest adds. It must read another namespace (here one made with
// `ip netns add`) and name the owner of a listener there.
func TestDaemonSetCapabilitiesSuffice(t *testing.T) {
	testns.Require(t)
	setpriv := testbin.RequireTool(t, "setpriv", "util-linux")
	caps := daemonSetCapabilities(t)
	other := testns.AddNamedNetns(t, "caps")
	var l *testns.Listener
	other.Do(t, func() { l = testns.ListenTCP(t, "127.0.0.1:8080", 3, false) })
	set := "-all"
	for _, c := range caps {
		set += ",+" + strings.ToLower(c)
	}
	addr := "127.0.0.1:" + testbin.FreePort(t)
	cmd := exec.Command(setpriv, "--inh-caps="+set, "--bounding-set="+set,
		testbin.Exporter(t), "--web.listen-address="+addr, "--runtime.disable", "--owner.min-scan-interval=0s")
	p := testbin.StartCmd(t, cmd)
	want := fmt.Sprintf(`inode="%d",listener="127.0.0.1:8080",namespace="",netns=%q,pod="",port="8080",process=`, l.Inode, other.Name)
	testbin.WaitFor(t, 10*time.Second, "the other namespace's listener, with its owner", []*testbin.Proc{p}, func() (bool, string) {
		body, err := testbin.Get(http.DefaultClient, "http://"+addr+"/metrics")
		if err != nil {
			return false, err.Error()
		}
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "listenq_queue_limit{") && strings.Contains(line, want) {
				return !strings.Contains(line, `process=""`), line
			}
		}
		return false, "no series " + want
	})
	if strings.Contains(p.Output(), "cannot enter") {
		t.Errorf("with the DaemonSet's capabilities %v the exporter could not enter a namespace:\n%s", caps, p.Output())
	}
}

// daemonSetCapabilities reads the capabilities the shipped DaemonSet adds.
func daemonSetCapabilities(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/kubernetes/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var caps []string
	in := false
	for _, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "add:":
			in = true
		case in && strings.HasPrefix(trimmed, "- "):
			caps = append(caps, strings.TrimPrefix(trimmed, "- "))
		case in && trimmed != "" && !strings.HasPrefix(trimmed, "#"):
			in = false
		}
	}
	if len(caps) == 0 {
		t.Fatal("the DaemonSet adds no capability; the parser or the manifest changed")
	}
	return caps
}

// TestMaxRequests: beyond --web.max-requests different scrapes in flight,
// a scrape gets 503, and promhttp_metric_handler_requests_total counts it.
// Identical scrapes share one flight and take one place in the limit.
func TestMaxRequests(t *testing.T) {
	testns.Require(t)
	for range 200 {
		testns.ListenTCP(t, "127.0.0.1:0", 4, false)
	}
	base := startExporter(t, "--web.max-requests=1")
	codes := make(chan int, 100)
	var wg sync.WaitGroup
	for i := range cap(codes) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A query of its own makes each request differ, as scrapes
			// asking for different families would.
			code, _, err := testbin.Fetch(http.DefaultClient, fmt.Sprintf("%s/metrics?scraper=%d", base, i))
			if err != nil {
				t.Error(err)
			}
			codes <- code
		}()
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[http.StatusOK] == 0 || count[http.StatusServiceUnavailable] == 0 {
		t.Fatalf("100 concurrent scrapes with --web.max-requests=1 got %v, want both 200s and 503s", count)
	}
	body := get(t, http.DefaultClient, base+"/metrics", http.StatusOK)
	re := regexp.MustCompile(`(?m)^promhttp_metric_handler_requests_total\{code="503"\} ([0-9]+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil || m[1] != strconv.Itoa(count[http.StatusServiceUnavailable]) {
		t.Errorf("promhttp_metric_handler_requests_total{code=\"503\"} = %v, want %d", m, count[http.StatusServiceUnavailable])
	}
}

// TestIdenticalScrapesShareOneFlight: identical scrapes never hold more
// than one place in --web.max-requests, since those that arrive while one
// is in flight share its answer; so none is refused.
func TestIdenticalScrapesShareOneFlight(t *testing.T) {
	testns.Require(t)
	for range 200 {
		testns.ListenTCP(t, "127.0.0.1:0", 4, false)
	}
	base := startExporter(t, "--web.max-requests=1")
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			code, body, err := testbin.Fetch(http.DefaultClient, base+"/metrics")
			if err != nil || code != http.StatusOK || !strings.Contains(body, "listenq_queue_limit{") {
				t.Errorf("scrape: %d %v (%d bytes)", code, err, len(body))
			}
		})
	}
	wg.Wait()
}

// TestServerClosesIdleConnections: an abandoned keep-alive connection is
// closed at some point, while one a Prometheus server reuses every scrape
// interval is kept.
func TestServerClosesIdleConnections(t *testing.T) {
	s := newServer(http.NewServeMux())
	if s.IdleTimeout < 2*time.Minute || s.IdleTimeout > time.Hour {
		t.Errorf("IdleTimeout = %v, want a few minutes: longer than scrape intervals, not forever", s.IdleTimeout)
	}
	if s.ReadHeaderTimeout <= 0 {
		t.Errorf("ReadHeaderTimeout = %v, want a bound", s.ReadHeaderTimeout)
	}
}

// TestAllCollectorsOffWarns: with every collector switched off the
// exporter still serves its own health, and says in its log that it
// exports nothing else.
func TestAllCollectorsOffWarns(t *testing.T) {
	addr := "127.0.0.1:" + testbin.FreePort(t)
	p := testbin.Start(t, testbin.Exporter(t), "--web.listen-address="+addr, "--no-netns.discovery",
		"--no-collector.tcp", "--no-collector.unix", "--no-collector.netstat", "--no-collector.sysctl")
	testbin.WaitFor(t, 10*time.Second, "the exporter to serve", []*testbin.Proc{p}, func() (bool, string) {
		body, err := testbin.Get(http.DefaultClient, "http://"+addr+"/metrics")
		return err == nil && strings.Contains(body, "listenq_exporter_build_info"), fmt.Sprint(err)
	})
	if !strings.Contains(p.Output(), "every collector is switched off") {
		t.Errorf("no warning that every collector is off:\n%s", p.Output())
	}
}

// TestTunerFollowsGOGC: the exporter tunes the GC target only where GOGC
// does not set one.
func TestTunerFollowsGOGC(t *testing.T) {
	for env, want := range map[string]bool{"": true, "200": false, "off": false} {
		t.Setenv("GOGC", env)
		if got := newTuner() != nil; got != want {
			t.Errorf("GOGC=%q: tuner %v, want %v", env, got, want)
		}
	}
}

// TestReleaseAfterFirst: the heap is handed back once, after the first
// answer is written, not before it and not again.
func TestReleaseAfterFirst(t *testing.T) {
	oldGC := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(oldGC) })
	released := make(chan struct{}, 10)
	old := releaseMemory
	releaseMemory = func() { released <- struct{}{} }
	t.Cleanup(func() { releaseMemory = old })
	answered := false
	h := tuneMemory(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !answered && len(released) > 0 {
			t.Error("released before the first answer was written")
		}
		answered = true
		w.WriteHeader(http.StatusOK)
	}), gctune.New(1<<40, 25))
	for range 3 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/metrics", nil))
	}
	select {
	case <-released:
	case <-time.After(10 * time.Second):
		t.Fatal("the memory was never released")
	}
	time.Sleep(50 * time.Millisecond) // a second release would be under way
	if !answered || len(released) != 0 {
		t.Errorf("answered %v; released %d more times, want once in all", answered, len(released))
	}
}
