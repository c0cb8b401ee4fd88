{{/* Names: <release>-fleetmeter unless the release is already called so. */}}
{{- define "fleetmeter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fleetmeter.fullname" -}}
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

{{/* Labels of every object; "fleetmeter.selector" with a component for pods. */}}
{{- define "fleetmeter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "fleetmeter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fleetmeter
{{- end -}}

{{- define "fleetmeter.selector" -}}
app.kubernetes.io/name: {{ include "fleetmeter.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fleetmeter.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "fleetmeter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fleetmeter.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fleetmeter.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- include "fleetmeter.fullname" . -}}
{{- end -}}
{{- end -}}

{{- define "fleetmeter.tariffsConfigMap" -}}
{{- if .Values.tariffs.existingConfigMap -}}
{{- .Values.tariffs.existingConfigMap -}}
{{- else -}}
{{- printf "%s-tariffs" (include "fleetmeter.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Tenants with an HTTP ingest key in the Secret. */}}
{{- define "fleetmeter.httpKeyTenants" -}}
{{- if .Values.httpKeyTenants -}}
{{- toJson .Values.httpKeyTenants -}}
{{- else -}}
{{- toJson (keys .Values.secrets.httpKeys | sortAlpha) -}}
{{- end -}}
{{- end -}}

{{/* The mounts every fleetmeter container shares: its configuration, the secrets as
files, and a writable /tmp on a read-only root file system. */}}
{{- define "fleetmeter.volumeMounts" -}}
- name: config
  mountPath: /etc/fleetmeter/config
  readOnly: true
- name: secrets
  mountPath: /etc/fleetmeter/secrets
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "fleetmeter.volumes" -}}
- name: config
  configMap:
    name: {{ include "fleetmeter.fullname" . }}-config
- name: secrets
  secret:
    secretName: {{ include "fleetmeter.secretName" . }}
    defaultMode: 0440
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "fleetmeter.tariffVolume" -}}
- name: tariffs
  configMap:
    name: {{ include "fleetmeter.tariffsConfigMap" . }}
{{- end -}}

{{/* The tariffs as a directory, never subPath: a subPath mount does not follow the
kubelet's symlink swap, so hot reload would never see a change. */}}
{{- define "fleetmeter.tariffMount" -}}
- name: tariffs
  mountPath: /etc/fleetmeter/tariffs
  readOnly: true
{{- end -}}

{{/* Probes on a component's --listen port: alive, and ready (its dependencies answer). */}}
{{- define "fleetmeter.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 6
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
startupProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: 2
  failureThreshold: 60
{{- end -}}

{{/* The environment every component shares: its pod name, and Go's soft memory limit
at the container's limit (GOMEMLIMIT), so the collector works harder before the kernel
kills the pod. */}}
{{- define "fleetmeter.env" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: GOMEMLIMIT
  valueFrom:
    resourceFieldRef:
      resource: limits.memory
      divisor: "1"
{{- end -}}
