// Package serve is the exporter's /metrics handler: the one path a scrape
// takes from the HTTP request to the bytes on the wire.
//
//	request ─▶ Shared ─▶ Handler ─┬─▶ text, gzip: Source() → Snapshot.TryWriteGzip (if it has one)
//	                              ├─▶ text: Source() → Snapshot.WriteText → gzip or identity
//	                              └─▶ protobuf, OpenMetrics, ?name[]=: the promhttp fallback
//
// Shared makes concurrent scrapes cost one: a request that arrives while an
// identical one (same method, query, Accept and Accept-Encoding) is being
// served waits for it and gets a copy of its status, headers and body. Its
// data is then no older than the scrape in flight when it arrived, the
// freshness a scrape had before; a request arriving after a flight ended
// starts a new one. Twenty Prometheus servers scraping one exporter at once
// cost one gather, one encoding and one body in memory.
//
// Handler answers with exactly what promhttp would: it lets promhttp
// negotiate (on an empty gatherer, so the Content-Type, Content-Encoding
// and Vary headers are promhttp's own), then writes the body itself in the
// text format, which Prometheus negotiates unless told otherwise, and hands
// every other format to a promhttp handler. The text body comes from a
// Snapshot that renders per-listener series from labels it built once; the
// collector package's tests hold that rendering to expfmt's bytes, and this
// package's tests hold the whole response to promhttp's. A Snapshot that
// gzips itself (a GzipSnapshot) does so from compressed pieces it keeps
// between scrapes, or declines (another scrape is using them) and the
// Handler gzips WriteText's bytes; what it writes must decode to them.
package serve
