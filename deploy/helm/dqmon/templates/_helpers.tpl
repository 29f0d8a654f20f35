{{/*
Named templates. The chart's own Deployment uses them, and so can your chart: add dqmon as a
dependency, then in your pod spec
  containers: [..., {{ include "dqmon.sidecar" (dict "Values" .Values.dqmon "Chart" .Subcharts.dqmon.Chart "Release" .Release) | nindent 4 }}]
  volumes: {{ include "dqmon.volumes" ... }}
*/}}

{{- define "dqmon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dqmon.fullname" -}}
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

{{- define "dqmon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dqmon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dqmon.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "dqmon.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Pod labels a PodMonitor selects on: add them to any pod that carries the sidecar. */}}
{{- define "dqmon.podLabels" -}}
dqmon.io/sidecar: "true"
dqmon.io/release: {{ .Release.Name | quote }}
{{- end }}

{{- define "dqmon.checksConfigMap" -}}
{{- default (printf "%s-checks" (include "dqmon.fullname" .)) .Values.checks.existingConfigMap }}
{{- end }}

{{- define "dqmon.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The dqmon sidecar container. */}}
{{- define "dqmon.sidecar" -}}
- name: dqmon
  image: {{ include "dqmon.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["run", "--checks", "/etc/dqmon/checks"]
  ports:
    - name: dqmon-http
      containerPort: {{ .Values.port }}
      protocol: TCP
  env:
    - name: DQMON_HTTP_PORT
      value: {{ .Values.port | quote }}
    - name: DQMON_DATA_DIR
      value: /var/lib/dqmon
    {{- range $name, $value := .Values.env }}
    - name: {{ $name }}
      value: {{ $value | quote }}
    {{- end }}
    {{- range .Values.secretEnv }}
    - name: {{ required "secretEnv[].name is required" .name }}
      valueFrom:
        secretKeyRef:
          name: {{ required "secretEnv[].secretName is required" .secretName }}
          key: {{ required "secretEnv[].key is required" .key }}
          optional: {{ .optional | default false }}
    {{- end }}
  livenessProbe:
    httpGet: {path: /healthz, port: dqmon-http}
    {{- toYaml .Values.probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet: {path: /readyz, port: dqmon-http}
    {{- toYaml .Values.probes.readiness | nindent 4 }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: dqmon-checks
      mountPath: /etc/dqmon/checks
      readOnly: true
    - name: dqmon-data
      mountPath: /var/lib/dqmon
    - name: dqmon-tmp
      mountPath: /tmp
{{- end }}

{{/* The sidecar's volumes: checks (ConfigMap), state (emptyDir), /tmp (read-only root filesystem). */}}
{{- define "dqmon.volumes" -}}
- name: dqmon-checks
  configMap:
    name: {{ include "dqmon.checksConfigMap" . }}
- name: dqmon-data
  emptyDir:
    sizeLimit: {{ .Values.dataDir.sizeLimit }}
- name: dqmon-tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}
