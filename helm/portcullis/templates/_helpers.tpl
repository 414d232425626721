{{/* The chart name, overridable. */}}
{{- define "portcullis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name (63 characters at most: a DNS label). A release whose name already
contains the chart name is used as is, so `helm install portcullis` gives Service `portcullis`.
*/}}
{{- define "portcullis.fullname" -}}
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

{{- define "portcullis.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels (https://helm.sh/docs/chart_best_practices/labels/). */}}
{{- define "portcullis.labels" -}}
helm.sh/chart: {{ include "portcullis.chart" . }}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/component: auth-proxy
app.kubernetes.io/part-of: portcullis
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the pods: never change them between releases. */}}
{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "portcullis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "portcullis.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "portcullis.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The Service's cluster-local DNS name (what Istio's extensionProviders name). */}}
{{- define "portcullis.serviceFQDN" -}}
{{- printf "%s.%s.svc.%s" (include "portcullis.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/*
The Secret the pod reads, and its keys: the chart's own, or existingSecret. Rendering fails with
a message naming the values to set when neither gives a required secret.
*/}}
{{- define "portcullis.secretName" -}}
{{- if .Values.existingSecret.name }}
{{- .Values.existingSecret.name }}
{{- else }}
{{- include "portcullis.fullname" . }}
{{- end }}
{{- end }}

{{- define "portcullis.validateSecrets" -}}
{{- if .Values.existingSecret.name }}
{{- if not .Values.existingSecret.clientSecretKey }}
{{- fail "portcullis: existingSecret.clientSecretKey must name the key holding the OIDC client secret" }}
{{- end }}
{{- if not .Values.existingSecret.cookieSecretKey }}
{{- fail "portcullis: existingSecret.cookieSecretKey must name the key holding the cookie secret" }}
{{- end }}
{{- else }}
{{- if not .Values.secrets.clientSecret }}
{{- fail "portcullis: the OIDC client secret is required: set secrets.clientSecret, or existingSecret.name (a Secret with key client-secret)" }}
{{- end }}
{{- if not .Values.secrets.cookieSecret }}
{{- fail "portcullis: the cookie secret is required: set secrets.cookieSecret (generate one with: openssl rand -base64 32), or existingSecret.name (a Secret with key cookie-secret)" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Configuration checks the schema cannot express (or that must hold even with
--skip-schema-validation): required keys, no secrets in the ConfigMap, listen addresses owned by
`ports`.
*/}}
{{- define "portcullis.validateConfig" -}}
{{- $c := .Values.config | default dict }}
{{- $oidc := $c.oidc | default dict }}
{{- $cookie := $c.cookie | default dict }}
{{- $server := $c.server | default dict }}
{{- if not $oidc.issuer_url }}
{{- fail "portcullis: config.oidc.issuer_url is required (the OpenID issuer, e.g. https://idp.example.com)" }}
{{- end }}
{{- if not $oidc.client_id }}
{{- fail "portcullis: config.oidc.client_id is required" }}
{{- end }}
{{- range $key := list "client_secret" "client_secret_file" }}
{{- if hasKey $oidc $key }}
{{- fail (printf "portcullis: config.oidc.%s must not be set: the ConfigMap is not secret; use secrets.clientSecret or existingSecret" $key) }}
{{- end }}
{{- end }}
{{- range $key := list "secret" "secret_file" "previous_secrets" }}
{{- if hasKey $cookie $key }}
{{- fail (printf "portcullis: config.cookie.%s must not be set: the ConfigMap is not secret; use secrets.cookieSecret / secrets.previousCookieSecrets or existingSecret" $key) }}
{{- end }}
{{- end }}
{{- range $key := list "http_address" "admin_address" }}
{{- if hasKey $server $key }}
{{- fail (printf "portcullis: config.server.%s is set by the chart from ports.*; change ports instead" $key) }}
{{- end }}
{{- end }}
{{- with $server.grpc_address }}
{{- if ne (toString .) (printf "0.0.0.0:%v" $.Values.ports.grpc) }}
{{- fail (printf "portcullis: config.server.grpc_address must be \"0.0.0.0:%v\" (ports.grpc, what the Service targets), got %q" $.Values.ports.grpc (toString .)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
One TOML value. Helm hands numbers from values files over as float64: whole ones are written
as integers (`max_pending_logins = 5`, not `5.0`, which the binary would reject). Strings use
JSON escaping, which is valid in TOML basic strings.
*/}}
{{- define "portcullis.tomlValue" -}}
{{- $v := . }}
{{- if kindIs "string" $v }}
{{- toJson $v }}
{{- else if kindIs "bool" $v }}
{{- $v }}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) }}
{{- if eq (float64 $v) (floor $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) }}
{{- $v }}
{{- else if kindIs "slice" $v }}
{{- $items := list }}
{{- range $v }}
{{- $items = append $items (include "portcullis.tomlValue" .) }}
{{- end }}
{{- printf "[%s]" (join ", " $items) }}
{{- else if kindIs "map" $v }}
{{- $items := list }}
{{- range $k, $item := $v }}
{{- if not (kindIs "invalid" $item) }}
{{- $items = append $items (printf "%s = %s" (toJson $k) (include "portcullis.tomlValue" $item)) }}
{{- end }}
{{- end }}
{{- printf "{ %s }" (join ", " $items) | replace "{  }" "{}" }}
{{- else }}
{{- toJson $v }}
{{- end }}
{{- end }}

{{/* The whole portcullis.toml. */}}
{{- define "portcullis.toml" -}}
# Rendered by the portcullis Helm chart from .Values.config; secrets come from the environment.
{{- $c := deepCopy (.Values.config | default dict) }}
{{- $server := $c.server | default dict }}
{{- $_ := set $server "http_address" (printf "0.0.0.0:%v" .Values.ports.http) }}
{{- $_ := set $server "admin_address" (printf "0.0.0.0:%v" .Values.ports.admin) }}
{{- $_ := set $c "server" $server }}
{{- $known := list "server" "oidc" "cookie" "authz" "headers" "pages" "log" "tracing" "bearer" "compat" }}
{{- $sections := $known }}
{{- range $section, $_ := $c }}
{{- if not (has $section $known) }}{{ $sections = append $sections $section }}{{ end }}
{{- end }}
{{- range $section := $sections }}
{{- $body := get $c $section }}
{{- if kindIs "map" $body }}

[{{ $section }}]
{{- range $key, $value := $body }}
{{- if not (kindIs "invalid" $value) }}
{{ $key }} = {{ include "portcullis.tomlValue" $value }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
