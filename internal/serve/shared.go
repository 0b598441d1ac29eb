package serve

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Shared returns a handler that serves concurrent identical requests with
// one call of next. See the package documentation.
func Shared(next http.Handler) http.Handler {
	return &shared{next: next, flights: map[flightKey]*flight{}}
}

type shared struct {
	next    http.Handler
	mu      sync.Mutex
	flights map[flightKey]*flight
	// sizes are the last body's length, compressed and not, so the next
	// body is recorded in one piece where it fits one chunk, and sent in
	// one write.
	sizes [2]atomic.Int64
}

// flightKey is what a response depends on besides the data.
type flightKey struct {
	method, path, query, accept, encoding string
}

// flight is one call of next and its recorded response.
type flight struct {
	done   chan struct{}
	joined int // requests waiting for it; under shared.mu
	status int // 0 if next panicked
	header http.Header
	body   [][]byte
}

func keyOf(r *http.Request) flightKey {
	accept, encoding := negotiationKey(r)
	return flightKey{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, accept: accept, encoding: encoding}
}

// negotiationKey is what promhttp's negotiation reads of a request: the
// first Accept header line (expfmt reads no other) and every
// Accept-Encoding line, joined by a newline, which no header value holds.
func negotiationKey(r *http.Request) (accept, encoding string) {
	return r.Header.Get("Accept"), strings.Join(r.Header.Values("Accept-Encoding"), "\n")
}

func (s *shared) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := keyOf(r)
	s.mu.Lock()
	f, joined := s.flights[key]
	if joined {
		f.joined++
	} else {
		f = &flight{done: make(chan struct{})}
		s.flights[key] = f
	}
	s.mu.Unlock()
	if joined {
		select {
		case <-f.done:
		case <-r.Context().Done():
			return // the client left; nothing to answer
		}
	} else {
		s.fly(key, f, r)
	}
	f.answer(w)
}

// fly calls next for f, records its response, and ends the flight, also
// when next panics.
func (s *shared) fly(key flightKey, f *flight, r *http.Request) {
	defer func() {
		s.mu.Lock()
		delete(s.flights, key)
		s.mu.Unlock()
		close(f.done)
	}()
	size := &s.sizes[0]
	if strings.Contains(key.encoding, "gzip") {
		size = &s.sizes[1]
	}
	rec := &recorder{header: http.Header{}, hint: int(size.Load())}
	s.next.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	f.status, f.header, f.body = rec.status, rec.header, rec.chunks
	size.Store(int64(rec.n))
}

// answer writes f's response to w. Every reader gets the same body slice;
// none writes to it.
func (f *flight) answer(w http.ResponseWriter) {
	if f.status == 0 {
		http.Error(w, "An error has occurred while serving metrics: the scrape this request shared failed", http.StatusInternalServerError)
		return
	}
	for k, vs := range f.header {
		w.Header()[k] = vs
	}
	if bodyAllowed(f.status) && w.Header().Get("Content-Length") == "" {
		// Known in full: net/http then sends the body as it is, without
		// chunked framing, which cost a write per chunk.
		n := 0
		for _, c := range f.body {
			n += len(c)
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
	}
	w.WriteHeader(f.status)
	for _, c := range f.body {
		if _, err := w.Write(c); err != nil {
			return // the client left
		}
	}
}

// bodyAllowed reports whether a response with status has a body (RFC 9110).
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// recorder keeps a response in memory, in chunks: a body of tens of
// megabytes (25,000 listeners, uncompressed) is then never copied to grow.
type recorder struct {
	header http.Header
	status int
	chunks [][]byte
	n      int // bytes written
	hint   int // the expected length, or 0
}

const chunkSize = 256 << 10

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	n := len(p)
	r.n += n
	for len(p) > 0 {
		last := len(r.chunks) - 1
		if last < 0 || len(r.chunks[last]) == cap(r.chunks[last]) {
			// The first chunk holds the expected length and an eighth
			// more; after it, chunks double. Small answers (a 503, a
			// gzipped scrape) stay small.
			size := min(chunkSize, max(4<<10, r.hint+r.hint/8))
			if last >= 0 {
				size = min(chunkSize, 2*cap(r.chunks[last]))
			}
			r.chunks = append(r.chunks, make([]byte, 0, size))
			last++
		}
		c := r.chunks[last]
		k := min(len(p), cap(c)-len(c))
		r.chunks[last] = append(c, p[:k]...)
		p = p[k:]
	}
	return n, nil
}
