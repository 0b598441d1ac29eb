{{/* The chart's name, or nameOverride. */}}
{{- define "listenq-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The objects' name: fullnameOverride, else the release name when it
contains the chart's name, else both.
*/}}
{{- define "listenq-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "listenq-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "listenq-exporter.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "listenq-exporter.labels" -}}
helm.sh/chart: {{ include "listenq-exporter.chart" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: metrics
app.kubernetes.io/part-of: {{ include "listenq-exporter.name" . }}
{{ include "listenq-exporter.selectorLabels" . }}
{{- with .Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- if .Values.releaseLabel }}
release: {{ .Release.Name }}
{{- end }}
{{- end }}

{{/* Labels that select the exporter's pods. */}}
{{- define "listenq-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "listenq-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "listenq-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "listenq-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "listenq-exporter.image" -}}
{{- $repo := .Values.image.repository }}
{{- with .Values.image.registry }}{{ $repo = printf "%s/%s" . $repo }}{{ end }}
{{- $ref := printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- with .Values.image.digest }}{{ $ref = printf "%s@%s" $ref . }}{{ end }}
{{- $ref }}
{{- end }}

{{/* The Secret holding the web configuration, if any. */}}
{{- define "listenq-exporter.webConfigSecret" -}}
{{- if and .Values.web.config.content .Values.web.config.existingSecret }}
{{- fail "web.config: set content or existingSecret, not both" }}
{{- else if .Values.web.config.content }}
{{- printf "%s-web-config" (include "listenq-exporter.fullname" .) }}
{{- else }}
{{- .Values.web.config.existingSecret }}
{{- end }}
{{- end }}

{{/*
Relabelings of every job that scrapes the exporter (PodMonitor and
ServiceMonitor alike), as deploy/prometheus/scrape-config.yml does: the
operator gives each target the namespace, pod and container of the scraped
pod, here the exporter's own. Kept, they would stamp the node's series
(which the exporter leaves without pod labels) with the exporter's pod,
and honorLabels alone still lets them fill the labels a series lacks
(per-namespace series have no container). So the exporter's identity is
kept as exporter_namespace and exporter_pod, and the three are dropped;
the user's relabelings come first so that nothing adds them back.
*/}}
{{- define "listenq-exporter.relabelings" -}}
{{- with .relabelings }}
{{- toYaml . }}
{{ end -}}
- sourceLabels: [__meta_kubernetes_namespace]
  targetLabel: exporter_namespace
- sourceLabels: [__meta_kubernetes_pod_name]
  targetLabel: exporter_pod
- sourceLabels: [__meta_kubernetes_pod_node_name]
  targetLabel: node
- regex: namespace|pod|container
  action: labeldrop
{{- end }}

{{/* Endpoint settings shared by the PodMonitor and the ServiceMonitor. */}}
{{- define "listenq-exporter.endpointSettings" -}}
# The labels the exporter sets on pods' series (namespace, pod,
# container) win over the target's.
honorLabels: true
scheme: {{ .scheme }}
{{- with .tlsConfig }}
tlsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .basicAuth }}
basicAuth:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .interval }}
interval: {{ . }}
{{- end }}
{{- with .scrapeTimeout }}
scrapeTimeout: {{ . }}
{{- end }}
{{- with .metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
relabelings:
  {{- include "listenq-exporter.relabelings" . | nindent 2 }}
{{- end }}

{{/*
The exporter's arguments, as a YAML list. A value that is null or ""
leaves its flag out, so that the exporter's default applies; whole numbers
print without an exponent. Boolean flags: "always" gives --x or --no-x,
"ifTrue" only --x, "ifFalse" only --no-x.
*/}}
{{- define "listenq-exporter.args" -}}
{{- $v := .Values }}
{{- $args := list "--path.procfs=/host/proc" "--path.rootfs=/host" (printf "--web.listen-address=:%d" (int64 $v.web.port)) }}
{{- if include "listenq-exporter.webConfigSecret" . }}
{{- $args = append $args (printf "--web.config.file=/etc/listenq-exporter/web/%s" $v.web.config.key) }}
{{- end }}
{{- $acceptWaitMethod := "" }}
{{- if not (has (toString $v.acceptWait.method) (list "auto" "fexit" "tracepoint")) }}
{{- fail (printf "acceptWait.method: %q, want auto, fexit or tracepoint" (toString $v.acceptWait.method)) }}
{{- else if and $v.acceptWait.enabled (ne $v.acceptWait.method "auto") }}
{{- $acceptWaitMethod = $v.acceptWait.method }}
{{- end }}
{{- $flags := list
  (list "web.telemetry-path" $v.web.telemetryPath)
  (list "web.max-requests" $v.web.maxRequests)
  (list "collector.netstat" $v.collectors.netstat "always")
  (list "collector.sysctl" $v.collectors.sysctl "always")
  (list "collector.tcp" $v.collectors.tcp "always")
  (list "collector.unix" $v.collectors.unix "always")
  (list "collector.tcp.syn-queue" $v.collectors.tcpSynQueue "ifTrue")
  (list "collector.tcp.syn-queue.interval" $v.collectors.tcpSynQueueInterval)
  (list "collector.acceptwait" $v.acceptWait.enabled "ifTrue")
  (list "collector.acceptwait.method" $acceptWaitMethod)
  (list "filter.listener-include" $v.filter.listenerInclude)
  (list "filter.listener-exclude" $v.filter.listenerExclude)
  (list "filter.port-include" $v.filter.portInclude)
  (list "filter.port-exclude" $v.filter.portExclude)
  (list "filter.process-include" $v.filter.processInclude)
  (list "filter.process-exclude" $v.filter.processExclude)
  (list "filter.max-listeners" $v.filter.maxListeners)
  (list "sampler.interval" $v.sampler.interval)
  (list "sampler.window" $v.sampler.window)
  (list "sampler.max-cpu" $v.sampler.maxCpu)
  (list "netns.discovery" $v.netns.discovery "ifFalse")
  (list "netns.refresh-interval" $v.netns.refreshInterval)
  (list "netns.namespace-include" $v.netns.namespaceInclude)
  (list "netns.namespace-exclude" $v.netns.namespaceExclude)
  (list "netns.pod-include" $v.netns.podInclude)
  (list "netns.pod-exclude" $v.netns.podExclude)
  (list "owner.min-scan-interval" $v.owner.minScanInterval)
}}
{{- range $v.runtime.endpoints }}
{{- $flags = append $flags (list "runtime.endpoint" .) }}
{{- end }}
{{- $flags = concat $flags (list
  (list "runtime.disable" $v.runtime.disable "ifTrue")
  (list "runtime.timeout" $v.runtime.timeout)
  (list "log.level" $v.log.level)
  (list "log.format" $v.log.format)
) }}
{{- range $flags }}
{{- $name := index . 0 }}
{{- $val := index . 1 }}
{{- if eq (len .) 3 }}
{{- $mode := index . 2 }}
{{- if and $val (ne $mode "ifFalse") }}
{{- $args = append $args (printf "--%s" $name) }}
{{- else if and (not $val) (ne $mode "ifTrue") }}
{{- $args = append $args (printf "--no-%s" $name) }}
{{- end }}
{{- else if not (kindIs "invalid" $val) }}
{{- if and (kindIs "float64" $val) (eq (floor $val) $val) }}{{ $val = int64 $val }}{{ end }}
{{- if ne (toString $val) "" }}
{{- $args = append $args (printf "--%s=%v" $name $val) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml (concat $args $v.extraArgs) }}
{{- end }}
