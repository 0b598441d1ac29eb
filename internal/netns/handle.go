// Package netns describes the network namespaces the exporter reads. A
// collector reads one namespace through a Handle, so adding namespaces later
// only adds handles.
package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"

	"github.com/listenq/listenq_exporter/internal/sockdiag"
)

// Handle is the way into one network namespace.
type Handle struct {
	// ID is the value of the netns label: "" for the exporter's own namespace.
	ID string
	// Proc is a process inside the namespace; its net/ files (netstat, ...)
	// describe the namespace.
	Proc procfs.Proc
	// SysctlDir is the /proc/sys directory that shows this namespace's
	// sysctls.
	SysctlDir string
	// Dial opens a sock_diag socket in the namespace.
	Dial func() (*sockdiag.Conn, error)
}

// Self returns the handle of the exporter's own network namespace, reading
// procfs mounted at procRoot.
func Self(procRoot string) (*Handle, error) {
	fs, err := procfs.NewFS(procRoot)
	if err != nil {
		return nil, fmt.Errorf("open procfs at %q: %w", procRoot, err)
	}
	self, err := fs.Self()
	if err != nil {
		return nil, fmt.Errorf("find own process in procfs at %q: %w", procRoot, err)
	}
	return &Handle{
		Proc:      self,
		SysctlDir: filepath.Join(procRoot, "sys"),
		Dial:      func() (*sockdiag.Conn, error) { return sockdiag.Dial(0) },
	}, nil
}

// Sysctl reads an integer sysctl such as "net/core/somaxconn".
func (h *Handle) Sysctl(name string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(h.SysctlDir, name))
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse sysctl %s: %w", name, err)
	}
	return v, nil
}
