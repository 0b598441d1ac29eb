package netns

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// ParseNetstat returns the counters of one section ("TcpExt") of a
// /proc/net/netstat file: a line of names followed by a line of values,
// both prefixed with the section name. A counter the kernel does not have
// is simply not in the map.
func ParseNetstat(b []byte, section string) (map[string]float64, error) {
	prefix := section + ":"
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var names []string
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		fields := strings.Fields(line[len(prefix):])
		if names == nil {
			names = fields
			continue
		}
		if len(fields) != len(names) {
			return nil, fmt.Errorf("netstat %s: %d names but %d values", section, len(names), len(fields))
		}
		out := make(map[string]float64, len(names))
		for i, n := range names {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("netstat %s %s: %w", section, n, err)
			}
			out[n] = v
		}
		return out, nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("netstat: no %s section", section)
}
