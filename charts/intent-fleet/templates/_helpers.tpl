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

{{/*
The bus's pod template: one replica on SQLite (StatefulSet, its database on a volume), or
stateless replicas sharing PostgreSQL (Deployment). Called with (dict "root" . "shared" bool).
*/}}
{{- define "intent-fleet.busPodTemplate" -}}
{{- $root := .root }}
{{- $shared := .shared }}
{{- $bus := $root.Values.bus }}
  template:
    metadata:
      labels:
        {{- include "intent-fleet.labels" $root | nindent 8 }}
        {{- include "intent-fleet.busSelector" $root | nindent 8 }}
    spec:
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        fsGroup: 65532
        fsGroupChangePolicy: OnRootMismatch
        seccompProfile:
          type: RuntimeDefault
      {{- if $shared }}
      # Replicas on different nodes where there are several: one node lost is one replica.
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 100
              podAffinityTerm:
                topologyKey: kubernetes.io/hostname
                labelSelector:
                  matchLabels:
                    {{- include "intent-fleet.busSelector" $root | nindent 20 }}
      {{- end }}
      # SIGTERM answers parked long-polls and commits what is queued.
      terminationGracePeriodSeconds: 30
      containers:
        - name: bus
          image: {{ include "intent-fleet.busImage" $root }}
          imagePullPolicy: {{ $bus.image.pullPolicy }}
          command: ["/opt/intent-fleet/bin/intent-fleet", "bus"]
          args:
            {{- if $shared }}
            # The URL (and its password) from a file, never the command line or environment.
            - --db-file=/var/run/intent-bus-db/url
            - --db-pool-size={{ $bus.database.poolSize | int64 }}
            {{- else }}
            - --db=/data/intent-bus.db
            {{- end }}
            # Every address of the pod: the Service is how anything reaches it.
            - --host=0.0.0.0
            - --port=8080
            - --admin-secret-file=/var/run/intent-bus/admin-secret
            - --rate-limit={{ $bus.rateLimit }}
            - --rate-burst={{ $bus.rateBurst }}
            - --max-live-intents-per-key={{ $bus.quotas.maxLiveIntentsPerKey | int64 }}
            - --max-live-bytes-per-key={{ $bus.quotas.maxLiveBytesPerKey | int64 }}
            - --max-goals-per-key={{ $bus.quotas.maxGoalsPerKey | int64 }}
            - --max-kv-entries-per-key={{ $bus.quotas.maxKvEntriesPerKey | int64 }}
            - --max-parked-claims-per-key={{ $bus.quotas.maxParkedClaimsPerKey | int64 }}
            - --claim-timeout={{ $bus.claimTimeoutSeconds }}
            - --retention={{ $bus.retentionSeconds }}
            {{- if $bus.requireSignatures }}
            - --require-signatures
            {{- end }}
          ports:
            - name: http
              containerPort: 8080
          startupProbe:
            httpGet:
              path: /health
              port: http
            periodSeconds: 2
            failureThreshold: 60
          livenessProbe:
            httpGet:
              path: /health
              port: http
            periodSeconds: 10
          readinessProbe:
            httpGet:
              path: /health
              port: http
            periodSeconds: 5
          resources:
            {{- toYaml $bus.resources | nindent 12 }}
          securityContext:
            {{- include "intent-fleet.containerSecurity" $root | nindent 12 }}
          volumeMounts:
            {{- if $shared }}
            - name: database
              mountPath: /var/run/intent-bus-db
              readOnly: true
            {{- else }}
            - name: data
              mountPath: /data
            {{- end }}
            - name: admin
              mountPath: /var/run/intent-bus
              readOnly: true
      volumes:
        - name: admin
          secret:
            secretName: {{ include "intent-fleet.busSecret" $root }}
            defaultMode: 0440
            items:
              - key: admin-secret
                path: admin-secret
        {{- if $shared }}
        - name: database
          secret:
            secretName: {{ $bus.database.existingSecret }}
            defaultMode: 0440
            items:
              - key: {{ $bus.database.secretKey }}
                path: url
        {{- else if not $bus.persistence.enabled }}
        - name: data
          emptyDir: {}
        {{- else if $bus.persistence.existingClaim }}
        - name: data
          persistentVolumeClaim:
            claimName: {{ $bus.persistence.existingClaim }}
        {{- end }}
      {{- with $bus.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $bus.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
