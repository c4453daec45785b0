{{/* Names, labels, the image, the rendered gateway config and the checks that stop a bad release. */}}

{{- define "gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llm-gateway
{{- end -}}

{{/* The gateway pods (the mock and the migration Job have their own component). */}}
{{- define "gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "gateway.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "gateway.secretName" -}}
{{- required "secrets.existingSecret is required: create a Secret holding GATEWAY_MASTER_KEY (and REDIS_URL, POSTGRES_URL, provider keys as your state backend and models need) and name it here; this chart never creates secret values" .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "gateway.mockBaseUrl" -}}
{{- printf "http://%s-mock:%d" (include "gateway.fullname" .) (int .Values.demo.port) -}}
{{- end -}}

{{/*
The gateway config file: values.config with the state section written from values.state and,
with demo.enabled, the demo aliases added. The text is emitted as toYaml writes it, never through
tpl: `${VAR}` references stay for the gateway to expand.
*/}}
{{- define "gateway.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $state := deepCopy (default (dict) $cfg.state) -}}
{{- $_ := set $state "backend" .Values.state.backend -}}
{{- if ne .Values.state.backend "embedded" -}}
{{- $_ := set $state "url" "${REDIS_URL}" -}}
{{- end -}}
{{- if eq .Values.state.backend "postgres" -}}
{{- $pg := deepCopy (default (dict) $state.postgres) -}}
{{- $_ := set $pg "url" "${POSTGRES_URL}" -}}
{{- $_ := set $state "postgres" $pg -}}
{{- end -}}
{{- $_ := set $cfg "state" $state -}}
{{- if .Values.demo.enabled -}}
{{- $models := deepCopy (default (dict) $cfg.models) -}}
{{- $_ := set $cfg "models" (merge $models (deepCopy .Values.demo.models)) -}}
{{- $aliases := deepCopy (default (dict) $cfg.model_aliases) -}}
{{- range $name, $target := .Values.demo.modelAliases -}}
{{- $_ := set $aliases $name $target -}}
{{- end -}}
{{- $_ := set $cfg "model_aliases" $aliases -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* The shutdown grace the gateway is configured with (server.shutdown_grace_s, default 30). */}}
{{- define "gateway.shutdownGrace" -}}
{{- $server := default (dict) .Values.config.server -}}
{{- int (ceil (default 30 (index $server "shutdown_grace_s"))) -}}
{{- end -}}

{{- define "gateway.terminationGracePeriod" -}}
{{- $needed := add (int .Values.drain.preStopSeconds) (int (include "gateway.shutdownGrace" .)) -}}
{{- $given := int .Values.drain.terminationGracePeriodSeconds -}}
{{- if eq $given 0 -}}
{{- add $needed 10 -}}
{{- else if le $given $needed -}}
{{- fail (printf "drain.terminationGracePeriodSeconds (%d) must exceed drain.preStopSeconds + the gateway's shutdown grace, server.shutdown_grace_s (%d + %s): Kubernetes would kill requests still draining" $given (int .Values.drain.preStopSeconds) (include "gateway.shutdownGrace" .)) -}}
{{- else -}}
{{- $given -}}
{{- end -}}
{{- end -}}

{{/* Environment of the gateway container: the secrets by reference, ports, state. */}}
{{- define "gateway.env" -}}
{{- $secret := include "gateway.secretName" . -}}
{{- range $name, $key := .Values.secrets.required }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef: {name: {{ $secret | quote }}, key: {{ $key | quote }}}
{{- end }}
{{- range $name, $key := .Values.secrets.optional }}
{{- if not (hasKey $.Values.secrets.required $name) }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef: {name: {{ $secret | quote }}, key: {{ $key | quote }}, optional: true}
{{- end }}
{{- end }}
{{- if ne .Values.state.backend "embedded" }}
{{- if .Values.state.redis.url }}
- name: REDIS_URL
  value: {{ .Values.state.redis.url | quote }}
{{- else }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef: {name: {{ $secret | quote }}, key: {{ .Values.state.redis.urlSecretKey | quote }}}
{{- end }}
{{- end }}
{{- if eq .Values.state.backend "postgres" }}
- name: POSTGRES_URL
  valueFrom:
    secretKeyRef: {name: {{ $secret | quote }}, key: {{ .Values.state.postgres.urlSecretKey | quote }}}
{{- end }}
{{- if eq (int .Values.workers) 1 }}
- name: METRICS_PORT
  value: {{ .Values.ports.metrics | quote }}
{{- end }}
{{- if .Values.demo.enabled }}
- name: MOCK_BASE_URL
  value: {{ include "gateway.mockBaseUrl" . | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The metrics ports: one, or one per worker process. */}}
{{- define "gateway.metricsPorts" -}}
{{- range $i, $_ := until (int .Values.workers) }}
- name: {{ if eq $i 0 }}metrics{{ else }}metrics-w{{ $i }}{{ end }}
  port: {{ add (int $.Values.ports.metrics) $i }}
{{- end }}
{{- end -}}

{{/* Combinations the schema cannot see: each stops the release with what to change. */}}
{{- define "gateway.validate" -}}
{{- if eq .Values.state.backend "embedded" -}}
{{- if .Values.autoscaling.enabled -}}
{{- fail "state.backend embedded keeps keys, limits and spend in one pod's SQLite file: set autoscaling.enabled=false and replicaCount=1, or use state.backend redis or postgres" -}}
{{- end -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- fail "state.backend embedded keeps keys, limits and spend in one pod's SQLite file: replicaCount must be 1 (or use state.backend redis or postgres)" -}}
{{- end -}}
{{- if gt (int .Values.workers) 1 -}}
{{- fail "workers > 1 needs state.backend redis or postgres (each worker process would keep its own keys, limits and spend)" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail (printf "autoscaling.minReplicas (%d) must not exceed autoscaling.maxReplicas (%d)" (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- $last := add (int .Values.ports.metrics) (sub (int .Values.workers) 1) -}}
{{- if and (le (int .Values.ports.metrics) (int .Values.ports.http)) (le (int .Values.ports.http) $last) -}}
{{- fail (printf "ports.http (%d) must not be one of the metrics ports %d-%d" (int .Values.ports.http) (int .Values.ports.metrics) $last) -}}
{{- end -}}
{{- if gt $last 65535 -}}
{{- fail (printf "ports.metrics + workers - 1 (%d) is past 65535" $last) -}}
{{- end -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if and $pdb.enabled (ne (toString $pdb.maxUnavailable) "") (ne (toString $pdb.minAvailable) "") -}}
{{- fail "podDisruptionBudget: set maxUnavailable or minAvailable, not both (\"\" for the other)" -}}
{{- end -}}
{{- if and $pdb.enabled (eq (toString $pdb.maxUnavailable) "") (eq (toString $pdb.minAvailable) "") -}}
{{- fail "podDisruptionBudget: set one of maxUnavailable or minAvailable" -}}
{{- end -}}
{{- end -}}
