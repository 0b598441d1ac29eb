// Package selfproc exports the exporter's own process metrics: the process_*
// families client_golang's process collector exports on Linux, under that
// collector's own descriptions, read more cheaply.
//
// client_golang's collector opens and parses four procfs files a scrape
// and stats a fifth: /proc/self/stat, /proc/stat for the boot time,
// /proc/self/limits, /proc/self/net/netstat (its 4 KiB first read buffer
// is too small, so the kernel formats its 200 counters twice), and the fd
// directory. That came to about 0.3 ms of CPU and 30 KB of garbage a
// scrape, a tenth of a 1,000-listener scrape. This collector keeps the
// files open and reads each again from its start, in one read, into a
// buffer it keeps; takes the limits from getrlimit; and works out the
// start time once, so a stepped wall clock does not move it.
package selfproc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sys/unix"

	"github.com/listenq/listenq_exporter/internal/netns"
)

// userHZ is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
// architecture Linux runs Go on.
const userHZ = 100

// Metric names, as client_golang's collector exports them.
const (
	cpuName       = "process_cpu_seconds_total"
	openFDsName   = "process_open_fds"
	maxFDsName    = "process_max_fds"
	vsizeName     = "process_virtual_memory_bytes"
	maxVsizeName  = "process_virtual_memory_max_bytes"
	rssName       = "process_resident_memory_bytes"
	startName     = "process_start_time_seconds"
	inBytesName   = "process_network_receive_bytes_total"
	outBytesName  = "process_network_transmit_bytes_total"
	numberOfNames = 9
)

// Collector is a prometheus.Collector of the process_* families.
type Collector struct {
	descs map[string]*prometheus.Desc
	start float64 // process_start_time_seconds

	// mu guards the files' shared read offset (the fd directory) and buf.
	mu      sync.Mutex
	stat    *os.File // procRoot/self/stat
	fdDir   *os.File // procRoot/self/fd
	sized   bool     // fdDir is procfs's, whose size may be the count
	netstat *os.File // procRoot/self/net/netstat
	buf     []byte
}

// New opens procRoot's files of the calling process. It fails when procfs
// is not there, or when client_golang's collector does not describe the
// families it did when this was written; the caller then falls back to
// that collector.
func New(procRoot string) (*Collector, error) {
	descs, err := upstreamDescs()
	if err != nil {
		return nil, err
	}
	c := &Collector{descs: descs, buf: make([]byte, 8<<10)}
	for _, f := range []struct {
		file **os.File
		path string
	}{{&c.stat, "self/stat"}, {&c.fdDir, "self/fd"}, {&c.netstat, "self/net/netstat"}} {
		if *f.file, err = os.Open(procRoot + "/" + f.path); err != nil {
			c.Close()
			return nil, err
		}
	}
	var fs unix.Statfs_t
	c.sized = unix.Fstatfs(int(c.fdDir.Fd()), &fs) == nil && fs.Type == unix.PROC_SUPER_MAGIC
	b, err := os.ReadFile(procRoot + "/stat")
	if err != nil {
		c.Close()
		return nil, err
	}
	boot, err := bootTime(b)
	if err != nil {
		c.Close()
		return nil, err
	}
	st, err := c.readStat()
	if err != nil {
		c.Close()
		return nil, err
	}
	c.start = float64(boot) + float64(st.starttime)/userHZ
	return c, nil
}

// upstreamDescs returns client_golang's process collector's descriptions by
// metric name, so that names, help and types stay the library's.
func upstreamDescs() (map[string]*prometheus.Desc, error) {
	ch := make(chan *prometheus.Desc)
	go func() {
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}).Describe(ch)
		close(ch)
	}()
	descs := map[string]*prometheus.Desc{}
	for d := range ch {
		if name, ok := descName(d); ok {
			descs[name] = d
		}
	}
	for _, name := range []string{cpuName, openFDsName, maxFDsName, vsizeName, maxVsizeName, rssName, startName, inBytesName, outBytesName} {
		if descs[name] == nil {
			return nil, fmt.Errorf("client_golang's process collector does not describe %s", name)
		}
	}
	if len(descs) != numberOfNames {
		return nil, fmt.Errorf("client_golang's process collector describes %d families, not %d", len(descs), numberOfNames)
	}
	return descs, nil
}

// descName is a Desc's metric name. A Desc has no accessor for it; its
// String starts with it, quoted.
func descName(d *prometheus.Desc) (string, bool) {
	rest, ok := strings.CutPrefix(d.String(), "Desc{fqName: ")
	if !ok {
		return "", false
	}
	quoted, err := strconv.QuotedPrefix(rest)
	if err != nil {
		return "", false
	}
	name, err := strconv.Unquote(quoted)
	return name, err == nil
}

// Close closes the kept files.
func (c *Collector) Close() {
	for _, f := range []*os.File{c.stat, c.fdDir, c.netstat} {
		if f != nil {
			f.Close()
		}
	}
}

// Describe sends the descriptions of the families Collect may send.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect sends what it could read. As client_golang's collector does by
// default, it leaves out a family it could not read rather than failing
// the scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	send := func(name string, t prometheus.ValueType, v float64) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], t, v)
	}
	if st, err := c.readStat(); err == nil {
		send(cpuName, prometheus.CounterValue, float64(st.utime+st.stime)/userHZ)
		send(vsizeName, prometheus.GaugeValue, float64(st.vsize))
		send(rssName, prometheus.GaugeValue, float64(st.rss*uint64(os.Getpagesize())))
		send(startName, prometheus.GaugeValue, c.start)
	}
	if n, err := c.openFDs(); err == nil {
		send(openFDsName, prometheus.GaugeValue, float64(n))
	}
	var files, as unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &files) == nil && unix.Getrlimit(unix.RLIMIT_AS, &as) == nil {
		send(maxFDsName, prometheus.GaugeValue, float64(files.Cur))
		send(maxVsizeName, prometheus.GaugeValue, float64(as.Cur))
	}
	if b, err := c.read(c.netstat); err == nil {
		if in, out, ok := ipOctets(b); ok {
			send(inBytesName, prometheus.CounterValue, in)
			send(outBytesName, prometheus.CounterValue, out)
		}
	}
}

// read reads f again from its start (netns.ReadAt0) into c.buf. The bytes
// are c.buf's, valid until the next read.
func (c *Collector) read(f *os.File) ([]byte, error) {
	b, err := netns.ReadAt0(f, c.buf)
	c.buf = b[:cap(b)]
	return b, err
}

// procStat is what Collect needs of /proc/PID/stat.
type procStat struct {
	utime, stime, starttime, vsize, rss uint64
}

func (c *Collector) readStat() (procStat, error) {
	b, err := c.read(c.stat)
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// parseStat reads /proc/PID/stat (proc(5)). The command name, in
// parentheses, may hold spaces and parentheses itself, so the fields are
// counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("stat: no ')' after the command name")
	}
	// Fields after the name, counted from 0: state is field 3 of proc(5).
	const (
		utime     = 14 - 3
		stime     = 15 - 3
		starttime = 22 - 3
		vsize     = 23 - 3
		rss       = 24 - 3
	)
	var st procStat
	field, found := 0, 0
	for f := range bytes.FieldsSeq(b[i+1:]) {
		var p *uint64
		switch field {
		case utime:
			p = &st.utime
		case stime:
			p = &st.stime
		case starttime:
			p = &st.starttime
		case vsize:
			p = &st.vsize
		case rss:
			p = &st.rss
		}
		if p != nil {
			v, err := strconv.ParseUint(string(f), 10, 64)
			if err != nil {
				return procStat{}, fmt.Errorf("stat field %d: %w", field+3, err)
			}
			*p = v
			found++
		}
		if field++; field > rss {
			break
		}
	}
	if found != 5 {
		return procStat{}, fmt.Errorf("stat: %d fields after the command name, want %d", field, rss+1)
	}
	return st, nil
}

// bootTime is /proc/stat's btime: when the system booted, in seconds since
// the epoch.
func bootTime(b []byte) (uint64, error) {
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			return strconv.ParseUint(string(bytes.TrimSpace(rest)), 10, 64)
		}
	}
	return 0, errors.New("/proc/stat has no btime line")
}

// ipOctets are IpExt's InOctets and OutOctets in /proc/PID/net/netstat:
// each 0 when the section lacks it, as client_golang reports it; not ok
// when the section is missing or malformed.
func ipOctets(b []byte) (in, out float64, ok bool) {
	ip, err := netns.ParseNetstat(b, "IpExt")
	return ip["InOctets"], ip["OutOctets"], err == nil
}

// openFDs counts the process's open descriptors. Since Linux 6.2 the fd
// directory's size is that count; before, the directory is listed.
func (c *Collector) openFDs() (int, error) {
	var st unix.Stat_t
	if !c.sized {
		return c.listFDs()
	}
	if err := unix.Fstat(int(c.fdDir.Fd()), &st); err == nil && st.Size > 0 {
		return int(st.Size), nil
	}
	return c.listFDs()
}

// listFDs counts the entries of the fd directory.
func (c *Collector) listFDs() (int, error) {
	if _, err := unix.Seek(int(c.fdDir.Fd()), 0, 0); err != nil {
		return 0, err
	}
	count := 0
	for {
		n, err := unix.Getdents(int(c.fdDir.Fd()), c.buf)
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return count, nil
		}
		count += countNames(c.buf[:n])
	}
}

// countNames counts the entries of a getdents64 buffer other than . and ..:
// each is a linux_dirent64, whose reclen is at byte 16 and name at 19.
func countNames(b []byte) int {
	count := 0
	for len(b) >= 19 {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < 19 || reclen > len(b) {
			break
		}
		name := b[19:reclen]
		if end := bytes.IndexByte(name, 0); end >= 0 {
			name = name[:end]
		}
		if s := string(name); s != "." && s != ".." {
			count++
		}
		b = b[reclen:]
	}
	return count
}
