//! The `FlavioCluster` custom resource (`flaviodb.io/v1alpha1`, short name
//! `fc`): what the user asks for (spec) and what the operator reports
//! (status), with the schema generated from these types by schemars.
//!
//! Validation lives here too, in [`validate`], because the API servers we
//! must support (1.20) ignore CEL rules: the operator refuses an invalid spec
//! itself (Degraded, an event, no action). The schema's `minimum`s are a
//! first line only. What this leaves out: defaulting webhooks and conversion
//! between versions (there is one version).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The annotation a user sets to the id of the published plan to approve it
/// (only with `membership.autoCommit: false`).
pub const APPROVE_ANNOTATION: &str = "flaviodb.io/approve-plan";

/// The finalizer that keeps a FlavioCluster until its PVC policy has run.
pub const FINALIZER: &str = "flaviodb.io/cleanup";

/// A FlavioDB cluster: a StatefulSet of `flavio serve` pods whose ring
/// membership the operator keeps equal to `replicas`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "flaviodb.io",
    version = "v1alpha1",
    kind = "FlavioCluster",
    plural = "flavioclusters",
    shortname = "fc",
    namespaced,
    status = "FlavioClusterStatus",
    scale = r#"{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.readyReplicas","labelSelectorPath":".status.selector"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Members","type":"integer","jsonPath":".status.memberCount"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Transfers","type":"integer","jsonPath":".status.pendingTransfers"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct FlavioClusterSpec {
    /// Number of ring members (and pods). At least 1.
    #[schemars(range(min = 1))]
    pub replicas: i32,
    /// The node image; its entrypoint is the `flavio` binary.
    #[serde(default = "default_image")]
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`; Kubernetes' default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Always", "IfNotPresent", "Never"]))]
    pub image_pull_policy: Option<String>,
    /// Secrets for pulling the node image from a private registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Partitions in the ring: a multiple of 4 from 8 to 1024 (riak uses
    /// powers of two; with 3 zones, a multiple of 3 such as 48 or 96 lets
    /// every preference list span 3 zones). Fixed at creation; a change is
    /// refused.
    #[serde(default = "default_ring_size")]
    #[schemars(range(min = 8, max = 1024), extend("multipleOf" = 4))]
    pub ring_size: u32,
    /// Default replicas of a client write (N).
    #[serde(default = "default_n_val")]
    #[schemars(range(min = 1, max = 1024))]
    pub n_val: u32,
    /// Default replies a client write waits for (W); defaults to `nVal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub write_quorum: Option<u32>,
    /// The data volume of each pod.
    #[serde(default)]
    pub storage: Storage,
    /// Resources of the node container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Concurrent handoff transfers per node.
    #[serde(default = "default_handoff_concurrency")]
    #[schemars(range(min = 1, max = 64))]
    pub handoff_concurrency: u32,
    /// How membership changes are committed and watched.
    #[serde(default)]
    pub membership: Membership,
    /// Which address each node advertises to the others: its stable DNS
    /// name (`dns`, the default) or its pod IP (`podIP`, for environments
    /// without cluster DNS, such as our test control plane).
    #[serde(default)]
    pub address_mode: AddressMode,
    /// Pod placement: node selector. (Affinity, below, defaults to spreading
    /// the cluster's pods over nodes, preferred; set it to replace that.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Pod placement: tolerations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Pod placement: affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// How a change of the pod template (image, resources, ...) is rolled out.
    #[serde(default)]
    pub upgrade: Upgrade,
    /// TLS for every connection to and between nodes.
    #[serde(default)]
    pub tls: TlsSpec,
}

/// Where the nodes' certificates come from.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// `operator` (the default): the operator makes a CA for the cluster
    /// (Secret `<name>-tls-ca`) and the nodes' certificate (Secret
    /// `<name>-tls`), and renews it before it expires. `certManager`: the
    /// operator creates a cert-manager `Certificate` (`<name>-tls`, from
    /// `issuerRef`) and cert-manager writes and renews the Secret. `secret`: a
    /// `kubernetes.io/tls` Secret you provide (`secretName`), with `ca.crt`
    /// beside `tls.crt` and `tls.key`, as cert-manager writes it; its
    /// certificate must name `<name>.<namespace>.svc`. `disabled`: plain TCP,
    /// the cookie crosses the network in clear.
    #[serde(default)]
    pub mode: TlsMode,
    /// The Secret of `mode: secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The cert-manager issuer of `mode: certManager`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
    /// Days an operator-made node certificate is valid; it is renewed when a
    /// third of that is left.
    #[serde(default = "default_cert_days")]
    #[schemars(range(min = 1, max = 3650))]
    pub certificate_days: u32,
}

fn default_cert_days() -> u32 {
    90
}

/// A cert-manager issuer.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// The issuer's name.
    pub name: String,
    /// `Issuer` (the default, in the cluster's namespace) or `ClusterIssuer`.
    #[serde(default = "default_issuer_kind")]
    pub kind: String,
    /// Its API group.
    #[serde(default = "default_issuer_group")]
    pub group: String,
}

fn default_issuer_kind() -> String {
    "Issuer".into()
}

fn default_issuer_group() -> String {
    "cert-manager.io".into()
}

impl Default for TlsSpec {
    fn default() -> Self {
        TlsSpec {
            mode: TlsMode::default(),
            secret_name: None,
            issuer_ref: None,
            certificate_days: default_cert_days(),
        }
    }
}

/// [`TlsSpec::mode`].
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub enum TlsMode {
    /// Certificates made and renewed by the operator.
    #[default]
    Operator,
    /// A cert-manager `Certificate` the operator creates from `issuerRef`.
    CertManager,
    /// Certificates from `secretName` (e.g. written by cert-manager).
    Secret,
    /// No TLS.
    Disabled,
}

/// The gated rolling restart: one pod at a time, highest ordinal first, each
/// only once the ring is settled and the previous one is back.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Upgrade {
    /// Seconds a restarted pod gets to run the new revision, be Ready and be
    /// back in the ring; after that the roll stops there (Degraded).
    #[serde(default = "default_pod_timeout")]
    #[schemars(range(min = 1))]
    pub pod_timeout_seconds: u64,
}

impl Default for Upgrade {
    fn default() -> Self {
        Upgrade {
            pod_timeout_seconds: default_pod_timeout(),
        }
    }
}

fn default_pod_timeout() -> u64 {
    600
}

/// The per-pod data volume and what happens to it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Requested size, e.g. `1Gi`.
    #[serde(default = "default_storage_size")]
    pub size: String,
    /// Storage class; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// What happens to a removed member's PVC after a scale-down.
    #[serde(default)]
    pub when_scaled: Retention,
    /// What happens to every PVC when the FlavioCluster is deleted.
    #[serde(default)]
    pub when_deleted: Retention,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            size: default_storage_size(),
            storage_class_name: None,
            when_scaled: Retention::Retain,
            when_deleted: Retention::Retain,
        }
    }
}

/// PVC retention.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Retention {
    /// Keep the PVC (the default: data is never deleted implicitly).
    #[default]
    Retain,
    /// Delete the PVC once its member has left (or the cluster is deleted).
    Delete,
}

/// How membership changes are committed.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    /// Commit plans without asking (default). When false, the plan is
    /// published in status and committed only after the annotation
    /// `flaviodb.io/approve-plan: <plan id>` names it.
    #[serde(default = "default_true")]
    pub auto_commit: bool,
    /// Seconds without any transfer advancing before the cluster is marked
    /// Degraded with the stuck transfers named.
    #[serde(default = "default_stuck_after")]
    pub stuck_after_seconds: u64,
}

impl Default for Membership {
    fn default() -> Self {
        Membership {
            auto_commit: true,
            stuck_after_seconds: default_stuck_after(),
        }
    }
}

/// The address a node advertises.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum AddressMode {
    /// `<pod>.<headless service>.<namespace>.svc:10017`: stable across restarts.
    #[default]
    #[serde(rename = "dns")]
    Dns,
    /// The pod IP: for clusters without DNS (our test control plane). Whether
    /// the ring follows a pod that comes back with another IP is untested.
    #[serde(rename = "podIP")]
    PodIp,
}

// The node image built from the same commit: its tag is the workspace
// version, which is also the chart's appVersion, so a FlavioCluster without
// `image` runs the same release as the chart and the operator.
fn default_image() -> String {
    concat!("flaviodb/flavio:", env!("CARGO_PKG_VERSION")).into()
}
fn default_ring_size() -> u32 {
    64
}
fn default_n_val() -> u32 {
    3
}
fn default_handoff_concurrency() -> u32 {
    2
}
fn default_storage_size() -> String {
    "1Gi".into()
}
fn default_true() -> bool {
    true
}
fn default_stuck_after() -> u64 {
    300
}

/// What the operator observed and intends, as the user sees it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlavioClusterStatus {
    /// Creating, ScalingUp, ScalingDown, AwaitingApproval, Available, Degraded, Terminating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Pods that are Ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods running the StatefulSet's update revision (the current pod template).
    #[serde(default)]
    pub updated_replicas: i32,
    /// The label selector of the cluster's pods, for the scale subresource
    /// (so a HorizontalPodAutoscaler can drive `replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// What works but deserves attention (e.g. replicas below nVal).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Members of the ring that are `valid`.
    #[serde(default)]
    pub member_count: i32,
    /// Ring members with their share now and after pending transfers.
    #[serde(default)]
    pub members: Vec<MemberStatus>,
    /// Ownership changes still pending in the ring.
    #[serde(default)]
    pub pending_transfers: u32,
    /// The ring version last seen.
    #[serde(default)]
    pub ring_version: u64,
    /// The claimant's node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimant: Option<String>,
    /// The plan awaiting approval (autoCommit false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanStatus>,
    /// Available, Progressing, Degraded, Upgrading.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The spec generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The ring size the cluster was created with (to refuse changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_size: Option<u32>,
    /// The id of the cluster's ring, recorded once: the operator follows
    /// only this ring (a pod back on an empty volume has a ring of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// The membership change under way, kept so that a restart resumes it.
    #[serde(default)]
    pub intent: Intent,
}

/// One ring member.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Node name.
    pub name: String,
    /// joining, valid, leaving, exiting, down, removed.
    pub state: String,
    /// Percent of partitions owned now.
    pub ring_pct: f64,
    /// Percent owned once pending transfers complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_pct: Option<f64>,
}

/// A plan published for approval.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanStatus {
    /// The claimant's plan id; approve with the annotation naming it.
    pub id: String,
    /// The staged changes, as `join <node>` / `leave <node>` /
    /// `set-location <node> <zone>`.
    pub changes: Vec<String>,
    /// Transfers the plan starts.
    #[serde(default)]
    pub transfers: u32,
    /// The claimant's warnings about the resulting ring (replicas not on
    /// distinct nodes or locations, replicas lost).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The operator's record of a membership change in flight.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Intent {
    /// Nodes the operator asked to leave that have not yet been seen removed.
    #[serde(default)]
    pub leaving: Vec<String>,
    /// A fingerprint of transfer progress and when it last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The pod the rolling restart released last, while it is not back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling: Option<Rolling>,
}

/// A pod released by the rolling restart.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rolling {
    /// Its ordinal.
    pub ordinal: i32,
    /// Unix seconds when it was released.
    pub since: i64,
}

/// Transfer progress fingerprint.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Changes whenever a transfer advances or completes.
    pub fingerprint: String,
    /// Unix seconds when the fingerprint last changed.
    pub since: i64,
}

/// A standard condition.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Available, Progressing or Degraded.
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    /// A CamelCase reason.
    pub reason: String,
    /// A human message.
    pub message: String,
    /// RFC 3339 time of the last status change.
    pub last_transition_time: String,
    /// The generation this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What a cluster already has that its spec cannot change: the ring size
/// it was created with (from status), and its StatefulSet's volume claim
/// template (Kubernetes refuses any change to it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The ring size at creation.
    pub ring_size: Option<u32>,
    /// The claim template's size request and storage class.
    pub storage: Option<(String, Option<String>)>,
}

/// Bytes of a Kubernetes quantity (`1Gi`, `500M`, `1e9`, `1073741824`);
/// `None` for what it cannot read. The API server rewrites quantities in
/// canonical form, so sizes are compared by value, not as text.
pub fn quantity_bytes(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let mult = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        _ => return None,
    };
    num.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .map(|n| n * mult)
}

/// Why a spec is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// CamelCase reason for the condition and the event.
    pub reason: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Checks `spec` on its own and against what the cluster already has.
pub fn validate(spec: &FlavioClusterSpec, recorded: &Recorded) -> Result<(), Invalid> {
    let bad = |reason, message: String| Err(Invalid { reason, message });
    if spec.replicas < 1 {
        return bad(
            "InvalidReplicas",
            format!("replicas must be at least 1, got {}", spec.replicas),
        );
    }
    let rs = spec.ring_size;
    if !(8..=1024).contains(&rs) || !rs.is_multiple_of(4) {
        return bad(
            "InvalidRingSize",
            format!("ringSize must be a multiple of 4 from 8 to 1024, got {rs}"),
        );
    }
    if let Some(old) = recorded.ring_size
        && old != rs
    {
        return bad(
            "RingSizeImmutable",
            format!("ringSize is fixed at creation: the cluster has {old}, the spec asks for {rs}"),
        );
    }
    if spec.n_val < 1 || spec.n_val > rs {
        return bad(
            "InvalidNVal",
            format!("nVal must be from 1 to ringSize ({rs}), got {}", spec.n_val),
        );
    }
    if let Some(w) = spec.write_quorum
        && (w < 1 || w > spec.n_val)
    {
        return bad(
            "InvalidWriteQuorum",
            format!(
                "writeQuorum must be from 1 to nVal ({}), got {w}",
                spec.n_val
            ),
        );
    }
    if let Some(p) = &spec.image_pull_policy
        && !["Always", "IfNotPresent", "Never"].contains(&p.as_str())
    {
        return bad(
            "InvalidImagePullPolicy",
            format!("imagePullPolicy must be Always, IfNotPresent or Never, got {p:?}"),
        );
    }
    if quantity_bytes(&spec.storage.size).is_none_or(|b| b <= 0.0) {
        return bad(
            "InvalidStorageSize",
            format!(
                "storage.size must be a positive quantity such as 1Gi, got {:?}",
                spec.storage.size
            ),
        );
    }
    if let Some((size, class)) = &recorded.storage {
        let same_size = quantity_bytes(size) == quantity_bytes(&spec.storage.size);
        if !same_size || *class != spec.storage.storage_class_name {
            let show = |s: &str, c: &Option<String>| match c {
                Some(c) => format!("{s} of class {c:?}"),
                None => format!("{s} of the default class"),
            };
            return bad(
                "StorageImmutable",
                format!(
                    "storage.size and storage.storageClassName are fixed once the StatefulSet exists \
                     (Kubernetes cannot change its volume claim template): it has {}, the spec asks for {}; \
                     put them back (resize PVCs through their storage class instead)",
                    show(size, class),
                    show(&spec.storage.size, &spec.storage.storage_class_name)
                ),
            );
        }
    }
    if !(1..=64).contains(&spec.handoff_concurrency) {
        return bad(
            "InvalidHandoffConcurrency",
            format!(
                "handoffConcurrency must be from 1 to 64, got {}",
                spec.handoff_concurrency
            ),
        );
    }
    Ok(())
}

/// What a valid spec still deserves a warning for, in status.
pub fn warnings(spec: &FlavioClusterSpec) -> Vec<String> {
    let mut w = Vec::new();
    if u32::try_from(spec.replicas).is_ok_and(|r| r < spec.n_val) {
        w.push(format!(
            "replicas ({}) is below nVal ({}): the {} copies of a key share nodes, so losing one node loses more than one copy of some keys",
            spec.replicas, spec.n_val, spec.n_val
        ));
    }
    w
}

/// The CRD as YAML, as `flavio-operator crd` prints it and
/// `deploy/crd/flaviocluster.yaml` holds it.
///
/// It carries the recommended labels like every object we ship; its
/// `instance` is the API group, since one CRD serves every release in the
/// cluster (helm does not template `crds/`).
pub fn crd_yaml() -> crate::Result<String> {
    use kube::CustomResourceExt;
    let mut crd = FlavioCluster::crd();
    crd.metadata.labels = Some(BTreeMap::from([
        ("app.kubernetes.io/name".into(), "flavio-operator".into()),
        ("app.kubernetes.io/instance".into(), "flaviodb.io".into()),
        ("app.kubernetes.io/part-of".into(), "flavio".into()),
    ]));
    serde_yaml::to_string(&crd).map_err(|e| crate::Error::Serde(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FlavioClusterSpec {
        serde_json::from_value(serde_json::json!({"replicas": 3})).expect("minimal spec")
    }

    #[test]
    fn defaults() {
        let s = spec();
        assert_eq!(s.ring_size, 64);
        assert_eq!(s.n_val, 3);
        assert!(s.membership.auto_commit);
        assert_eq!(s.address_mode, AddressMode::Dns);
        assert_eq!(s.storage.when_deleted, Retention::Retain);
        assert_eq!(validate(&s, &Recorded::default()), Ok(()));
    }

    #[test]
    fn replicas_below_n_val_is_a_warning() {
        let mut s = spec();
        assert!(warnings(&s).is_empty());
        s.replicas = 2;
        let w = warnings(&s);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("below nVal"), "{w:?}");
        assert_eq!(validate(&s, &Recorded::default()), Ok(()), "accepted");
    }

    #[test]
    fn quantities_compare_by_value() {
        assert_eq!(quantity_bytes("1Gi"), quantity_bytes("1024Mi"));
        assert_eq!(quantity_bytes("1G"), Some(1e9));
        assert_eq!(quantity_bytes("1e9"), Some(1e9));
        assert_eq!(quantity_bytes("1500M"), quantity_bytes("1.5G"));
        assert_eq!(quantity_bytes("lots"), None);
        assert_eq!(quantity_bytes("1Xi"), None);
        let s: FlavioClusterSpec = serde_json::from_value(
            serde_json::json!({"replicas": 1, "storage": {"size": "1024Mi"}}),
        )
        .expect("parses");
        let same = Recorded {
            ring_size: Some(64),
            storage: Some(("1Gi".into(), None)),
        };
        assert_eq!(
            validate(&s, &same),
            Ok(()),
            "the API server's canonical form"
        );
        let other_class = Recorded {
            storage: Some(("1Gi".into(), Some("fast".into()))),
            ..same
        };
        assert_eq!(
            validate(&s, &other_class).map_err(|e| e.reason),
            Err("StorageImmutable")
        );
    }

    #[test]
    fn refusals() {
        let cases: Vec<(serde_json::Value, Option<u32>, &str)> = vec![
            (serde_json::json!({"replicas": 0}), None, "InvalidReplicas"),
            (
                serde_json::json!({"replicas": 3, "ringSize": 50}),
                None,
                "InvalidRingSize",
            ),
            (
                serde_json::json!({"replicas": 3, "ringSize": 4}),
                None,
                "InvalidRingSize",
            ),
            (
                serde_json::json!({"replicas": 3, "ringSize": 2048}),
                None,
                "InvalidRingSize",
            ),
            (
                serde_json::json!({"replicas": 3, "ringSize": 128}),
                Some(64),
                "RingSizeImmutable",
            ),
            (
                serde_json::json!({"replicas": 3, "nVal": 0}),
                None,
                "InvalidNVal",
            ),
            (
                serde_json::json!({"replicas": 3, "writeQuorum": 4}),
                None,
                "InvalidWriteQuorum",
            ),
            (
                serde_json::json!({"replicas": 3, "handoffConcurrency": 0}),
                None,
                "InvalidHandoffConcurrency",
            ),
            (
                serde_json::json!({"replicas": 3, "imagePullPolicy": "Sometimes"}),
                None,
                "InvalidImagePullPolicy",
            ),
            (
                serde_json::json!({"replicas": 3, "storage": {"size": "lots"}}),
                None,
                "InvalidStorageSize",
            ),
        ];
        for (v, rec, reason) in cases {
            let s: FlavioClusterSpec = serde_json::from_value(v.clone()).expect("parses");
            let rec = Recorded {
                ring_size: rec,
                storage: None,
            };
            let got = validate(&s, &rec).expect_err(&format!("{v} must be refused"));
            assert_eq!(got.reason, reason, "{v}");
        }
        // A multiple of 3 for three zones is a valid size.
        let s: FlavioClusterSpec =
            serde_json::from_value(serde_json::json!({"replicas": 6, "ringSize": 48}))
                .expect("parses");
        assert_eq!(validate(&s, &Recorded::default()), Ok(()));
        let s: FlavioClusterSpec =
            serde_json::from_value(serde_json::json!({"replicas": 3, "ringSize": 128}))
                .expect("parses");
        let rec = Recorded {
            ring_size: Some(128),
            storage: Some(("1Gi".into(), None)),
        };
        assert_eq!(validate(&s, &rec), Ok(()));
    }
}
