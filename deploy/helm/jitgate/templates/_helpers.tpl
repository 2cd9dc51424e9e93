{{/* The release's base name: the release name, or RELEASE-jitgate when the release name does not contain "jitgate". */}}
{{- define "jitgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The labels that select this release's pods. */}}
{{- define "jitgate.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "jitgate.labels" -}}
{{ include "jitgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: jitgate
{{- end -}}

{{/* The gate.yaml the server runs with: the chart's fixed keys, then .Values.config. */}}
{{- define "jitgate.gateYaml" -}}
# Written by the jitgate chart. The keys below are the chart's; everything after them
# comes from the `config` value. The database URL comes from the environment
# (GATE_DATABASE_URL, from a Secret), never from this file.
listen: 0.0.0.0:{{ .Values.containerPort }}
public_url: {{ required "publicUrl is required: the URL people reach jitgate at" .Values.publicUrl | quote }}
policy: policy.yaml
data_dir: /var/lib/jitgate
signing_key: /etc/jitgate/signing-key/signing-key
{{- with .Values.config }}
{{ toYaml . }}
{{- end }}
{{- end -}}
