{{/* Full name of the release's objects: the release name, with "-flavio"
unless the release name already says flavio. Cut at 63 (DNS label limit). */}}
{{- define "flavio.fullname" -}}
{{- if contains "flavio" .Release.Name -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-flavio-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The full name with "-SUFFIX", the full name cut so the whole stays
within 63 characters: a long release name shortens the prefix, never the
suffix, so "-metrics" or "-uninstall" objects cannot take the names of the
operator's own. Call with (list . "suffix"). */}}
{{- define "flavio.suffixed" -}}
{{- $suffix := index . 1 -}}
{{- $max := int (sub 62 (len $suffix)) -}}
{{- printf "%s-%s" (include "flavio.fullname" (index . 0) | trunc $max | trimSuffix "-") $suffix -}}
{{- end -}}

{{/* Labels of the operator's objects (every object but the FlavioCluster
and the uninstall hook's): the common ones, name and instance. */}}
{{- define "flavio.operatorLabels" -}}
{{ include "flavio.labels" . }}
{{ include "flavio.operatorSelector" . }}
{{- end -}}

{{- define "flavio.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: flavio
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selects the operator's pods. */}}
{{- define "flavio.operatorSelector" -}}
app.kubernetes.io/name: flavio-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "flavio.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "flavio.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "flavio.operatorImage" -}}
{{ .Values.operator.image.repository }}:{{ default .Chart.AppVersion .Values.operator.image.tag }}
{{- end -}}

{{- define "flavio.nodeImage" -}}
{{ .Values.cluster.image.repository }}:{{ default .Chart.AppVersion .Values.cluster.image.tag }}
{{- end -}}

{{/* The operator's permissions: exactly the verbs it uses, the same list as
deploy/operator/rbac.yaml (the validation test compares them). Server-side
apply of a child that does not exist yet is a create, which the API server
authorizes as `create`: hence create next to patch for every applied kind. */}}
{{- define "flavio.rbacRules" -}}
- apiGroups: ["flaviodb.io"]
  resources: ["flavioclusters"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["flaviodb.io"]
  resources: ["flavioclusters/status"]
  verbs: ["patch"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "update"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["list", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end -}}
