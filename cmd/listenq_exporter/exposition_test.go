package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/internal/testns"
)

// listenerFamilies are the families the text fast path writes itself.
var listenerFamilies = []string{
	"listenq_drops_total", "listenq_queue_full_seconds_total", "listenq_queue_length",
	"listenq_queue_limit", "listenq_queue_peak_length",
}

// TestFastPathMatchesPromhttp scrapes real listeners with awkward names
// through the text fast path, and through promhttp (a name[] query and the
// protobuf format take that path), and wants the same bytes for every
// per-listener family, plain and gzipped.
func TestFastPathMatchesPromhttp(t *testing.T) {
	testns.Require(t)
	tl := testns.ListenTCP(t, "127.0.0.1:0", 8, false)
	testns.DialTCP(t, tl.Addr, 3) // queued, not full: values hold still
	dir := t.TempDir()
	for _, name := range []string{
		filepath.Join(dir, `quote"back\slash`),
		filepath.Join(dir, "new\nline é"),
		"@listenq-test\x00nul\xffbyte",
	} {
		testns.ListenUnix(t, name, unix.SOCK_STREAM, 4)
		dialUnix(t, name, 2)
	}
	base := startExporter(t)
	query := url.Values{"name[]": listenerFamilies}.Encode()

	fast := sections(t, scrape(t, base+"/metrics", "", true))
	slow := sections(t, scrape(t, base+"/metrics?"+query, "", false))
	proto := sections(t, protoAsText(t, base+"/metrics"))
	plainFast := sections(t, scrape(t, base+"/metrics", "", false))
	for _, name := range listenerFamilies {
		if fast[name] == "" {
			t.Errorf("fast path lacks %s", name)
			continue
		}
		for what, other := range map[string]map[string]string{"promhttp text": slow, "protobuf": proto, "fast path without gzip": plainFast} {
			if fast[name] != other[name] {
				t.Errorf("%s: fast path differs from %s:\n%s\n---\n%s", name, what, fast[name], other[name])
			}
		}
	}
	for _, want := range []string{`listener="` + dir + `/quote\"back\\x5cslash"`, `\\x0aline é"`, `listener="@listenq-test\\x00nul\\xffbyte"`} {
		if !strings.Contains(fast["listenq_queue_length"], want) {
			t.Errorf("fast path lacks %s", want)
		}
	}
}

// scrape GETs url with the given Accept header, asking for gzip when gz.
func scrape(t *testing.T, u, accept string, gz bool) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	// A transport of its own: the default one would decompress silently.
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if gz {
		if resp.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("asked for gzip, got Content-Encoding %q", resp.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	b, err := io.ReadAll(r)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
	}
	return string(b)
}

// protoAsText scrapes url in the protobuf format and writes it out as text
// with expfmt.
func protoAsText(t *testing.T, u string) string {
	t.Helper()
	body := scrape(t, u, string(expfmt.NewFormat(expfmt.TypeProtoDelim)), false)
	dec := expfmt.NewDecoder(strings.NewReader(body), expfmt.NewFormat(expfmt.TypeProtoDelim))
	var out bytes.Buffer
	for {
		mf := new(dto.MetricFamily)
		if err := dec.Decode(mf); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if _, err := expfmt.MetricFamilyToText(&out, mf); err != nil {
			t.Fatal(err)
		}
	}
	return out.String()
}

// sections splits a text exposition into its families, by name.
func sections(t *testing.T, body string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for part := range strings.SplitSeq(body, "# HELP ") {
		if part == "" {
			continue
		}
		name, _, _ := strings.Cut(part, " ")
		out[name] = part
	}
	if len(out) == 0 {
		t.Fatalf("no families in %q", body)
	}
	return out
}

// dialUnix connects n clients to the unix listener name, which leaves them
// queued, and closes them when the test ends.
func dialUnix(t *testing.T, name string, n int) {
	t.Helper()
	for range n {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: name}); err != nil {
			t.Fatalf("connect to %q: %v", name, err)
		}
	}
}
