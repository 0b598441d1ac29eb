package main

import (
	"fmt"
	"strings"
	"testing"
)

func TestSample(t *testing.T) {
	name, l, v, ok := sample(`listenq_queue_length{listener="/tmp/a\"b",proto="unix"} 3`)
	if !ok || name != "listenq_queue_length" || l["listener"] != `/tmp/a"b` || l["proto"] != "unix" || v != 3 {
		t.Errorf("sample = %q, %v, %v, %v", name, l, v, ok)
	}
	if name, _, v, ok := sample("up 1e-3"); !ok || name != "up" || v != 0.001 {
		t.Errorf("sample(up) = %q, %v, %v", name, v, ok)
	}
	for _, bad := range []string{"x", `x{a="1"`, `x{a=1} 2`, "x{} y"} {
		if _, _, _, ok := sample(bad); ok {
			t.Errorf("sample(%q): ok", bad)
		}
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int]string{200: "200", 1000: "1k", 2500: "2.5k", 25000: "25k"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestVerify builds the exposition the exporter would show of a small
// large-shape and checks that verify accepts it, and rejects it with a
// listener or a queue missing.
func TestVerify(t *testing.T) {
	c := config{dir: "/d", small: 2, largeTCP: 3, largeUnix: 4, holders: 2, port: 100, backlog: 8, clients: 2}
	s := c.shape("large")
	var b strings.Builder
	line := func(name, proto, listener string, v int) {
		fmt.Fprintf(&b, "%s{listener=%q,netns=\"\",process=\"scalebench\",proto=%q} %d\n", name, listener, proto, v)
	}
	add := func(proto, listener string, first bool) {
		line("listenq_queue_limit", proto, listener, 8)
		q := 0
		if first {
			q = 2
		}
		line("listenq_queue_length", proto, listener, q)
	}
	for _, h := range s.holders(c) {
		for i := range h.tcp {
			add("tcp", fmt.Sprintf("127.0.0.1:%d", h.port+i), i == 0)
		}
		for j := range h.unixFS {
			add("unix", unixFSPath(c.dir, h.index, j), j == 0)
		}
		for j := range h.abstract {
			add("unix", abstractName(h.index, j), j == 0)
		}
	}
	b.WriteString("listenq_scrape_collector_success{collector=\"tcp\"} 1\n")
	body := b.String()
	if sn, err := verify([]byte(body), s, c); err != nil || sn.tcp != 3 || sn.unix != 4 {
		t.Fatalf("verify = %+v, %v", sn, err)
	}
	drop := strings.Replace(body, `listenq_queue_limit{listener="127.0.0.1:103"`, `listenq_queue_limit{listener="127.0.0.1:99"`, 1)
	if _, err := verify([]byte(drop), s, c); err == nil {
		t.Error("verify accepted a missing TCP listener")
	}
	queue := strings.Replace(body, `listenq_queue_length{listener="@listenq-scale-0-00000",netns="",process="scalebench",proto="unix"} 2`,
		`listenq_queue_length{listener="@listenq-scale-0-00000",netns="",process="scalebench",proto="unix"} 0`, 1)
	if queue == body {
		t.Fatal("test body has no abstract listener")
	}
	if _, err := verify([]byte(queue), s, c); err == nil {
		t.Error("verify accepted a wrong queue length")
	}
	failed := body + "listenq_scrape_collector_success{collector=\"unix\"} 0\n"
	if _, err := verify([]byte(failed), s, c); err == nil {
		t.Error("verify accepted a failed collector")
	}
}
