// Package testkube runs a real kube-apiserver for tests that check
// Kubernetes manifests the way a cluster does: Start brings up Debian's etcd
// and kube-apiserver v1.37.2 on loopback, and the Cluster applies YAML
// documents to it, for real or as a server-side dry run (dryRun=All), so the
// API server's own defaulting, validation and admission judge them, and
// CRDs such as the Prometheus Operator's (InstallPrometheusOperatorCRDs)
// validate custom resources against their OpenAPI schemas.
//
// It needs two programs, found through an environment variable or PATH:
//
//   - kube-apiserver (LISTENQ_KUBE_APISERVER), built by test/kube/build.sh
//     from the wrapper module in test/kube/apiserver: about 9 minutes and
//     170 MB on 2 cores, once; the script skips the build when the binary
//     is there.
//   - etcd (LISTENQ_ETCD), Debian's etcd-server, which test/kube/build.sh
//     installs as root.
//
// Without them Start skips the test, or fails it when CI=true. No
// controllers, scheduler or kubelet run: objects are stored and validated,
// never acted on. Nothing listens beyond 127.0.0.1. Start takes about 3 to
// 10 s (etcd, then the API server's post-start hooks until /readyz), the
// ten large Prometheus Operator CRDs 10 to 25 s more on 2 cores; both
// programs are stopped (their process groups killed) and their directories
// removed when the test ends, also when it fails.
package testkube

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/listenq/listenq_exporter/internal/testbin"
)

const (
	// envAPIServer and envEtcd name the programs; without them they are
	// looked up in PATH (etcd also in /usr/bin, where Debian puts it).
	envAPIServer = "LISTENQ_KUBE_APISERVER"
	envEtcd      = "LISTENQ_ETCD"

	// startTimeout bounds etcd's and the API server's start each.
	startTimeout = 2 * time.Minute
	// requestTimeout bounds one request to the API server.
	requestTimeout = time.Minute

	// FieldManager is the field manager of every apply.
	FieldManager = "listenq-testkube"
)

// Cluster is a running kube-apiserver with its etcd. Its methods may be
// called from one goroutine at a time.
type Cluster struct {
	// URL is the API server's base URL, https://127.0.0.1:PORT.
	URL string
	// Token is a bearer token of a user in group system:masters; the
	// server also authorizes everything (AlwaysAllow).
	Token string
	// Client trusts the server's certificate and sends Token.
	Client *http.Client
	// Kubeconfig is a kubeconfig file for kubectl or helm.
	Kubeconfig string

	apiserver  *testbin.Proc
	namespaces map[string]bool // created or seen to exist
}

// Start starts etcd and kube-apiserver on free loopback ports, waits until
// the API server is ready and returns it. Both are stopped and their
// directories removed when the test ends. Without the programs the test is
// skipped, or fails when CI=true.
func Start(tb testing.TB) *Cluster {
	tb.Helper()
	apiserverBin := lookProgram(tb, envAPIServer, "kube-apiserver", "build it with test/kube/build.sh DIR and set "+envAPIServer+"=DIR/kube-apiserver")
	etcdBin := lookProgram(tb, envEtcd, "etcd", "apt-get install etcd-server, or run test/kube/build.sh as root")

	began := time.Now()
	dir := testbin.ShortTempDir(tb)
	clientURL := "http://127.0.0.1:" + testbin.FreePort(tb)
	peerURL := "http://127.0.0.1:" + testbin.FreePort(tb)
	etcd := testbin.Start(tb, etcdBin,
		"--name=testkube",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+clientURL,
		"--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=testkube="+peerURL,
		"--initial-cluster-state=new",
		"--logger=zap",
		"--log-outputs=stderr",
	)
	if !etcd.WaitHTTP(tb, clientURL+"/health", startTimeout) {
		tb.Fatalf("etcd exited: %v\n%s", etcd.Err(), etcd.Output())
	}

	pki := filepath.Join(dir, "pki")
	if err := os.Mkdir(pki, 0o700); err != nil {
		tb.Fatal(err)
	}
	certPEM := writeServingCert(tb, pki)
	writeServiceAccountKeys(tb, pki)
	token := randomHex(tb, 16)
	tokens := filepath.Join(pki, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}

	port := testbin.FreePort(tb)
	url := "https://127.0.0.1:" + port
	apiserver := testbin.Start(tb, apiserverBin,
		"--etcd-servers="+clientURL,
		"--bind-address=127.0.0.1",
		"--secure-port="+port,
		"--cert-dir="+pki,
		"--tls-cert-file="+filepath.Join(pki, "serving.crt"),
		"--tls-private-key-file="+filepath.Join(pki, "serving.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--token-auth-file="+tokens,
		"--authorization-mode=AlwaysAllow",
		// Only the API server runs: no endpoints of its own to keep in the
		// kubernetes Service, and no controller to create the service
		// accounts the ServiceAccount admission plugin wants for pods.
		"--endpoint-reconciler-type=none",
		"--disable-admission-plugins=ServiceAccount",
		// As kubeadm and most clusters: privileged containers validate.
		"--allow-privileged=true",
		"--profiling=false",
	)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	c := &Cluster{
		URL:   url,
		Token: token,
		Client: &http.Client{
			Timeout: requestTimeout,
			Transport: &bearerTransport{token: token, base: &http.Transport{
				TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
				MaxIdleConnsPerHost: 4,
			}},
		},
		apiserver:  apiserver,
		namespaces: map[string]bool{},
	}
	tb.Cleanup(c.Client.CloseIdleConnections)
	testbin.WaitFor(tb, startTimeout, "kube-apiserver /readyz", []*testbin.Proc{apiserver, etcd}, func() (bool, string) {
		body, err := testbin.Get(c.Client, url+"/readyz")
		if err != nil {
			return false, err.Error()
		}
		return strings.TrimSpace(body) == "ok", body
	})
	c.Kubeconfig = writeKubeconfig(tb, dir, url, token, certPEM)
	tb.Logf("kube-apiserver ready at %s after %v", url, time.Since(began).Round(time.Millisecond))
	return c
}

// lookProgram returns the path of the program named by env, or else of
// name in PATH or /usr/bin. Without it the test is skipped, or fails when
// CI=true.
func lookProgram(tb testing.TB, env, name, how string) string {
	tb.Helper()
	if p := os.Getenv(env); p != "" {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			tb.Fatalf("%s=%s: not an executable file", env, p)
		}
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := filepath.Join("/usr/bin", name); isExecutable(p) {
		return p
	}
	msg := fmt.Sprintf("%s not found (%s or PATH): %s", name, env, how)
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s (CI=true, so this is a failure, not a skip)", msg)
	}
	tb.Skipf("%s; skipping. With CI=true this fails.", msg)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// bearerTransport adds the bearer token to every request.
type bearerTransport struct {
	token string
	base  *http.Transport
}

func (t *bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.base.RoundTrip(r)
}

func (t *bearerTransport) CloseIdleConnections() { t.base.CloseIdleConnections() }

// writeServingCert writes a self-signed ECDSA certificate for 127.0.0.1
// and localhost, serving.crt and serving.key, to dir and returns the
// certificate in PEM.
func writeServingCert(tb testing.TB, dir string) []byte {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "testkube kube-apiserver"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	writePEM(tb, filepath.Join(dir, "serving.crt"), certPEM)
	writePEM(tb, filepath.Join(dir, "serving.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	return certPEM
}

// writeServiceAccountKeys writes the key pair that signs and verifies
// service account tokens, sa.key and sa.pub, to dir.
func writeServiceAccountKeys(tb testing.TB, dir string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	writePEM(tb, filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	writePEM(tb, filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
}

func writePEM(tb testing.TB, path string, data []byte) {
	tb.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
}

func randomHex(tb testing.TB, n int) string {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// writeKubeconfig writes a kubeconfig for the cluster to dir and returns
// its path.
func writeKubeconfig(tb testing.TB, dir, url, token string, caPEM []byte) string {
	tb.Helper()
	ca := filepath.Join(dir, "pki", "ca.crt")
	writePEM(tb, ca, caPEM)
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: testkube
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: testkube
  context:
    cluster: testkube
    user: admin
current-context: testkube
`, url, ca, token)
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}
