package main

import (
	"bufio"
	"bytes"
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/listenq/listenq_exporter/bench/internal/benchutil"
)

// startExporter starts the exporter on the loopback port with args and
// waits until it answers on /metrics; the scrape body it got is returned
// so callers can check what the exporter sees. If this process dies, the
// exporter goes too; bench/sampler.sh kills whatever is left in the
// namespace besides.
func startExporter(ctx context.Context, bin string, port int, args ...string) (*benchutil.Exporter, []byte, error) {
	// One namespace, the benchmark's own; and the sampler's raw cost at
	// each interval, not capped by its CPU budget.
	return benchutil.StartExporter(ctx, bin, port, 30*time.Second,
		append([]string{"--no-netns.discovery", "--sampler.max-cpu=0"}, args...)...)
}

// sample finds the value of metric's series for the socket with inode ino
// in a text exposition.
func sample(body []byte, metric string, ino uint64) (float64, bool) {
	prefix := []byte(metric + "{")
	label := []byte(`inode="` + strconv.FormatUint(ino, 10) + `"`)
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, prefix) || !bytes.Contains(line, label) {
			continue
		}
		v, err := strconv.ParseFloat(string(line[bytes.LastIndexByte(line, ' ')+1:]), 64)
		return v, err == nil
	}
	return 0, false
}

// seen is what one scrape exported, to check the namespace looks to the
// exporter as the benchmark built it.
type seen struct {
	tcp, unix   int // listeners exported
	unixOmitted int // unix listeners seen but not exported (cap, filter, owner pending)
}

func exported(body []byte) seen {
	var s seen
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "listenq_queue_limit{"):
			if strings.Contains(line, `proto="tcp"`) {
				s.tcp++
			} else if strings.Contains(line, `proto="unix"`) {
				s.unix++
			}
		case strings.HasPrefix(line, "listenq_listeners_omitted{") && strings.Contains(line, `proto="unix"`):
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			s.unixOmitted += int(v)
		}
	}
	return s
}
