{{/* Names, labels and images: every template takes them from here. */}}

{{- define "intent-fleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "intent-fleet.fullname" -}}
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

{{- define "intent-fleet.operatorName" -}}
{{- printf "%s-operator" (include "intent-fleet.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The bus keeps the short name users type in URLs: http://intent-bus.<namespace>:8080 */}}
{{- define "intent-fleet.busName" -}}
intent-bus
{{- end -}}

{{- define "intent-fleet.busSecret" -}}
{{- default (printf "%s-admin" (include "intent-fleet.busName" .)) .Values.bus.existingSecret -}}
{{- end -}}

{{- define "intent-fleet.busURL" -}}
{{- printf "http://%s.%s:%v" (include "intent-fleet.busName" .) .Release.Namespace .Values.bus.service.port -}}
{{- end -}}

{{/* IntentWorkers without spec.bus.url use this: the value, else the chart's own bus. */}}
{{- define "intent-fleet.defaultBusURL" -}}
{{- if .Values.operator.defaultBusURL -}}
{{- .Values.operator.defaultBusURL -}}
{{- else if .Values.bus.enabled -}}
{{- include "intent-fleet.busURL" . -}}
{{- end -}}
{{- end -}}

{{- define "intent-fleet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "intent-fleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: intent-fleet
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "intent-fleet.operatorSelector" -}}
app.kubernetes.io/name: {{ include "intent-fleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "intent-fleet.busSelector" -}}
app.kubernetes.io/name: {{ include "intent-fleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: bus
{{- end -}}

{{- define "intent-fleet.operatorImage" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) -}}
{{- end -}}

{{- define "intent-fleet.sidecarImage" -}}
{{- default (printf "%s:%s" .Values.sidecar.image.repository (default .Chart.AppVersion .Values.sidecar.image.tag)) .Values.operator.sidecarImage -}}
{{- end -}}

{{- define "intent-fleet.busImage" -}}
{{- printf "%s:%s" (default .Values.sidecar.image.repository .Values.bus.image.repository) (default .Chart.AppVersion .Values.bus.image.tag) -}}
{{- end -}}

{{/* The restricted security context every container of the chart runs with. */}}
{{- define "intent-fleet.containerSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* RBAC rules from files/operator-rules.yaml: the copy of operator/rbac.py a test keeps in step. */}}
{{- define "intent-fleet.rules" -}}
{{- $rules := .Files.Get "files/operator-rules.yaml" | fromYaml -}}
{{- toYaml (index $rules .kind) -}}
{{- end -}}
