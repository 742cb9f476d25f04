{{/* Names and labels shared by every template. */}}

{{- define "wayang.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wayang.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "wayang.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wayang.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "wayang.labels" -}}
{{ include "wayang.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: wayang
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "wayang.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "wayang.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "wayang.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Service the API server calls for admission; its DNS name is in the certificate. */}}
{{- define "wayang.webhookService" -}}
{{- printf "%s-webhook" (include "wayang.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wayang.webhookHost" -}}
{{- printf "%s.%s.svc" (include "wayang.webhookService" .) .Release.Namespace -}}
{{- end -}}

{{- define "wayang.certSecret" -}}
{{- printf "%s-webhook-tls" (include "wayang.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
