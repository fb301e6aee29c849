//! The objects a FlavioCluster owns, built as plain values (no I/O) so their
//! exact shape is testable: a headless Service (stable pod DNS), a client
//! Service, the StatefulSet (one PVC per pod), the cookie Secret and the
//! PodDisruptionBudget. All carry the cluster's labels and a controller owner
//! reference, so the garbage collector deletes them with the cluster; the
//! PVCs come from the StatefulSet's template and deliberately have no owner,
//! so they outlive it unless the retention policy says otherwise.
//!
//! What it leaves out: TLS between nodes, and a NetworkPolicy (packaging).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, ExecAction,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, Secret,
    SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec,
    TopologySpreadConstraint, Volume, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::crd::{AddressMode, FlavioCluster, TlsMode};
use crate::decide::Naming;
use crate::{Error, Result};

/// The node's gRPC port (client, admin and node-to-node).
pub const PORT: i32 = 10017;
/// The node's plain-HTTP `/metrics` port (no cookie).
pub const METRICS_PORT: i32 = 10018;
/// Where the data PVC is mounted.
pub const DATA_DIR: &str = "/var/lib/flavio";
/// Where the cookie Secret is mounted.
pub const COOKIE_DIR: &str = "/etc/flavio/cookie";
/// The Secret's key holding the cookie.
pub const COOKIE_KEY: &str = "cookie";
/// The PVC template's name (PVCs are `data-<pod>`).
pub const DATA_VOLUME: &str = "data";
/// The node image's non-root user and group (distroless `nonroot`); also the
/// fsGroup, so the data PVC is writable by it.
pub const NODE_UID: i64 = 65532;

/// The naming of `fc`'s nodes and children.
pub fn naming(fc: &FlavioCluster) -> Result<Naming> {
    Ok(Naming {
        cluster: fc.name_any(),
        namespace: fc.namespace().ok_or(Error::Missing("namespace"))?,
    })
}

/// The cookie Secret's name: the cookie users set (or the operator made).
pub fn secret_name(fc: &FlavioCluster) -> String {
    format!("{}-cookie", fc.name_any())
}

/// The Secret pods read their cookies from (see [`crate::cookie`]): the
/// operator's, one cookie per line.
pub fn live_secret_name(fc: &FlavioCluster) -> String {
    format!("{}-cookie-live", fc.name_any())
}

/// Where a pod finds its TLS files (`tls.crt`, `tls.key`, `ca.crt`).
pub const TLS_DIR: &str = "/etc/flavio/tls";
/// The annotation of an operator-made certificate's Secret: when it
/// expires (seconds since the epoch).
pub const NOT_AFTER_ANNOTATION: &str = "flaviodb.io/not-after";

/// The Secret the nodes' certificate is in, `None` without TLS.
pub fn tls_secret_name(fc: &FlavioCluster) -> Option<String> {
    match fc.spec.tls.mode {
        TlsMode::Operator | TlsMode::CertManager => Some(format!("{}-tls", fc.name_any())),
        TlsMode::Secret => fc.spec.tls.secret_name.clone(),
        TlsMode::Disabled => None,
    }
}

/// The Secret of the operator-made CA (certificate and key).
pub fn tls_ca_secret_name(fc: &FlavioCluster) -> String {
    format!("{}-tls-ca", fc.name_any())
}

/// The name every client checks node certificates against: the client
/// Service's. Nodes are dialed by pod IP or pod name, neither known when
/// the certificate is made, so all of them answer to this one name.
pub fn tls_server_name(naming: &Naming) -> String {
    format!("{}.{}.svc", naming.cluster, naming.namespace)
}

/// The names an operator-made node certificate carries.
pub fn tls_names(naming: &Naming) -> Vec<String> {
    let (c, h, ns) = (&naming.cluster, naming.headless(), &naming.namespace);
    vec![
        tls_server_name(naming),
        format!("{c}.{ns}.svc.cluster.local"),
        format!("*.{h}.{ns}.svc"),
        format!("*.{h}.{ns}.svc.cluster.local"),
        "localhost".into(),
    ]
}

/// The cert-manager `Certificate` of `tls.mode: certManager`: cert-manager
/// writes the nodes' Secret (`tls.crt`, `tls.key`, `ca.crt`) from it and
/// renews it a third of its life before it ends.
pub fn certificate(fc: &FlavioCluster, naming: &Naming) -> Result<serde_json::Value> {
    let issuer = fc.spec.tls.issuer_ref.as_ref().ok_or(Error::Missing(
        "spec.tls.issuerRef (tls.mode is certManager)",
    ))?;
    let name = tls_secret_name(fc).ok_or(Error::Missing("TLS Secret name"))?;
    let hours = u64::from(fc.spec.tls.certificate_days.max(1)) * 24;
    let meta = meta(fc, name.clone())?;
    Ok(serde_json::json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {
            "name": name,
            "namespace": meta.namespace,
            "labels": meta.labels,
            "ownerReferences": meta.owner_references,
        },
        "spec": {
            "secretName": name,
            "duration": format!("{hours}h"),
            "renewBefore": format!("{}h", (hours / 3).max(1)),
            "privateKey": {"algorithm": "ECDSA", "size": 256},
            "usages": ["server auth", "client auth", "digital signature", "key encipherment"],
            "dnsNames": tls_names(naming),
            "issuerRef": {"name": issuer.name, "kind": issuer.kind, "group": issuer.group},
        }
    }))
}

/// The operator-made CA's Secret.
pub fn tls_ca_secret(fc: &FlavioCluster, cert_pem: &str, key_pem: &str) -> Result<Secret> {
    Ok(Secret {
        metadata: meta(fc, tls_ca_secret_name(fc))?,
        string_data: Some(BTreeMap::from([
            ("ca.crt".to_string(), cert_pem.to_string()),
            ("ca.key".to_string(), key_pem.to_string()),
        ])),
        type_: Some("Opaque".into()),
        ..Default::default()
    })
}

/// The nodes' certificate Secret (`kubernetes.io/tls`, with `ca.crt`).
pub fn tls_secret(
    fc: &FlavioCluster,
    name: String,
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
    not_after: u64,
) -> Result<Secret> {
    let mut metadata = meta(fc, name)?;
    metadata.annotations = Some(BTreeMap::from([(
        NOT_AFTER_ANNOTATION.to_string(),
        not_after.to_string(),
    )]));
    Ok(Secret {
        metadata,
        string_data: Some(BTreeMap::from([
            ("tls.crt".to_string(), cert_pem.to_string()),
            ("tls.key".to_string(), key_pem.to_string()),
            ("ca.crt".to_string(), ca_pem.to_string()),
        ])),
        type_: Some("kubernetes.io/tls".into()),
        ..Default::default()
    })
}

/// The PVC name of pod `ordinal`.
pub fn pvc_name(fc: &FlavioCluster, ordinal: i32) -> String {
    format!("{DATA_VOLUME}-{}-{ordinal}", fc.name_any())
}

/// Labels selecting the cluster's pods (and put on every child).
pub fn selector_labels(fc: &FlavioCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "flavio".to_string()),
        ("app.kubernetes.io/instance".to_string(), fc.name_any()),
    ])
}

/// [`selector_labels`] as a label selector string.
pub fn selector_string(fc: &FlavioCluster) -> String {
    selector_labels(fc)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn labels(fc: &FlavioCluster) -> BTreeMap<String, String> {
    let mut l = selector_labels(fc);
    l.insert(
        "app.kubernetes.io/managed-by".into(),
        crate::MANAGER.to_string(),
    );
    l
}

fn owner(fc: &FlavioCluster) -> Result<OwnerReference> {
    fc.controller_owner_ref(&()).ok_or(Error::Missing("uid"))
}

fn meta(fc: &FlavioCluster, name: String) -> Result<ObjectMeta> {
    Ok(ObjectMeta {
        name: Some(name),
        namespace: fc.namespace(),
        labels: Some(labels(fc)),
        owner_references: Some(vec![owner(fc)?]),
        ..Default::default()
    })
}

fn grpc_port() -> ServicePort {
    ServicePort {
        name: Some("grpc".into()),
        port: PORT,
        // Explicit although it is the default: 1.20's server-side apply
        // refuses list entries that omit a key field (ports are keyed by
        // port and protocol).
        protocol: Some("TCP".into()),
        target_port: Some(IntOrString::Int(PORT)),
        ..Default::default()
    }
}

/// The headless Service: gives each pod its stable DNS name, published
/// before Ready because nodes must find each other to become Ready.
pub fn headless_service(fc: &FlavioCluster, naming: &Naming) -> Result<Service> {
    Ok(Service {
        metadata: meta(fc, naming.headless())?,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(fc)),
            ports: Some(vec![grpc_port()]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The client Service: Ready pods only.
pub fn client_service(fc: &FlavioCluster) -> Result<Service> {
    Ok(Service {
        metadata: meta(fc, fc.name_any())?,
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(fc)),
            ports: Some(vec![grpc_port()]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The cookie Secret, created once with `cookie` and never rewritten.
pub fn cookie_secret(fc: &FlavioCluster, name: String, cookie: &str) -> Result<Secret> {
    Ok(Secret {
        metadata: meta(fc, name)?,
        string_data: Some(BTreeMap::from([(
            COOKIE_KEY.to_string(),
            cookie.to_string(),
        )])),
        type_: Some("Opaque".into()),
        ..Default::default()
    })
}

/// The PodDisruptionBudget (policy/v1): at most one member down by eviction.
pub fn pdb(fc: &FlavioCluster) -> Result<PodDisruptionBudget> {
    Ok(PodDisruptionBudget {
        metadata: meta(fc, fc.name_any())?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(fc)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The default placement: the cluster's pods preferably on different nodes
/// (a node's loss then takes at most one replica of a partition when there
/// are enough nodes), not required (a small cluster still schedules).
fn spread_over_nodes(fc: &FlavioCluster) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector_labels(fc)),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The cluster's pods spread evenly over zones (`topology.kubernetes.io/zone`
/// of their Kubernetes nodes), so that the operator can give members in
/// distinct zones and claim can put replicas there. `ScheduleAnyway`: a
/// cluster in one zone, or on nodes without the label, still schedules.
fn spread_over_zones(fc: &FlavioCluster) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew: 1,
        topology_key: crate::controller::ZONE_LABEL.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(fc)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The size request and storage class of a StatefulSet's data claim
/// template: what its spec can no longer change.
pub fn claim_storage(sts: &StatefulSet) -> Option<(String, Option<String>)> {
    let t = sts
        .spec
        .as_ref()?
        .volume_claim_templates
        .as_ref()?
        .iter()
        .find(|t| t.metadata.name.as_deref() == Some(DATA_VOLUME))?;
    let spec = t.spec.as_ref()?;
    let size = spec.resources.as_ref()?.requests.as_ref()?.get("storage")?;
    Some((size.0.clone(), spec.storage_class_name.clone()))
}

/// The StatefulSet annotation holding [`template_hash`] of its pod template:
/// a change of it starts a rolling restart.
pub const TEMPLATE_HASH: &str = "flaviodb.io/template-hash";

/// A digest of the pod template `fc` asks for (hex SHA-1 of its JSON).
pub fn template_hash(fc: &FlavioCluster, naming: &Naming) -> Result<String> {
    hash_of(&build_statefulset(fc, naming, 0, 0)?)
}

fn hash_of(sts: &StatefulSet) -> Result<String> {
    use sha1::Digest;
    let template = sts.spec.as_ref().map(|s| &s.template);
    let json = serde_json::to_vec(&template).map_err(|e| Error::Serde(e.to_string()))?;
    Ok(sha1::Sha1::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The template hash a StatefulSet was applied with.
pub fn applied_template_hash(sts: &StatefulSet) -> Option<&str> {
    sts.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_HASH)
        .map(String::as_str)
}

/// The StatefulSet with `replicas` pods, pods from ordinal `partition` up
/// taking a new pod template (see [`crate::rollout`]).
///
/// Pods start in parallel: membership is ordered by the operator, not by pod
/// start order, and parallel start halves the time to grow. Each pod listens
/// on its pod IP (several pods share one host's loopback in the test
/// environment), names itself by its stable DNS name, and advertises that
/// name or its pod IP per `addressMode`. `FLAVIO_NODE` and
/// `FLAVIO_COOKIE_FILE` make `kubectl exec <pod> -- flavio ping` work without
/// flags, and readiness is `flavio health` (gRPC health through an exec
/// probe, which every Kubernetes version runs).
pub fn statefulset(
    fc: &FlavioCluster,
    naming: &Naming,
    replicas: i32,
    partition: i32,
) -> Result<StatefulSet> {
    let mut sts = build_statefulset(fc, naming, replicas, partition)?;
    let hash = hash_of(&sts)?;
    sts.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(TEMPLATE_HASH.into(), hash);
    Ok(sts)
}

fn build_statefulset(
    fc: &FlavioCluster,
    naming: &Naming,
    replicas: i32,
    partition: i32,
) -> Result<StatefulSet> {
    let spec = &fc.spec;
    let host = format!("$(POD_NAME).{}.{}.svc", naming.headless(), naming.namespace);
    let advertise = match spec.address_mode {
        AddressMode::Dns => format!("{host}:{PORT}"),
        AddressMode::PodIp => format!("$(POD_IP):{PORT}"),
    };
    let w = spec.write_quorum.unwrap_or(spec.n_val);
    let health = ExecAction {
        command: Some(vec!["flavio".into(), "health".into()]),
    };
    let tls_secret = tls_secret_name(fc);
    let mut env_vars = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_IP", "status.podIP"),
        env("FLAVIO_NAME", format!("flavio@{host}")),
        env("FLAVIO_LISTEN", format!("$(POD_IP):{PORT}")),
        env("FLAVIO_ADVERTISE", advertise),
        env("FLAVIO_DATA_DIR", DATA_DIR),
        env("FLAVIO_RING_SIZE", spec.ring_size.to_string()),
        env(
            "FLAVIO_HANDOFF_CONCURRENCY",
            spec.handoff_concurrency.to_string(),
        ),
        env("FLAVIO_COOKIE_FILE", format!("{COOKIE_DIR}/{COOKIE_KEY}")),
        env("FLAVIO_NODE", format!("$(POD_IP):{PORT}")),
        env("FLAVIO_LOG_FORMAT", "json"),
        env("FLAVIO_METRICS_LISTEN", format!("$(POD_IP):{METRICS_PORT}")),
    ];
    let mut mounts = vec![
        VolumeMount {
            name: DATA_VOLUME.into(),
            mount_path: DATA_DIR.into(),
            ..Default::default()
        },
        VolumeMount {
            name: "cookie".into(),
            mount_path: COOKIE_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
    ];
    let mut volumes = vec![Volume {
        name: "cookie".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(live_secret_name(fc)),
            ..Default::default()
        }),
        ..Default::default()
    }];
    if let Some(secret) = &tls_secret {
        // The node serves TLS and refuses to start without it; `flavio`
        // run in the pod (probes, kubectl exec) reads the same files.
        env_vars.extend([
            env("FLAVIO_TLS_CERT", format!("{TLS_DIR}/tls.crt")),
            env("FLAVIO_TLS_KEY", format!("{TLS_DIR}/tls.key")),
            env("FLAVIO_TLS_CA", format!("{TLS_DIR}/ca.crt")),
            env("FLAVIO_TLS_SERVER_NAME", tls_server_name(naming)),
            env("FLAVIO_REQUIRE_TLS", "true"),
        ]);
        mounts.push(VolumeMount {
            name: "tls".into(),
            mount_path: TLS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let container = Container {
        name: "flavio".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.clone(),
        command: Some(vec!["flavio".into()]),
        args: Some(vec![
            "serve".into(),
            "--n-val".into(),
            spec.n_val.to_string(),
            "--w-val".into(),
            w.to_string(),
        ]),
        env: Some(env_vars),
        ports: Some(vec![
            ContainerPort {
                name: Some("grpc".into()),
                container_port: PORT,
                // See grpc_port(): 1.20's apply needs the key field spelled out.
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("metrics".into()),
                container_port: METRICS_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        readiness_probe: Some(Probe {
            exec: Some(health.clone()),
            period_seconds: Some(2),
            timeout_seconds: Some(3),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        // A node that stops answering its health service for a minute is
        // restarted; the startup probe gives a large data directory two
        // minutes to open before that rule applies.
        startup_probe: Some(Probe {
            exec: Some(health.clone()),
            period_seconds: Some(2),
            timeout_seconds: Some(3),
            failure_threshold: Some(60),
            ..Default::default()
        }),
        liveness_probe: Some(Probe {
            exec: Some(health),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(6),
            ..Default::default()
        }),
        resources: spec.resources.clone(),
        // The node writes only to its data PVC, so the root filesystem can be
        // read-only and it needs no capabilities (the port is unprivileged).
        security_context: Some(SecurityContext {
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let pvc = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(selector_labels(fc)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(spec.storage.size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(StatefulSet {
        metadata: meta(fc, fc.name_any())?,
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(naming.headless()),
            pod_management_policy: Some("Parallel".into()),
            // The StatefulSet controller restarts pods at ordinals from the
            // partition up; the operator lowers it one pod at a time.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(partition),
                    ..Default::default()
                }),
            }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(fc)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(fc)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    // The same restricted defaults as the chart's operator pod;
                    // fsGroup makes the PVC (and cookie) readable by the user.
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(NODE_UID),
                        run_as_group: Some(NODE_UID),
                        fs_group: Some(NODE_UID),
                        // Skip the recursive chown of a large data volume
                        // at every start when it already belongs to us.
                        fs_group_change_policy: Some("OnRootMismatch".into()),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    termination_grace_period_seconds: Some(30),
                    node_selector: spec.node_selector.clone(),
                    tolerations: spec.tolerations.clone(),
                    affinity: Some(
                        spec.affinity
                            .clone()
                            .unwrap_or_else(|| spread_over_nodes(fc)),
                    ),
                    image_pull_secrets: spec.image_pull_secrets.clone(),
                    topology_spread_constraints: Some(vec![spread_over_zones(fc)]),
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![pvc]),
            ..Default::default()
        }),
        ..Default::default()
    })
}
