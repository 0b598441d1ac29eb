// Package alerts holds listenq_exporter's Prometheus recording and alerting
// rules (listenq.rules.yml) and their promtool unit tests (tests/); the Go
// tests here run promtool on them so that `go test ./...` covers the rules
// and check that every alert is documented in docs/runbook.md and tested.
package alerts
