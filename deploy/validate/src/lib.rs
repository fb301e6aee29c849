//! Offline validation of FlavioDB's Kubernetes manifests.
//!
//! `kubectl apply` on a real cluster drops unknown fields with at most a
//! warning (and the API servers we support, 1.20 included, prune them
//! silently from custom resources), so a `replica:` typed for `replicas:`
//! installs fine and does the wrong thing. This crate catches that before any
//! cluster sees it: every object is parsed into its `k8s-openapi` type with
//! [`serde_ignored`] reporting each field the type does not know, the types'
//! own deserializers reject missing required fields and wrong types, and
//! custom resources are checked against the `openAPIV3Schema` of their CRD,
//! treating fields the schema does not name as errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One Kubernetes object read from a file, with where it came from.
#[derive(Clone, Debug)]
pub struct Object {
    /// `path#index` of the YAML document.
    pub origin: String,
    /// The object as JSON.
    pub value: Value,
}

/// Reads every non-empty YAML document of `text` (a multi-document file).
pub fn parse_documents(origin: &str, text: &str) -> Result<Vec<Object>, String> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| format!("{origin}#{i}: bad YAML: {e}"))?;
        // `---` separators with nothing between them (helm leaves those)
        // are empty documents, not objects.
        if !value.is_null() {
            out.push(Object {
                origin: format!("{origin}#{i}"),
                value,
            });
        }
    }
    Ok(out)
}

/// Every `*.yaml` file under `dir`, recursively, sorted, skipping `skip`.
pub fn yaml_files(dir: &Path, skip: &[&Path]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if skip.iter().any(|s| d.starts_with(s)) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The structural schemas of the custom resources, by (apiVersion, kind).
#[derive(Default)]
pub struct Schemas {
    by_kind: BTreeMap<(String, String), Value>,
}

impl Schemas {
    /// Collects the schema of every version of every CRD among `objects`.
    pub fn from_objects(objects: &[Object]) -> Result<Self, String> {
        let mut by_kind = BTreeMap::new();
        for o in objects {
            if o.value["kind"] != "CustomResourceDefinition" {
                continue;
            }
            let crd: CustomResourceDefinition = serde_json::from_value(o.value.clone())
                .map_err(|e| format!("{}: CRD: {e}", o.origin))?;
            for v in &crd.spec.versions {
                let schema = v
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .ok_or_else(|| format!("{}: version {} has no schema", o.origin, v.name))?;
                let schema = serde_json::to_value(schema).map_err(|e| e.to_string())?;
                by_kind.insert(
                    (
                        format!("{}/{}", crd.spec.group, v.name),
                        crd.spec.names.kind.clone(),
                    ),
                    schema,
                );
            }
        }
        Ok(Self { by_kind })
    }

    fn get(&self, api_version: &str, kind: &str) -> Option<&Value> {
        self.by_kind
            .get(&(api_version.to_string(), kind.to_string()))
    }
}

/// Parses `value` as `T`, reporting unknown fields (by path), missing required
/// fields and wrong types.
pub fn check_typed<T: DeserializeOwned + schemars::JsonSchema>(value: &Value) -> Vec<String> {
    let mut errors = check_unknown_and_types::<T>(value);
    // k8s-openapi fills a missing required field with its default instead of
    // failing, so required fields are checked against the type's schema.
    let mut all = Vec::new();
    check_schema(value, &inlined_schema::<T>(), "", &mut all);
    errors.extend(
        all.into_iter()
            .filter(|e| e.contains("missing required field")),
    );
    errors
}

/// The type's JSON schema with every subschema inlined (no `$ref`s).
fn inlined_schema<T: schemars::JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft07()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    generator.into_root_schema_for::<T>().to_value()
}

fn check_unknown_and_types<T: DeserializeOwned>(value: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    let parsed: Result<T, _> = serde_ignored::deserialize(value.clone(), |path| {
        // serde_ignored writes `?` for each Option on the way; drop them so
        // the path reads as in the YAML (spec.template.spec.containers.0...).
        let path = path.to_string();
        let path = path.split('.').filter(|s| *s != "?").collect::<Vec<_>>();
        unknown.push(format!("unknown field `{}`", path.join(".")));
    });
    match parsed {
        Ok(_) => unknown,
        Err(e) => {
            unknown.push(e.to_string());
            unknown
        }
    }
}

/// Checks one object: its k8s-openapi type for built-in kinds, the CRD schema
/// (and the operator's own spec rules) for FlavioClusters, a strict local type
/// for the Prometheus Operator's ServiceMonitor. Unknown kinds are errors, so
/// nothing slips through unchecked.
pub fn check_object(value: &Value, schemas: &Schemas) -> Vec<String> {
    let api_version = value["apiVersion"].as_str().unwrap_or_default();
    let kind = value["kind"].as_str().unwrap_or_default();
    match (api_version, kind) {
        ("v1", "Namespace") => check_typed::<Namespace>(value),
        ("v1", "ServiceAccount") => check_typed::<ServiceAccount>(value),
        ("v1", "Service") => check_typed::<Service>(value),
        ("v1", "Secret") => check_typed::<Secret>(value),
        ("v1", "ConfigMap") => check_typed::<ConfigMap>(value),
        ("apps/v1", "Deployment") => check_typed::<Deployment>(value),
        ("apps/v1", "StatefulSet") => check_typed::<StatefulSet>(value),
        ("batch/v1", "Job") => check_typed::<Job>(value),
        ("policy/v1", "PodDisruptionBudget") => check_typed::<PodDisruptionBudget>(value),
        ("networking.k8s.io/v1", "NetworkPolicy") => check_typed::<NetworkPolicy>(value),
        ("rbac.authorization.k8s.io/v1", "Role") => check_typed::<Role>(value),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => check_typed::<RoleBinding>(value),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => check_typed::<ClusterRole>(value),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            check_typed::<ClusterRoleBinding>(value)
        }
        // JSONSchemaProps is recursive, so its schema cannot be inlined:
        // unknown fields and types only.
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            check_unknown_and_types::<CustomResourceDefinition>(value)
        }
        // Its serde attributes reject unknown and missing fields themselves.
        ("monitoring.coreos.com/v1", "ServiceMonitor") => {
            check_unknown_and_types::<ServiceMonitor>(value)
        }
        ("monitoring.coreos.com/v1", "PodMonitor") => check_unknown_and_types::<PodMonitor>(value),
        ("flaviodb.io/v1alpha1", "FlavioCluster") => check_flaviocluster(value, schemas),
        ("cert-manager.io/v1", "Certificate") => check_unknown_and_types::<Certificate>(value),
        _ => vec![format!(
            "no validator for apiVersion `{api_version}` kind `{kind}`: add one to flavio-manifests"
        )],
    }
}

fn check_flaviocluster(value: &Value, schemas: &Schemas) -> Vec<String> {
    let Some(schema) = schemas.get("flaviodb.io/v1alpha1", "FlavioCluster") else {
        return vec!["no CRD schema for flaviodb.io/v1alpha1 FlavioCluster was loaded".into()];
    };
    let mut errors = check_unknown_and_types::<ObjectMeta>(&value["metadata"])
        .into_iter()
        .map(|e| format!("metadata: {e}"))
        .collect::<Vec<_>>();
    // The API server checks apiVersion, kind and metadata itself (the
    // schema names only spec and status); the rest must match the schema.
    let mut body = value.clone();
    if let Some(m) = body.as_object_mut() {
        for k in ["apiVersion", "kind", "metadata"] {
            m.remove(k);
        }
    }
    check_schema(&body, schema, "", &mut errors);
    if errors.is_empty() {
        // Rules the schema cannot say (replicas >= 1, nVal <= ringSize), which
        // the operator enforces itself: the same function decides here.
        match serde_json::from_value::<flavio_operator::crd::FlavioCluster>(value.clone()) {
            Ok(fc) => {
                if let Err(e) = flavio_operator::crd::validate(&fc.spec, &Default::default()) {
                    errors.push(format!("{}: {}", e.reason, e.message));
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    errors
}

/// Validates `v` against a structural schema (the subset CRDs use), adding
/// one message per problem to `errors`. A field the schema does not name is
/// an error unless the schema preserves unknown fields.
pub fn check_schema(v: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
    let at = if path.is_empty() { "." } else { path };
    if v.is_null() {
        if schema["nullable"] != true {
            errors.push(format!("{at}: null is not allowed"));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(v.is_i64() || v.is_u64() || v.is_string()) {
            errors.push(format!("{at}: expected an integer or a string, got {v}"));
        }
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(v)
    {
        errors.push(format!(
            "{at}: {v} is not one of {}",
            Value::from(allowed.clone())
        ));
    }
    let ty = schema["type"].as_str().unwrap_or_default();
    match ty {
        "object" => {
            let Some(map) = v.as_object() else {
                errors.push(format!("{at}: expected an object, got {v}"));
                return;
            };
            let props = schema["properties"].as_object();
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
            for (k, child) in map {
                let child_path = format!("{path}.{k}");
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    check_schema(child, s, &child_path, errors);
                } else if schema["additionalProperties"].is_object() {
                    check_schema(child, &schema["additionalProperties"], &child_path, errors);
                } else if !(preserve || schema["additionalProperties"] == true) {
                    errors.push(format!("{child_path}: unknown field `{k}`"));
                }
            }
            for r in schema["required"].as_array().into_iter().flatten() {
                if let Some(r) = r.as_str()
                    && !map.contains_key(r)
                {
                    errors.push(format!("{at}: missing required field `{r}`"));
                }
            }
        }
        "array" => match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_schema(item, &schema["items"], &format!("{path}[{i}]"), errors);
                }
            }
            None => errors.push(format!("{at}: expected an array, got {v}")),
        },
        "string" if !v.is_string() => errors.push(format!("{at}: expected a string, got {v}")),
        "boolean" if !v.is_boolean() => errors.push(format!("{at}: expected a boolean, got {v}")),
        "number" if !v.is_number() => errors.push(format!("{at}: expected a number, got {v}")),
        "integer" => match v.as_f64() {
            Some(n) if v.is_i64() || v.is_u64() => {
                if let Some(min) = schema["minimum"].as_f64()
                    && n < min
                {
                    errors.push(format!("{at}: {v} is below the minimum {min}"));
                }
                if let Some(max) = schema["maximum"].as_f64()
                    && n > max
                {
                    errors.push(format!("{at}: {v} is above the maximum {max}"));
                }
                if let Some(k) = schema["multipleOf"].as_f64()
                    && k > 0.0
                    && n % k != 0.0
                {
                    errors.push(format!("{at}: {v} is not a multiple of {k}"));
                }
            }
            _ => errors.push(format!("{at}: expected an integer, got {v}")),
        },
        _ => {}
    }
}

/// The Prometheus Operator's ServiceMonitor, reduced to the fields our chart
/// writes; any other field is an error, so a typo cannot pass.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // read only by serde
pub struct ServiceMonitor {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: ServiceMonitorSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // read only by serde
struct ServiceMonitorSpec {
    selector: LabelSelector,
    endpoints: Vec<ServiceMonitorEndpoint>,
    #[serde(default)]
    job_label: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // read only by serde
struct ServiceMonitorEndpoint {
    port: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    scrape_timeout: Option<String>,
}

/// cert-manager's Certificate, reduced to the fields our example and the
/// operator write (`children::certificate`); any other field is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // read only by serde
pub struct Certificate {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: CertificateSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // read only by serde
struct CertificateSpec {
    secret_name: String,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    renew_before: Option<String>,
    #[serde(default)]
    private_key: Option<CertificatePrivateKey>,
    #[serde(default)]
    usages: Vec<CertificateUsage>,
    dns_names: Vec<String>,
    issuer_ref: CertificateIssuerRef,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // read only by serde
struct CertificatePrivateKey {
    algorithm: CertificateKeyAlgorithm,
    #[serde(default)]
    size: Option<u32>,
}

#[derive(Deserialize)]
#[allow(dead_code)] // read only by serde
enum CertificateKeyAlgorithm {
    #[serde(rename = "RSA")]
    Rsa,
    #[serde(rename = "ECDSA")]
    Ecdsa,
    Ed25519,
}

/// The key usages cert-manager knows that a node certificate may need.
#[derive(Deserialize)]
#[allow(dead_code)] // read only by serde
enum CertificateUsage {
    #[serde(rename = "server auth")]
    ServerAuth,
    #[serde(rename = "client auth")]
    ClientAuth,
    #[serde(rename = "digital signature")]
    DigitalSignature,
    #[serde(rename = "key encipherment")]
    KeyEncipherment,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // read only by serde
struct CertificateIssuerRef {
    name: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    group: Option<String>,
}

/// The Prometheus Operator's PodMonitor, reduced to the fields our chart
/// writes; any other field is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // read only by serde
pub struct PodMonitor {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: PodMonitorSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // read only by serde
struct PodMonitorSpec {
    selector: LabelSelector,
    pod_metrics_endpoints: Vec<ServiceMonitorEndpoint>,
}
