// Package dashboards holds the Grafana dashboards for listenq_exporter
// (listenq.json) and the tests that keep them importable, their queries
// valid PromQL and every metric they use one the exporter really exports.
package dashboards
