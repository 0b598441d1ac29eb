package runtimeapi

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Endpoint is a runtime socket and the protocol it speaks.
type Endpoint struct {
	Kind string // KindCRI or KindDocker
	Path string // absolute path of the unix socket
}

// String returns the endpoint in the syntax ParseEndpoint reads back.
func (e Endpoint) String() string {
	switch {
	case e.Kind == KindDocker:
		return "docker://" + e.Path
	case filepath.Base(e.Path) == dockerSocketName:
		return "cri://" + e.Path
	}
	return "unix://" + e.Path
}

// NewClient returns the Client for the endpoint's kind: NewCRI or NewDocker.
func (e Endpoint) NewClient(timeout time.Duration) (Client, error) {
	switch e.Kind {
	case KindCRI:
		return NewCRI(e.Path, timeout)
	case KindDocker:
		return NewDocker(e.Path, timeout), nil
	}
	return nil, fmt.Errorf("runtime endpoint %s: unknown kind %q", e.Path, e.Kind)
}

// dockerSocketName is the file name of Docker's own API socket.
const dockerSocketName = "docker.sock"

// maxSocketPath is the longest path a unix socket address holds on Linux
// (sun_path is 108 bytes with its terminating NUL).
const maxSocketPath = 107

// wellKnown lists the runtime sockets Detect looks for, in the order it
// reports them: CRI runtimes first, so that when a Directory has both a
// CRI and the Docker endpoint for the same containers the CRI answer wins.
var wellKnown = []Endpoint{
	{KindCRI, "/run/containerd/containerd.sock"},
	{KindCRI, "/var/run/containerd/containerd.sock"},
	{KindCRI, "/run/k3s/containerd/containerd.sock"},
	{KindCRI, "/run/crio/crio.sock"},
	{KindCRI, "/var/run/crio/crio.sock"},
	{KindCRI, "/run/cri-dockerd.sock"},
	{KindCRI, "/var/run/cri-dockerd.sock"},
	{KindDocker, "/var/run/docker.sock"},
	{KindDocker, "/run/docker.sock"},
}

// Detect returns the well-known runtime sockets that exist under rootfs, the
// host's root directory as this process sees it: "/" (or "") on the host,
// or where the host's root is mounted when running in a container, such as
// "/host". Only unix sockets count, not other files at those paths.
//
// Symbolic links are followed inside rootfs, an absolute link target being
// taken relative to rootfs (as it would be on the host), so /var/run being
// a link to /run is handled under "/host" as well. Each socket is reported
// once, at its resolved path joined with rootfs, ready to dial: on a host
// where /var/run links to /run, /var/run/docker.sock is reported as
// /run/docker.sock.
func Detect(rootfs string) []Endpoint {
	if rootfs == "" {
		rootfs = "/"
	}
	var out []Endpoint
	seen := map[string]bool{}
	for _, wk := range wellKnown {
		p, err := resolveIn(rootfs, wk.Path)
		if err != nil || seen[p] {
			continue
		}
		full := filepath.Join(rootfs, p)
		fi, err := os.Lstat(full)
		if err != nil || fi.Mode().Type() != fs.ModeSocket {
			continue
		}
		seen[p] = true
		out = append(out, Endpoint{Kind: wk.Kind, Path: full})
	}
	return out
}

// maxLinks bounds the symbolic links resolveIn follows, as the kernel does.
const maxLinks = 40

// resolveIn resolves the symbolic links in the absolute path p as if rootfs
// were the root directory: absolute link targets and ".." stop at rootfs.
// It returns the resolved path relative to rootfs (starting with "/").
func resolveIn(rootfs, p string) (string, error) {
	done := "/"
	rest := strings.Split(p, "/")
	links := 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			done = filepath.Dir(done)
			continue
		}
		next := filepath.Join(done, name)
		fi, err := os.Lstat(filepath.Join(rootfs, next))
		if err != nil {
			return "", err
		}
		if fi.Mode().Type() != fs.ModeSymlink {
			done = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(filepath.Join(rootfs, next))
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			done = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return done, nil
}

// ParseEndpoint parses a runtime endpoint given by the user. The syntax (see
// also the package documentation):
//
//	unix:///PATH or /PATH   CRI, unless the file name is docker.sock: Docker
//	cri:///PATH             CRI
//	docker:///PATH          Docker Engine API
//
// PATH must be absolute. An error's message is one line that quotes the
// value.
func ParseEndpoint(s string) (Endpoint, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return Endpoint{}, errors.New("empty runtime endpoint: want a socket path or URL such as unix:///run/containerd/containerd.sock")
	}
	kind, path := "", in
	if !strings.HasPrefix(in, "/") && strings.Contains(in, ":") {
		scheme, rest, ok := strings.Cut(in, "://")
		if !ok {
			return Endpoint{}, fmt.Errorf("runtime endpoint %q: want SCHEME:///PATH, as in unix:///run/containerd/containerd.sock, or an absolute socket path", s)
		}
		switch strings.ToLower(scheme) {
		case "unix":
		case KindCRI:
			kind = KindCRI
		case KindDocker:
			kind = KindDocker
		default:
			return Endpoint{}, fmt.Errorf("runtime endpoint %q: unsupported scheme %q: want unix://, cri://, docker:// or an absolute socket path", s, scheme)
		}
		if !strings.HasPrefix(rest, "/") {
			return Endpoint{}, fmt.Errorf("runtime endpoint %q: the socket path must be absolute: a URL has three slashes, as in %s:///run/containerd/containerd.sock", s, strings.ToLower(scheme))
		}
		path = rest
	}
	if !filepath.IsAbs(path) {
		return Endpoint{}, fmt.Errorf("runtime endpoint %q: the socket path must be absolute", s)
	}
	path = filepath.Clean(path)
	if path == "/" {
		return Endpoint{}, fmt.Errorf("runtime endpoint %q: no socket path", s)
	}
	if len(path) > maxSocketPath {
		return Endpoint{}, fmt.Errorf("runtime endpoint %q: the socket path is %d bytes long, a unix socket path holds at most %d", s, len(path), maxSocketPath)
	}
	if kind == "" {
		kind = KindCRI
		if filepath.Base(path) == dockerSocketName {
			kind = KindDocker
		}
	}
	return Endpoint{Kind: kind, Path: path}, nil
}
