package testpods

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// epoch is the time stamp of every file in the image, so equal inputs make
// equal digests.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// sandboxCommand is the image's entrypoint: it makes the image its own pod
// sandbox ("pause") image. The sandbox is stopped with SIGKILL.
var sandboxCommand = []string{"/bin/busybox", "sleep", "2147483647"}

// rootfsTar returns an uncompressed tar of the image's root file system:
// /bin/busybox from this machine with a symlink per applet, the app at
// AppPath, an /etc with root in passwd and group, and the usual empty
// directories.
func rootfsTar(ctx context.Context, app string) ([]byte, error) {
	list, err := exec.CommandContext(ctx, busyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", busyboxPath, err)
	}
	busybox, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, err
	}
	appBin, err := os.ReadFile(app)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := func(name string, typ byte, mode int64) *tar.Header {
		return &tar.Header{Name: name, Typeflag: typ, Mode: mode, ModTime: epoch, Format: tar.FormatPAX}
	}
	for _, d := range []string{"bin/", "dev/", "etc/", "proc/", "root/", "run/", "sys/", "var/"} {
		if err := tw.WriteHeader(hdr(d, tar.TypeDir, 0o755)); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(hdr("tmp/", tar.TypeDir, 0o1777)); err != nil {
		return nil, err
	}
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"bin/busybox", 0o755, busybox},
		{strings.TrimPrefix(AppPath, "/"), 0o755, appBin},
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")},
		{"etc/group", 0o644, []byte("root:x:0:\n")},
	}
	for _, f := range files {
		h := hdr(f.name, tar.TypeReg, f.mode)
		h.Size = int64(len(f.data))
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	for applet := range strings.FieldsSeq(string(list)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		h := hdr("bin/"+applet, tar.TypeSymlink, 0o777)
		h.Linkname = "busybox"
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ociArchive returns a tar of an OCI image layout holding one image, named
// Image, of the one uncompressed layer: what `ctr images import` takes.
func ociArchive(layer []byte) ([]byte, error) {
	type descriptor struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int               `json:"size"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	blobs := map[string][]byte{}
	describe := func(mediaType string, b []byte) descriptor {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return descriptor{MediaType: mediaType, Digest: d, Size: len(b)}
	}
	layerDesc := describe("application/vnd.oci.image.layer.v1.tar", layer)

	config, err := json.Marshal(map[string]any{
		"created":      epoch.Format(time.RFC3339),
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config": map[string]any{
			"Env":        []string{"PATH=/bin"},
			"Entrypoint": sandboxCommand,
			"WorkingDir": "/",
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDesc.Digest}},
	})
	if err != nil {
		return nil, err
	}
	configDesc := describe("application/vnd.oci.image.config.v1+json", config)

	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        configDesc,
		"layers":        []descriptor{layerDesc},
	})
	if err != nil {
		return nil, err
	}
	manifestDesc := describe("application/vnd.oci.image.manifest.v1+json", manifest)
	tag := Image[strings.LastIndex(Image, ":")+1:]
	manifestDesc.Annotations = map[string]string{
		"io.containerd.image.name":          Image,
		"org.opencontainers.image.ref.name": tag,
	}

	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []descriptor{manifestDesc},
	})
	if err != nil {
		return nil, err
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) error {
		h := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b)), ModTime: epoch}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	if err := add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return nil, err
	}
	if err := add("index.json", index); err != nil {
		return nil, err
	}
	for _, d := range []string{layerDesc.Digest, configDesc.Digest, manifestDesc.Digest} {
		if err := add("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), blobs[d]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
