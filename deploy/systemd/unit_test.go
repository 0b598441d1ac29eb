// Package systemd_test checks deploy/systemd/listenq_exporter.service
// without systemd as PID 1: systemd-analyze rates and verifies the unit, and
// the exporter runs under strace in an emulation of the unit's sandbox (its
// user and capabilities, ProtectProc's hidepid= and ProtectKernelTunables'
// read-only /proc/sys) so that every system call, socket family and
// namespace it uses can be checked against the unit's filters.
//
// Needs root, strace (Debian strace), systemd-analyze (Debian systemd),
// setpriv and unshare (util-linux), mount and ip (iproute2); without them
// the tests skip, and fail when CI=true.
package systemd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/listenq/listenq_exporter/internal/testbin"
	"github.com/listenq/listenq_exporter/internal/testns"
)

// maxExposure is the overall exposure level `systemd-analyze security`
// gives the unit (systemd 252, Debian 12). An edit that weakens the
// sandbox raises it and fails TestUnitSecurityScore; one that hardens it
// further should lower this too.
const maxExposure = 2.2

// acceptedExposures are the checks of `systemd-analyze security` the unit
// fails on purpose, each with the reason. A check failing that is not here
// fails TestUnitSecurityScore even when the rounded score does not move.
var acceptedExposures = map[string]string{
	"PrivateNetwork=": "it serves scrapes and reads the host's own sockets",
	"IPAddressDeny=":  "scrapes come from wherever Prometheus runs; an operator may restrict it in a drop-in",
	"RestrictAddressFamilies=~AF_(INET|INET6)":            "the HTTP server",
	"RestrictAddressFamilies=~AF_NETLINK":                 "sock_diag",
	"RestrictAddressFamilies=~AF_UNIX":                    "container runtime sockets (--runtime.endpoint, or a drop-in granting the user access to one)",
	"RestrictNamespaces=~net":                             "setns(CLONE_NEWNET) into other network namespaces",
	"CapabilityBoundingSet=~CAP_SYS_ADMIN":                "setns() into other network namespaces",
	"CapabilityBoundingSet=~CAP_SYS_PTRACE":               "other users' /proc/PID/fd and /proc/PID/ns/net",
	"CapabilityBoundingSet=~CAP_(DAC_*|FOWNER|IPC_OWNER)": "CAP_DAC_READ_SEARCH: list other users' /proc/PID/fd",
	"AmbientCapabilities=":                                "a dynamic user gets the three capabilities no other way",
	"PrivateUsers=":                                       "a private user namespace would void the capabilities over the host's namespaces and processes",
	"ProcSubset=":                                         "subset=pid would hide /proc/net and /proc/sys/net",
	"RootDirectory=/RootImage=":                           "it reads the host's /proc, /run/netns and runtime sockets",
	"DeviceAllow=":                                        "ProtectClock=yes itself adds char-rtc r (PrivateDevices=yes leaves no such device)",
}

const unitFile = "listenq_exporter.service"

// sandboxUID stands for the unit's DynamicUser: an unused uid from the
// range systemd allocates them in.
const sandboxUID = 61184

// runFor is how long the traced exporter runs at least: several sampler
// rounds and namespace refreshes (--netns.refresh-interval=1s).
const runFor = 4 * time.Second

func TestMain(m *testing.M) { os.Exit(testns.Main(m)) }

// unit is the [Service] section: every value of every key, in order.
type unit map[string][]string

func readUnit(t *testing.T) unit {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not key=value: %q", unitFile, line)
			}
			u[k] = append(u[k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// last is the value in force for a key set once (the last assignment).
func (u unit) last(t *testing.T, key string) string {
	t.Helper()
	v := u[key]
	if len(v) == 0 {
		t.Fatalf("%s sets no %s=", unitFile, key)
	}
	return v[len(v)-1]
}

// get is the value in force for key, or def when the unit does not set it.
func (u unit) get(key, def string) string {
	if v := u[key]; len(v) > 0 {
		return v[len(v)-1]
	}
	return def
}

func absUnit(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUnitSecurityScore keeps the sandbox from being weakened silently.
func TestUnitSecurityScore(t *testing.T) {
	analyze := testbin.RequireTool(t, "systemd-analyze", "systemd")
	out, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager", absUnit(t)).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure level in:\n%s", out)
	}
	score, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exposure %.1f", score)
	if score > maxExposure {
		version, _ := exec.Command(analyze, "--version").Output()
		first, _, _ := strings.Cut(string(version), "\n")
		t.Errorf("systemd-analyze security rates %s %.1f, more than the %.1f it had: a hardening setting was dropped or weakened (%s).\n%s",
			unitFile, score, maxExposure, first, out)
	}

	raw, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager", "--json=short", absUnit(t)).Output()
	if err != nil {
		t.Fatalf("systemd-analyze security --json=short: %v", err)
	}
	var checks []struct {
		Set         bool   `json:"set"`
		Name        string `json:"name"`
		Description string `json:"description"`
		Exposure    any    `json:"exposure"` // "0.1" or null
	}
	if err := json.Unmarshal(raw, &checks); err != nil {
		t.Fatalf("systemd-analyze security --json=short: %v\n%s", err, raw)
	}
	failing := map[string]bool{}
	for _, c := range checks {
		if c.Set {
			continue
		}
		failing[c.Name] = true
		if why, ok := acceptedExposures[c.Name]; ok {
			t.Logf("exposed on purpose: %s %v (%s): %s", c.Name, c.Exposure, c.Description, why)
		} else {
			t.Errorf("newly exposed: %s %v (%s); harden the unit again, or add it to acceptedExposures with the reason", c.Name, c.Exposure, c.Description)
		}
	}
	for name := range acceptedExposures {
		if !failing[name] {
			t.Logf("%s is no longer exposed: drop it from acceptedExposures (and lower maxExposure if the score fell)", name)
		}
	}
}

// TestUnitVerifies catches misspelt or unknown settings, which systemd
// ignores with a warning.
func TestUnitVerifies(t *testing.T) {
	analyze := testbin.RequireTool(t, "systemd-analyze", "systemd")
	// verify wants ExecStart's program to exist; the unit names its
	// installed path, so check a copy that names a program that exists.
	raw, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	execStart := regexp.MustCompile(`(?m)^ExecStart=\S+`)
	if !execStart.Match(raw) {
		t.Fatalf("%s has no ExecStart=", unitFile)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), unitFile)
	if err := os.WriteFile(copyPath, execStart.ReplaceAll(raw, []byte("ExecStart="+self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--no-pager", copyPath).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, unitFile) {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}

// TestSandboxAllowsWhatTheExporterDoes runs the exporter as the unit would
// (its dynamic user's stand-in, its ambient capabilities and bounding set,
// no_new_privs, a /proc with the unit's hidepid= and a read-only /proc/sys)
// with network-namespace discovery on, a named namespace to enter and a
// container runtime socket to ask, under strace. Every system call it made
// must be one the unit's SystemCallFilter allows, every socket() family one
// RestrictAddressFamilies allows, every namespace it joined or made one
// RestrictNamespaces allows; and it must still read the other namespace
// and name the (root-owned) owner of a listener there.
func TestSandboxAllowsWhatTheExporterDoes(t *testing.T) {
	testns.Require(t)
	strace := testbin.RequireTool(t, "strace", "strace")
	analyze := testbin.RequireTool(t, "systemd-analyze", "systemd")
	setpriv := testbin.RequireTool(t, "setpriv", "util-linux")
	unshare := testbin.RequireTool(t, "unshare", "util-linux")
	testbin.RequireTool(t, "mount", "mount")
	testbin.RequireTool(t, "ip", "iproute2")

	u := readUnit(t)
	if u.last(t, "DynamicUser") != "yes" {
		t.Fatalf("the emulation assumes DynamicUser=yes; the unit has %q", u.last(t, "DynamicUser"))
	}
	allowed := syscallsAllowed(t, analyze, u["SystemCallFilter"])
	families := listSetting(t, u, "RestrictAddressFamilies")
	namespaces := listSetting(t, u, "RestrictNamespaces")
	ambient := setprivCaps(t, u.last(t, "AmbientCapabilities"))
	bounding := setprivCaps(t, u.last(t, "CapabilityBoundingSet"))

	dir, err := os.MkdirTemp("", "lqsysd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exporter := buildRelease(t, dir)

	// A namespace held by a bind mount alone, as `ip netns add` makes it,
	// with a listener there that root owns.
	other := testns.AddNamedNetns(t, "sysd")
	var l *testns.Listener
	other.Do(t, func() { l = testns.ListenTCP(t, "127.0.0.1:8080", 3, false) })

	// A Docker API socket the sandboxed user may use, answering that no
	// container runs: the exporter's AF_UNIX client.
	sock := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, "[]")
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	trace := filepath.Join(dir, "strace.out")
	if err := os.WriteFile(trace, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(trace, 0o666); err != nil { // past the umask
		t.Fatal(err)
	}

	// ProtectProc= and ProtectKernelTunables=, in a mount namespace of its
	// own; then the unit's credentials; then strace and the exporter.
	setup := "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys"
	if pp := u.get("ProtectProc", "default"); pp != "default" {
		setup = "mount -t proc -o hidepid=" + pp + " proc /proc && " + setup
	}
	uid := strconv.Itoa(sandboxUID)
	addr := "127.0.0.1:" + testbin.FreePort(t)
	args := []string{"--mount", "--propagation", "slave", "--", "/bin/sh", "-c", setup + ` && exec "$@"`, "sh",
		setpriv, "--reuid=" + uid, "--regid=" + uid, "--clear-groups",
		"--inh-caps=" + ambient, "--ambient-caps=" + ambient, "--bounding-set=" + bounding,
	}
	if u.get("NoNewPrivileges", "no") == "yes" {
		args = append(args, "--no-new-privs")
	}
	args = append(args, strace, "-f", "-qq", "-C", "-o", trace,
		exporter, "--web.listen-address="+addr, "--owner.min-scan-interval=0s",
		"--netns.refresh-interval=1s", "--runtime.endpoint=docker://"+sock)
	started := time.Now()
	p := testbin.StartCmd(t, exec.Command(unshare, args...))

	url := "http://" + addr + "/metrics"
	if !p.WaitHTTP(t, url, 20*time.Second) {
		t.Fatalf("the exporter exited: %v\n%s", p.Err(), p.Output())
	}
	want := fmt.Sprintf(`inode="%d",listener="127.0.0.1:8080",namespace="",netns=%q,pod="",port="8080",process=`, l.Inode, other.Name)
	var body string
	testbin.WaitFor(t, 20*time.Second, "the other namespace's listener, with its owner, and the runtime up", []*testbin.Proc{p}, func() (bool, string) {
		var err error
		body, err = testbin.Get(http.DefaultClient, url)
		if err != nil {
			return false, err.Error()
		}
		if !runtimeUp.MatchString(body) {
			return false, "listenq_runtime_up is not 1:\n" + grep(body, "listenq_runtime_up")
		}
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "listenq_queue_limit{") && strings.Contains(line, want) {
				return !strings.Contains(line, `process=""`), line
			}
		}
		return false, "no series " + want
	})
	// A few rounds of the sampler and of namespace discovery, then a last
	// scrape.
	time.Sleep(time.Until(started.Add(runFor)))
	if body, err = testbin.Get(http.DefaultClient, url); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body, `listenq_netns_discovered{state="denied"} 0`) {
		t.Errorf("namespaces were denied to the sandboxed exporter:\n%s\n%s", grep(body, "listenq_netns_discovered"), p.Output())
	}

	stopTraced(t, p)
	raw, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	used := summarySyscalls(t, text)
	t.Logf("system calls made: %s", strings.Join(used, " "))
	if !slices.Contains(used, "setns") {
		t.Errorf("the exporter made no setns(): the test did not exercise entering a namespace")
	}
	var refused []string
	for _, s := range used {
		if !allowed[s] {
			refused = append(refused, s)
		}
	}
	if len(refused) > 0 {
		t.Errorf("SystemCallFilter=%q refuses system calls the exporter made: %v", u["SystemCallFilter"], refused)
	}
	checkFamilies(t, text, families)
	checkNamespaces(t, text, namespaces)
	if u.get("MemoryDenyWriteExecute", "no") == "yes" {
		checkWriteExecute(t, text)
	}
}

// buildRelease builds the exporter as `make build` does (static).
func buildRelease(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "listenq_exporter")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/listenq_exporter")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the exporter: %v\n%s", err, out)
	}
	return bin
}

// stopTraced stops the exporter, strace's child, by its PID with SIGTERM
// as systemd would; strace then writes its summary and exits.
func stopTraced(t *testing.T, p *testbin.Proc) {
	t.Helper()
	stracePID := p.Cmd.Process.Pid
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", stracePID, stracePID))
	if err != nil {
		t.Fatalf("find strace's child: %v", err)
	}
	kids := strings.Fields(string(raw))
	if len(kids) != 1 {
		t.Fatalf("strace (pid %d) has children %q, want the exporter alone", stracePID, kids)
	}
	pid, err := strconv.Atoi(kids[0])
	if err != nil {
		t.Fatal(err)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("stop the exporter (pid %d): %v", pid, err)
	}
	select {
	case <-p.Done():
	case <-time.After(15 * time.Second):
		t.Fatalf("strace did not exit within 15 s of the exporter's SIGTERM")
	}
}

// syscallsAllowed is the set the unit's SystemCallFilter= lines let
// through: the first line decides between allow- and deny-listing, later
// lines add to or take from it (systemd.exec(5)).
func syscallsAllowed(t *testing.T, analyze string, lines []string) map[string]bool {
	t.Helper()
	if len(lines) == 0 {
		t.Fatalf("%s sets no SystemCallFilter=", unitFile)
	}
	if strings.HasPrefix(lines[0], "~") {
		t.Fatalf("SystemCallFilter= starts with a deny list (%q): the unit must allow-list", lines[0])
	}
	cache := map[string][]string{}
	allowed := map[string]bool{}
	for _, line := range lines {
		deny := strings.HasPrefix(line, "~")
		for _, item := range strings.Fields(strings.TrimPrefix(line, "~")) {
			item, _, _ = strings.Cut(item, ":") // ~name:errno
			for _, s := range expandSyscalls(t, analyze, item, cache) {
				allowed[s] = !deny
			}
		}
	}
	for s, ok := range allowed {
		if !ok {
			delete(allowed, s)
		}
	}
	return allowed
}

// expandSyscalls resolves @groups, nested ones too, with
// `systemd-analyze syscall-filter`.
func expandSyscalls(t *testing.T, analyze, item string, cache map[string][]string) []string {
	t.Helper()
	if !strings.HasPrefix(item, "@") {
		return []string{item}
	}
	if v, ok := cache[item]; ok {
		return v
	}
	cmd := exec.Command(analyze, "syscall-filter", "--no-pager", item)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter %s: %v", item, err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, " ") {
			continue // the group's own name
		}
		f := strings.TrimSpace(line)
		if f == "" || strings.HasPrefix(f, "#") {
			continue
		}
		names = append(names, expandSyscalls(t, analyze, f, cache)...)
	}
	if len(names) == 0 {
		t.Fatalf("systemd-analyze syscall-filter %s lists no system call", item)
	}
	cache[item] = names
	return names
}

// summarySyscalls reads the system call names of strace -C's summary.
func summarySyscalls(t *testing.T, text string) []string {
	t.Helper()
	_, table, ok := strings.Cut(text, "% time")
	if !ok {
		t.Fatalf("no strace summary in its output:\n%s", tail(text))
	}
	var names []string
	for _, line := range strings.Split(table, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "---") {
			continue
		}
		if name := f[len(f)-1]; name != "total" {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		t.Fatalf("an empty strace summary:\n%s", tail(text))
	}
	sort.Strings(names)
	return names
}

// listSetting is an allow-list setting's items; a deny list ("~") fails:
// the unit is meant to allow-list these.
func listSetting(t *testing.T, u unit, key string) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	for _, v := range u[key] {
		if strings.HasPrefix(v, "~") {
			t.Fatalf("%s=%s is a deny list; the unit is meant to allow-list", key, v)
		}
		for _, f := range strings.Fields(v) {
			set[f] = true
		}
	}
	if len(set) == 0 {
		t.Fatalf("%s sets no %s=", unitFile, key)
	}
	return set
}

var runtimeUp = regexp.MustCompile(`(?m)^listenq_runtime_up\{.*\} 1$`)

var socketCall = regexp.MustCompile(`(?m)^\d+\s+socket\((AF_[A-Z0-9]+|\d+),`)

func checkFamilies(t *testing.T, text string, allowed map[string]bool) {
	t.Helper()
	seen := map[string]bool{}
	for _, m := range socketCall.FindAllStringSubmatch(text, -1) {
		seen[m[1]] = true
	}
	t.Logf("socket() families: %v", keys(seen))
	for f := range seen {
		if !allowed[f] {
			t.Errorf("the exporter made a %s socket; RestrictAddressFamilies=%v refuses it", f, keys(allowed))
		}
	}
	for _, f := range []string{"AF_NETLINK", "AF_UNIX", "AF_INET"} {
		if !seen[f] {
			t.Errorf("the exporter made no %s socket: the test no longer exercises it", f)
		}
	}
}

var (
	setnsCall = regexp.MustCompile(`(?m)^\d+\s+setns\(\d+, ([A-Z_0-9|]+)`)
	// clone(2), clone3(2) and unshare(2) lines, with the namespaces they
	// would make.
	cloneCall = regexp.MustCompile(`(?m)^\d+\s+(?:clone3?|unshare)\(.*$`)
	newNS     = regexp.MustCompile(`CLONE_NEW[A-Z]+`)
	nsFlag    = map[string]string{
		"CLONE_NEWCGROUP": "cgroup", "CLONE_NEWIPC": "ipc", "CLONE_NEWNET": "net", "CLONE_NEWNS": "mnt",
		"CLONE_NEWPID": "pid", "CLONE_NEWUSER": "user", "CLONE_NEWUTS": "uts",
	}
)

// checkNamespaces: RestrictNamespaces= refuses setns() with nstype 0 and
// every namespace type it does not list, to setns, clone and unshare.
func checkNamespaces(t *testing.T, text string, allowed map[string]bool) {
	t.Helper()
	for _, m := range setnsCall.FindAllStringSubmatch(text, -1) {
		typ, ok := nsFlag[m[1]]
		if !ok || !allowed[typ] {
			t.Errorf("setns(fd, %s): RestrictNamespaces=%v refuses it", m[1], keys(allowed))
		}
	}
	for _, line := range cloneCall.FindAllString(text, -1) {
		for _, flag := range newNS.FindAllString(line, -1) {
			if !allowed[nsFlag[flag]] {
				t.Errorf("%s: RestrictNamespaces=%v refuses %s", line, keys(allowed), flag)
			}
		}
	}
}

var (
	mmapCall     = regexp.MustCompile(`(?m)^\d+\s+mmap\(.*$`)
	mprotectCall = regexp.MustCompile(`(?m)^\d+\s+(?:pkey_)?mprotect\(.*$`)
)

// checkWriteExecute: MemoryDenyWriteExecute= refuses mappings both
// writable and executable, and making any mapping executable afterwards.
func checkWriteExecute(t *testing.T, text string) {
	t.Helper()
	for _, line := range mmapCall.FindAllString(text, -1) {
		if strings.Contains(line, "PROT_WRITE") && strings.Contains(line, "PROT_EXEC") {
			t.Errorf("%s: MemoryDenyWriteExecute=yes refuses it", line)
		}
	}
	for _, line := range mprotectCall.FindAllString(text, -1) {
		if strings.Contains(line, "PROT_EXEC") {
			t.Errorf("%s: MemoryDenyWriteExecute=yes refuses it", line)
		}
	}
}

// setprivCaps turns "CAP_A CAP_B" into setpriv's "-all,+a,+b".
func setprivCaps(t *testing.T, v string) string {
	t.Helper()
	s := "-all"
	for _, c := range strings.Fields(v) {
		if !strings.HasPrefix(c, "CAP_") {
			t.Fatalf("capability %q: want CAP_ names", c)
		}
		s += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	return s
}

func keys(m map[string]bool) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

func grep(body, substr string) string {
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func tail(s string) string {
	if len(s) > 4096 {
		return "..." + s[len(s)-4096:]
	}
	return s
}
