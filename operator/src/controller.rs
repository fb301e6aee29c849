//! The kube-rs shell around [`crate::decide`]: observe (StatefulSet, pods,
//! PVCs, the ring through one member), decide, then act (server-side apply of
//! the children, status, at most one membership action, PVC deletions,
//! events). Shaped like kube-rs's controller-rs: `reconcile` beside
//! `error_policy`, a [`Context`], and a finalizer that runs the PVC policy on
//! deletion.
//!
//! Status (with the intent) is written *before* the membership action, so a
//! crash right after a commit still finds its intent recorded. What it leaves
//! out: admission webhooks (validation happens in the decision).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flavio_node::rpc::auth::CookieSet;
use flavio_node::rpc::pki::{Authority, Issued};
use flavio_node::rpc::tls::ClientTls;
use flavio_node::rpc::{Cookie, Credentials};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::children;
use crate::crd::TlsMode;
use crate::crd::{
    APPROVE_ANNOTATION, Condition, FINALIZER, FlavioCluster, FlavioClusterStatus, Retention,
};
use crate::decide::{self, Action, Cond, Decision, Naming, PodView};
use crate::metrics::Metrics;
use crate::ring;
use crate::{Error, MANAGER, Result};

/// Shared state of the reconciler.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Whether the API server serves `policy/v1` (PodDisruptionBudget).
    pub pdb_v1: bool,
    /// Clusters already warned about the missing PDB API (warn once).
    pdb_warned: Mutex<HashSet<String>>,
}

impl Context {
    /// A context; `pdb_v1` comes from [`has_policy_v1`].
    pub fn new(client: Client, metrics: Arc<Metrics>, pdb_v1: bool) -> Context {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Context {
            client,
            recorder,
            metrics,
            pdb_v1,
            pdb_warned: Mutex::new(HashSet::new()),
        }
    }
}

/// Asks discovery whether `policy/v1` exists (Kubernetes 1.21+).
pub async fn has_policy_v1(client: &Client) -> bool {
    client.list_api_group_resources("policy/v1").await.is_ok()
}

/// Runs the controller until a shutdown signal; `namespace` limits it to one.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    fn api<K>(c: &Client, ns: &Option<String>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(c.clone(), ns),
            None => Api::all(c.clone()),
        }
    }
    let c = &ctx.client;
    let pods_cfg = watcher::Config::default().labels("app.kubernetes.io/name=flavio");
    Controller::new(
        api::<FlavioCluster>(c, &namespace),
        watcher::Config::default(),
    )
    .owns(
        api::<StatefulSet>(c, &namespace),
        watcher::Config::default(),
    )
    .owns(api::<Service>(c, &namespace), watcher::Config::default())
    .watches(api::<Pod>(c, &namespace), pods_cfg, |pod: Pod| {
        // A pod's readiness changes what the decision sees.
        let ns = pod.namespace();
        pod.labels()
            .get("app.kubernetes.io/instance")
            .cloned()
            .zip(ns)
            .map(|(name, ns)| ObjectRef::new(&name).within(&ns))
    })
    .shutdown_on_signal()
    .run(reconcile, error_policy, ctx)
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(error = %e, "reconcile failed");
        }
    })
    .await;
}

/// One reconcile pass of a FlavioCluster.
pub async fn reconcile(fc: Arc<FlavioCluster>, ctx: Arc<Context>) -> Result<Requeue> {
    let start = Instant::now();
    let ns = fc.namespace().ok_or(Error::Missing("namespace"))?;
    let api: Api<FlavioCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let r = finalizer(&api, FINALIZER, fc, |ev| async {
        match ev {
            Finalizer::Apply(fc) => apply(&fc, &ctx).await,
            Finalizer::Cleanup(fc) => cleanup(&fc, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics.reconciled(start.elapsed());
    r
}

/// Logs, counts, and retries soon.
pub fn error_policy(fc: Arc<FlavioCluster>, err: &Error, ctx: Arc<Context>) -> Requeue {
    tracing::warn!(cluster = %fc.name_any(), error = %err, "reconcile failed");
    ctx.metrics.error(err);
    Requeue::requeue(Duration::from_secs(5))
}

async fn event(ctx: &Context, fc: &FlavioCluster, warn: bool, reason: &str, note: String) {
    event_for(ctx, fc, warn, reason, reason, note).await;
}

/// An event whose `action` says what it is about: the recorder folds events
/// of the same reason and action into one series and keeps only the first
/// note, so events that must each be read (one per node) need their own.
async fn event_for(
    ctx: &Context,
    fc: &FlavioCluster,
    warn: bool,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event {
        type_: if warn {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    // Events are best effort: a failure must not block the reconcile.
    if let Err(e) = ctx.recorder.publish(&ev, &fc.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "cannot publish event");
    }
}

fn ssa() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

/// Server-side applies `obj` (its name from its metadata).
pub async fn apply_object<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = obj.meta().name.clone().ok_or(Error::Missing("name"))?;
    let mut value = serde_json::to_value(obj).map_err(|e| Error::Serde(e.to_string()))?;
    // Server-side apply needs apiVersion and kind in the body.
    let dt = K::DynamicType::default();
    value["apiVersion"] = K::api_version(&dt).into();
    value["kind"] = K::kind(&dt).into();
    api.patch(&name, &ssa(), &Patch::Apply(value)).await?;
    Ok(())
}

/// The cluster's cookies: the desired one (the Secret users may change) and
/// the live ones pods read (see [`crate::cookie`]).
#[derive(Clone, Debug)]
pub struct CookieState {
    /// The cookie Secret's.
    pub desired: String,
    /// The live Secret's, the sent one first.
    pub live: Vec<String>,
}

/// Creates the cookie Secret (a random cookie) and the live one (the same
/// cookie) if missing; returns both.
pub async fn ensure_cookie(client: &Client, fc: &FlavioCluster) -> Result<CookieState> {
    let ns = fc.namespace().ok_or(Error::Missing("namespace"))?;
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let name = children::secret_name(fc);
    let desired = match api.get_opt(&name).await? {
        Some(s) => secret_text(&s, children::COOKIE_KEY)
            .ok_or(Error::Missing("cookie in the cluster's Secret"))?,
        None => {
            let cookie = Cookie::random();
            let secret = children::cookie_secret(fc, name, cookie.as_str())?;
            api.create(&PostParams::default(), &secret).await?;
            cookie.as_str().to_string()
        }
    };
    // A cookie users wrote must be one: refused here, before any pod sees it.
    let desired = Cookie::new(&desired)?.as_str().to_string();
    let live_name = children::live_secret_name(fc);
    let live = match api.get_opt(&live_name).await? {
        Some(s) => crate::cookie::lines(
            &secret_text(&s, children::COOKIE_KEY)
                .ok_or(Error::Missing("cookie in the live cookie Secret"))?,
        ),
        None => {
            let secret = children::cookie_secret(fc, live_name, &desired)?;
            api.create(&PostParams::default(), &secret).await?;
            vec![desired.clone()]
        }
    };
    Ok(CookieState { desired, live })
}

/// One step of a cookie rotation, when one is under way: writes the live
/// Secret once every pod holds what it says now. True while rotating.
async fn rotate_cookie(
    c: &Client,
    ctx: &Context,
    fc: &FlavioCluster,
    state: &CookieState,
    credentials: &Credentials,
    pods: &[(i32, &Pod)],
) -> Result<bool> {
    use crate::cookie::{Step, next};
    if state.live == [state.desired.clone()] {
        return Ok(false);
    }
    let expected = CookieSet::parse(&state.live.join("\n"))?.digest();
    let replicas = usize::try_from(fc.spec.replicas).unwrap_or(0);
    let mut all_hold = pods.len() >= replicas;
    for (_, p) in pods {
        let Some(addr) = pod_addr(p).filter(|_| pod_ready(p)) else {
            all_hold = false;
            continue;
        };
        match ring::cookie_digest(&addr, credentials).await {
            Ok(d) if d == expected => {}
            _ => all_hold = false,
        }
    }
    let step = next(&state.desired, &state.live, all_hold);
    if let Step::Write(lines) = &step {
        let ns = fc.namespace().ok_or(Error::Missing("namespace"))?;
        let api: Api<Secret> = Api::namespaced(c.clone(), &ns);
        let name = children::live_secret_name(fc);
        let secret = children::cookie_secret(fc, name.clone(), &(lines.join("\n") + "\n"))?;
        api.replace(&name, &PostParams::default(), &secret).await?;
        let what = match lines.as_slice() {
            [_, second] if *second == state.desired => {
                "step 1 of 3: every node accepts the new cookie, still sending the old one"
            }
            [first, _] if *first == state.desired => {
                "step 2 of 3: every node sends the new cookie, still accepting the old one"
            }
            _ => "step 3 of 3: only the new cookie is accepted",
        };
        event(ctx, fc, false, "CookieRotation", what.to_string()).await;
    }
    Ok(step != Step::Steady)
}

/// The operator-made CA's name in its certificate: one per cluster.
fn ca_name(naming: &Naming) -> String {
    format!("FlavioDB CA {}/{}", naming.namespace, naming.cluster)
}

fn secret_text(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// Seconds since the epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Makes sure the nodes' certificate exists (and, made by the operator, is
/// not near its end: renewed with a third of its life left, or at once when
/// its `flaviodb.io/not-after` annotation says it expired); returns how the
/// operator itself reaches the nodes over TLS, `None` without TLS.
pub async fn ensure_tls(
    client: &Client,
    fc: &FlavioCluster,
    naming: &Naming,
) -> Result<Option<ClientTls>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &naming.namespace);
    let server_name = Some(children::tls_server_name(naming));
    let ca_pem = match fc.spec.tls.mode {
        TlsMode::Disabled => return Ok(None),
        TlsMode::CertManager | TlsMode::Secret => {
            if fc.spec.tls.mode == TlsMode::CertManager {
                apply_certificate(client, fc, naming).await?;
            }
            let name = children::tls_secret_name(fc)
                .ok_or(Error::Missing("spec.tls.secretName (tls.mode is secret)"))?;
            let secret = api.get_opt(&name).await?.ok_or_else(|| {
                Error::Wait(format!(
                    "the TLS Secret {name} (spec.tls.secretName) does not exist yet"
                ))
            })?;
            secret_text(&secret, "ca.crt")
                .ok_or_else(|| Error::Wait(format!("the TLS Secret {name} has no ca.crt")))?
        }
        TlsMode::Operator => {
            let ca_secret = children::tls_ca_secret_name(fc);
            let ca = match api.get_opt(&ca_secret).await? {
                Some(s) => {
                    let issued = Issued {
                        cert_pem: secret_text(&s, "ca.crt")
                            .ok_or(Error::Missing("ca.crt in the CA Secret"))?,
                        key_pem: secret_text(&s, "ca.key")
                            .ok_or(Error::Missing("ca.key in the CA Secret"))?,
                    };
                    Authority::load(&ca_name(naming), issued)?
                }
                None => {
                    let ca = Authority::new(&ca_name(naming), CA_VALIDITY)?;
                    let secret = children::tls_ca_secret(fc, &ca.ca().cert_pem, &ca.ca().key_pem)?;
                    api.create(&PostParams::default(), &secret).await?;
                    ca
                }
            };
            let name = children::tls_secret_name(fc).ok_or(Error::Missing("TLS Secret name"))?;
            let days = u64::from(fc.spec.tls.certificate_days.max(1));
            let validity = std::time::Duration::from_secs(days * 86_400);
            let current = api.get_opt(&name).await?;
            let not_after = current
                .as_ref()
                .and_then(|s| s.metadata.annotations.as_ref())
                .and_then(|a| a.get(children::NOT_AFTER_ANNOTATION))
                .and_then(|v| v.parse::<u64>().ok());
            let same_ca = current
                .as_ref()
                .and_then(|s| secret_text(s, "ca.crt"))
                .is_some_and(|c| c == ca.ca().cert_pem);
            let renew_at = not_after.map(|t| t.saturating_sub(validity.as_secs() / 3));
            if !same_ca || renew_at.is_none_or(|t| unix_now() >= t) {
                let issued = ca.issue(&children::tls_names(naming), validity)?;
                let expires = unix_now() + validity.as_secs();
                let secret = children::tls_secret(
                    fc,
                    name.clone(),
                    &issued.cert_pem,
                    &issued.key_pem,
                    &ca.ca().cert_pem,
                    expires,
                )?;
                match current {
                    Some(_) => {
                        api.replace(&name, &PostParams::default(), &secret).await?;
                    }
                    None => {
                        api.create(&PostParams::default(), &secret).await?;
                    }
                }
                tracing::info!(secret = %name, days, "issued the nodes' TLS certificate");
            }
            ca.ca().cert_pem.clone()
        }
    };
    Ok(Some(
        ClientTls::from_ca_pem(ca_pem.as_bytes())?.expecting(server_name),
    ))
}

/// Creates or updates the cert-manager `Certificate` of `tls.mode:
/// certManager` (server-side apply). Without cert-manager's CRD the cluster
/// waits, saying so.
async fn apply_certificate(client: &Client, fc: &FlavioCluster, naming: &Naming) -> Result<()> {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let gvk = GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "certificates");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &naming.namespace, &ar);
    let cert = children::certificate(fc, naming)?;
    let name = children::tls_secret_name(fc).ok_or(Error::Missing("TLS Secret name"))?;
    match api.patch(&name, &ssa(), &Patch::Apply(cert)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(Error::Wait(
            "tls.mode certManager: cert-manager's Certificate kind (cert-manager.io/v1) is not \
             served here; install cert-manager, or use tls.mode operator or secret"
                .into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// How long an operator-made CA is valid (its nodes' certificates are
/// renewed far more often).
const CA_VALIDITY: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86_400);

/// Applies the Services, the StatefulSet with `replicas`, and the PDB.
pub async fn apply_children(
    ctx: &Context,
    fc: &FlavioCluster,
    naming: &Naming,
    replicas: i32,
    partition: i32,
) -> Result<()> {
    let ns = &naming.namespace;
    let c = &ctx.client;
    let svc: Api<Service> = Api::namespaced(c.clone(), ns);
    apply_object(&svc, &children::headless_service(fc, naming)?).await?;
    apply_object(&svc, &children::client_service(fc)?).await?;
    let sts: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
    apply_object(
        &sts,
        &children::statefulset(fc, naming, replicas, partition)?,
    )
    .await?;
    if ctx.pdb_v1 {
        let pdb: Api<PodDisruptionBudget> = Api::namespaced(c.clone(), ns);
        apply_object(&pdb, &children::pdb(fc)?).await?;
    } else {
        let key = format!("{ns}/{}", naming.cluster);
        let first = ctx
            .pdb_warned
            .lock()
            .map(|mut s| s.insert(key))
            .unwrap_or(false);
        if first {
            event(
                ctx,
                fc,
                true,
                "PodDisruptionBudgetUnsupported",
                "the API server has no policy/v1; no PodDisruptionBudget is created".into(),
            )
            .await;
        }
    }
    Ok(())
}

fn ordinal_of(name: &str, prefix: &str) -> Option<i32> {
    name.strip_prefix(prefix)?.parse().ok()
}

fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Why a pod's node container cannot run, when its status says: the
/// waiting reasons that do not fix themselves in a moment.
fn pod_problem(p: &Pod) -> Option<String> {
    const STUCK: [&str; 6] = [
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "RunContainerError",
    ];
    let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|c| {
        let w = c.state.as_ref()?.waiting.as_ref()?;
        let reason = w.reason.as_deref()?;
        STUCK.contains(&reason).then(|| match w.message.as_deref() {
            Some(m) if !m.is_empty() => format!("{reason}: {m}"),
            _ => reason.to_string(),
        })
    })
}

/// The StatefulSet's revisions, for the rolling restart.
fn rollout_of(sts: &StatefulSet, wanted_hash: &str) -> Option<crate::rollout::Rollout> {
    let status = sts.status.as_ref()?;
    let spec = sts.spec.as_ref()?;
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    Some(crate::rollout::Rollout {
        update_revision: status.update_revision.clone().unwrap_or_default(),
        partition,
        template_changed: children::applied_template_hash(sts) != Some(wanted_hash),
        observed: status.observed_generation.is_some()
            && status.observed_generation == sts.metadata.generation,
    })
}

/// The Kubernetes node label that names a node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The zone of each scheduled pod's Kubernetes node, by ordinal, and a
/// warning when nodes cannot be read (the operator's RBAC lacks `get
/// nodes`): then no location is set and claim ignores zones.
async fn zones_of(c: &Client, pods: &[(i32, &Pod)]) -> (Vec<(i32, String)>, Option<String>) {
    let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(c.clone());
    let mut by_node: std::collections::BTreeMap<String, Option<String>> = Default::default();
    let mut zones = Vec::new();
    for (o, p) in pods {
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        if !by_node.contains_key(&node) {
            let zone = match api.get_opt(&node).await {
                Ok(n) => n.and_then(|n| n.labels().get(ZONE_LABEL).cloned()),
                Err(e) => {
                    return (
                        Vec::new(),
                        Some(format!(
                            "cannot read Kubernetes nodes ({e}): members get no zone, and replicas may share one"
                        )),
                    );
                }
            };
            by_node.insert(node.clone(), zone);
        }
        if let Some(Some(z)) = by_node.get(&node) {
            zones.push((*o, z.clone()));
        }
    }
    (zones, None)
}

fn pod_addr(p: &Pod) -> Option<String> {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .map(|ip| format!("{ip}:{}", children::PORT))
}

async fn apply(fc: &FlavioCluster, ctx: &Context) -> Result<Requeue> {
    let naming = children::naming(fc)?;
    let ns = naming.namespace.clone();
    let c = &ctx.client;
    let status = fc.status.clone().unwrap_or_default();

    // Observe.
    let sts_api: Api<StatefulSet> = Api::namespaced(c.clone(), &ns);
    let sts = sts_api.get_opt(&naming.cluster).await?;
    let sel = children::selector_string(fc);
    let pods: Vec<Pod> = Api::<Pod>::namespaced(c.clone(), &ns)
        .list(&ListParams::default().labels(&sel))
        .await?
        .items;
    let pod_prefix = format!("{}-", naming.cluster);
    let mut by_ordinal: Vec<(i32, &Pod)> = pods
        .iter()
        .filter_map(|p| ordinal_of(&p.name_any(), &pod_prefix).map(|o| (o, p)))
        .collect();
    by_ordinal.sort_by_key(|(o, _)| *o);
    let pod_views: Vec<PodView> = by_ordinal
        .iter()
        .map(|(o, p)| PodView {
            ordinal: *o,
            ready: pod_ready(p),
            revision: p.labels().get("controller-revision-hash").cloned(),
            problem: pod_problem(p),
        })
        .collect();
    let (zones, zone_problem) = zones_of(c, &by_ordinal).await;
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), &ns);
    let pvc_prefix = format!("{}-{}-", children::DATA_VOLUME, naming.cluster);
    let pvcs: Vec<i32> = pvc_api
        .list(&ListParams::default().labels(&sel))
        .await?
        .items
        .iter()
        .filter_map(|p| ordinal_of(&p.name_any(), &pvc_prefix))
        .collect();
    let addr_of = |node: &str| -> Option<String> {
        let o = naming.ordinal(node)?;
        by_ordinal
            .iter()
            .find(|(po, p)| *po == o && pod_ready(p))
            .and_then(|(_, p)| pod_addr(p))
    };

    // What the cluster has that its spec cannot change.
    let recorded = crate::crd::Recorded {
        ring_size: status.ring_size,
        storage: sts.as_ref().and_then(children::claim_storage),
    };
    // The cookie, unless the spec is refused (then nothing is created).
    let invalid = crate::crd::validate(&fc.spec, &recorded).err();
    let cookie_state = match invalid {
        None => Some(ensure_cookie(c, fc).await?),
        Some(_) => None,
    };
    // The operator sends what every node accepts: the live Secret's first.
    let cookie = match &cookie_state {
        Some(st) => {
            let send = st.live.first().unwrap_or(&st.desired);
            let tls = match ensure_tls(c, fc, &naming).await {
                Ok(t) => t,
                // The certificate is not there yet (a Secret or cert-manager
                // to wait for): say so where users look, and look again.
                Err(Error::Wait(why)) => {
                    event(ctx, fc, true, "TlsNotReady", why).await;
                    return Ok(Requeue::requeue(Duration::from_secs(10)));
                }
                Err(e) => return Err(e),
            };
            Some(Credentials::new(Cookie::new(send)?, tls))
        }
        None => None,
    };
    let rotating = match (&cookie_state, &cookie) {
        (Some(st), Some(creds)) => rotate_cookie(c, ctx, fc, st, creds, &by_ordinal).await?,
        _ => false,
    };

    // The ring: pod 0 first (the seed, never asked to leave), then any Ready
    // pod that status names as a member. Only the ring of the cluster id
    // recorded in status counts: a member back on an empty volume answers
    // with a one-member ring of its own.
    let mut observed = None;
    if let Some(cookie) = &cookie {
        let mut sources: Vec<String> = vec![naming.node(0)];
        sources.extend(status.members.iter().map(|m| m.name.clone()));
        for node in sources {
            let Some(addr) = addr_of(&node) else { continue };
            match ring::observe(&addr, cookie).await {
                Ok(o)
                    if o.view.member(&node).is_some()
                        && status
                            .cluster_id
                            .as_ref()
                            .is_none_or(|id| *id == o.view.cluster_id) =>
                {
                    observed = Some((addr, o));
                    break;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(node, error = %e, "cannot read the ring"),
            }
        }
    }
    if let (Some((_, o)), Some(problem)) = (&mut observed, zone_problem) {
        o.warnings.push(problem);
    }
    // Members whose Ready pod answers for another cluster: lost volumes.
    let mut lost: Vec<i32> = Vec::new();
    if let (Some((source, o)), Some(cookie)) = (&observed, &cookie) {
        for (ord, p) in &by_ordinal {
            let node = naming.node(*ord);
            let Some(addr) = pod_addr(p).filter(|_| pod_ready(p)) else {
                continue;
            };
            // A joining node has not adopted the ring yet (its own cluster
            // until then): only established members can have lost a volume.
            let established = o
                .view
                .member(&node)
                .is_some_and(|m| m.state != decide::State::Joining);
            if addr == *source || !established {
                continue;
            }
            // The ring records the incarnation each member joined with: a
            // node of this cluster answering with another one runs on a
            // directory that is not this member's (swapped volumes).
            let recorded = o.view.member(&node).and_then(|m| m.incarnation.clone());
            match ring::identity(&addr, cookie).await {
                Ok((id, incarnation)) if !id.is_empty() && id != o.view.cluster_id => {
                    tracing::warn!(%node, %incarnation, "member answers for another cluster: its volume was lost");
                    lost.push(*ord);
                }
                Ok((_, incarnation))
                    if recorded
                        .as_ref()
                        .is_some_and(|r| !incarnation.is_empty() && *r != incarnation) =>
                {
                    tracing::warn!(%node, %incarnation, ?recorded, "member answers with another data directory than it joined with");
                    lost.push(*ord);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(%node, error = %e, "cannot ask the pod who it is"),
            }
        }
    }

    let wanted_hash = children::template_hash(fc, &naming)?;
    let rollout = sts.as_ref().and_then(|s| rollout_of(s, &wanted_hash));

    let now = Timestamp::now();
    let approved = fc.annotations().get(APPROVE_ANNOTATION).map(String::as_str);
    let d = decide::decide(&decide::Input {
        naming: &naming,
        spec: &fc.spec,
        status: &status,
        approved,
        sts_replicas: sts
            .as_ref()
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.replicas),
        recorded: &recorded,
        pods: &pod_views,
        pvcs: &pvcs,
        ring: observed.as_ref().map(|(_, o)| &o.view),
        lost: &lost,
        rollout: rollout.as_ref(),
        zones: &zones,
        now: now.as_second(),
    });

    // Refused spec: report, touch nothing.
    let Some(replicas) = d.sts_replicas else {
        let was = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == d.degraded.reason);
        if !was {
            event(
                ctx,
                fc,
                true,
                &d.degraded.reason,
                d.degraded.message.clone(),
            )
            .await;
        }
        write_status(
            ctx,
            fc,
            &status,
            &d,
            observed.as_ref().map(|(_, o)| o),
            &pod_views,
            now,
        )
        .await?;
        return Ok(Requeue::requeue(Duration::from_secs(60)));
    };

    apply_children(ctx, fc, &naming, replicas, d.roll.partition).await?;
    for (warn, reason, note) in &d.roll.events {
        if *reason == "RollingPod" {
            ctx.metrics.action("roll_pod");
        }
        // One series per pod and step (the note names the pod).
        let action = format!("{reason}:{}", note.split_whitespace().next().unwrap_or(""));
        event_for(ctx, fc, *warn, reason, &action, note.clone()).await;
    }
    if d.degraded.status && d.degraded.reason == "UpgradeStuck" {
        // Once per stop, not once per pass.
        let was = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == "UpgradeStuck");
        if !was {
            event(ctx, fc, true, "UpgradeStuck", d.degraded.message.clone()).await;
        }
    }
    let current = sts
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas);
    if current.is_some_and(|r| r != replicas) {
        ctx.metrics.action(if Some(replicas) > current {
            "grow"
        } else {
            "shrink"
        });
    }
    if d.degraded.status && d.degraded.reason == "TransfersStuck" {
        event(ctx, fc, true, "TransfersStuck", d.degraded.message.clone()).await;
    }
    let mut new_status = write_status(
        ctx,
        fc,
        &status,
        &d,
        observed.as_ref().map(|(_, o)| o),
        &pod_views,
        now,
    )
    .await?;

    for node in &d.removed {
        ctx.metrics.action("removed");
        event(
            ctx,
            fc,
            false,
            "MemberRemoved",
            format!("{node} left the ring"),
        )
        .await;
    }

    // The membership action.
    if let (Some((source, o)), Some(cookie)) = (&observed, &cookie) {
        let claimant = addr_of(&o.view.claimant).unwrap_or_else(|| source.clone());
        match &d.action {
            Action::Nothing => {}
            Action::Change {
                joins,
                staged_joins,
                leaves,
                locations,
                commit,
            } => {
                let joiners: Vec<(String, String)> = joins
                    .iter()
                    .map(|n| {
                        addr_of(n)
                            .map(|a| (n.clone(), a))
                            .ok_or(Error::Missing("a Ready joiner's pod IP"))
                    })
                    .collect::<Result<_>>()?;
                let plan = ring::stage_and_plan(
                    &claimant,
                    cookie,
                    &joiners,
                    staged_joins,
                    leaves,
                    locations,
                )
                .await?;
                if *commit {
                    let v = ring::commit(&claimant, cookie, &plan.id).await?;
                    let all_joins: Vec<String> =
                        joins.iter().chain(staged_joins).cloned().collect();
                    membership_events(ctx, fc, &all_joins, leaves, &plan, v).await;
                } else {
                    event(
                        ctx,
                        fc,
                        false,
                        "PlanAwaitingApproval",
                        format!(
                            "plan {}: {}; approve with kubectl annotate fc {} {APPROVE_ANNOTATION}={}",
                            plan.id,
                            plan.changes.join(", "),
                            naming.cluster,
                            plan.id
                        ),
                    )
                    .await;
                    ctx.metrics.action("plan");
                    new_status.plan = Some(plan);
                    patch_status(ctx, fc, &new_status).await?;
                }
            }
            Action::CommitPlan { id } => {
                let plan = status.plan.clone();
                match ring::commit(&claimant, cookie, id).await {
                    Ok(v) => {
                        let (joins, leaves) = split_changes(plan.as_ref());
                        let plan = plan.unwrap_or_else(|| crate::crd::PlanStatus {
                            id: id.clone(),
                            ..Default::default()
                        });
                        membership_events(ctx, fc, &joins, &leaves, &plan, v).await;
                    }
                    Err(e) => {
                        // The claimant no longer has this plan (restart, ring
                        // moved): drop it so the next pass plans again.
                        event(ctx, fc, true, "CommitFailed", e.to_string()).await;
                        new_status.plan = None;
                        patch_status(ctx, fc, &new_status).await?;
                        return Err(e);
                    }
                }
            }
            Action::ReplaceLost {
                node,
                down_first,
                partitions,
            } => {
                if *down_first {
                    // Another valid member marks it down and becomes the
                    // claimant; the next pass force-removes it there.
                    let at = o
                        .view
                        .members
                        .iter()
                        .filter(|m| m.state == decide::State::Valid && m.name != *node)
                        .find_map(|m| addr_of(&m.name))
                        .ok_or(Error::Missing(
                            "a Ready valid member to mark the claimant down",
                        ))?;
                    ring::down(&at, cookie, node).await?;
                    ctx.metrics.action("down");
                    event_for(
                        ctx,
                        fc,
                        true,
                        "ClaimantVolumeLost",
                        node,
                        format!("{node} (the claimant) came back with an empty data directory: marked it down; another member is the claimant now, and it is replaced next"),
                    )
                    .await;
                } else {
                    let v = ring::force_remove(&claimant, cookie, node).await?;
                    ctx.metrics.action("force_remove");
                    let shown: Vec<&str> = partitions.iter().take(16).map(String::as_str).collect();
                    let more = partitions.len().saturating_sub(shown.len());
                    event_for(
                        ctx,
                        fc,
                        true,
                        "VolumeLost",
                        node,
                        format!(
                            "{node} came back with an empty data directory: force-removed it (ring version {v}); its pod joins again as a new member. The counts of the {} partitions it owned were on the lost volume only: {}{}",
                            partitions.len(),
                            shown.join(", "),
                            if more > 0 { format!(" (and {more} more)") } else { String::new() }
                        ),
                    )
                    .await;
                }
            }
            Action::ClearPlan => {
                ring::clear(&claimant, cookie).await?;
                ctx.metrics.action("clear");
                event(
                    ctx,
                    fc,
                    false,
                    "PlanCleared",
                    "the published plan no longer matches the spec".into(),
                )
                .await;
            }
        }
    }

    for o in &d.delete_pvcs {
        let name = children::pvc_name(fc, *o);
        match pvc_api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                ctx.metrics.action("delete_pvc");
                event(
                    ctx,
                    fc,
                    false,
                    "PersistentVolumeClaimDeleted",
                    format!("{name} (storage.whenScaled: Delete)"),
                )
                .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }

    Ok(match d.requeue {
        decide::Requeue::Soon => Requeue::requeue(Duration::from_secs(2)),
        // A cookie rotation watches its step reach every pod.
        decide::Requeue::Idle if rotating => Requeue::requeue(Duration::from_secs(2)),
        decide::Requeue::Idle => Requeue::requeue(Duration::from_secs(60)),
    })
}

fn split_changes(plan: Option<&crate::crd::PlanStatus>) -> (Vec<String>, Vec<String>) {
    let mut joins = vec![];
    let mut leaves = vec![];
    for line in plan.map(|p| p.changes.as_slice()).unwrap_or_default() {
        if let Some(n) = line.strip_prefix("join ") {
            joins.push(n.to_string());
        } else if let Some(n) = line.strip_prefix("leave ") {
            leaves.push(n.to_string());
        }
    }
    (joins, leaves)
}

async fn membership_events(
    ctx: &Context,
    fc: &FlavioCluster,
    joins: &[String],
    leaves: &[String],
    plan: &crate::crd::PlanStatus,
    version: u64,
) {
    ctx.metrics.action("commit");
    let id = &plan.id;
    let warned = if plan.warnings.is_empty() {
        String::new()
    } else {
        format!("; the claimant warns: {}", plan.warnings.join("; "))
    };
    event_for(
        ctx,
        fc,
        !plan.warnings.is_empty(),
        "PlanCommitted",
        &format!("PlanCommitted:{id}"),
        format!(
            "plan {id} committed (ring version {version}): {}{warned}",
            plan.changes.join(", ")
        ),
    )
    .await;
    for n in joins {
        ctx.metrics.action("join");
        event_for(
            ctx,
            fc,
            false,
            "MemberJoined",
            n,
            format!("{n} joined the ring"),
        )
        .await;
    }
    for n in leaves {
        ctx.metrics.action("leave");
        event_for(
            ctx,
            fc,
            false,
            "LeaveStarted",
            n,
            format!("{n} is leaving the ring"),
        )
        .await;
    }
}

fn condition(
    old: &[Condition],
    type_: &str,
    c: &Cond,
    generation: Option<i64>,
    now: &str,
) -> Condition {
    let status = if c.status { "True" } else { "False" };
    let last = old
        .iter()
        .find(|o| o.type_ == type_ && o.status == status)
        .map(|o| o.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: c.reason.clone(),
        // 1.20's server-side apply turns an empty string into null, which the
        // schema (message: string) then refuses.
        message: if c.message.is_empty() {
            c.reason.clone()
        } else {
            c.message.clone()
        },
        last_transition_time: last,
        observed_generation: generation,
    }
}

/// The status a decision and an observation make.
pub fn status_of(
    fc: &FlavioCluster,
    old: &FlavioClusterStatus,
    d: &Decision,
    ring: Option<&ring::Observed>,
    pods: &[PodView],
    now: Timestamp,
) -> FlavioClusterStatus {
    let generation = fc.metadata.generation;
    let now_s = now.to_string();
    let valid = d.sts_replicas.is_some();
    FlavioClusterStatus {
        phase: Some(d.phase.to_string()),
        ready_replicas: i32::try_from(pods.iter().filter(|p| p.ready).count()).unwrap_or(i32::MAX),
        updated_replicas: d.roll.updated,
        selector: Some(children::selector_string(fc)),
        warnings: crate::crd::warnings(&fc.spec)
            .into_iter()
            .chain(ring.iter().flat_map(|o| o.warnings.iter().cloned()))
            .collect(),
        member_count: ring
            .map(|o| o.members.iter().filter(|m| m.state == "valid").count())
            .and_then(|n| i32::try_from(n).ok())
            .unwrap_or(old.member_count),
        members: ring
            .map(|o| o.members.clone())
            .unwrap_or_else(|| old.members.clone()),
        pending_transfers: ring
            .map(|o| u32::try_from(o.view.pending.len()).unwrap_or(u32::MAX))
            .unwrap_or(old.pending_transfers),
        ring_version: ring.map(|o| o.view.version).unwrap_or(old.ring_version),
        claimant: ring
            .map(|o| o.view.claimant.clone())
            .or_else(|| old.claimant.clone()),
        plan: d.plan.clone(),
        conditions: vec![
            condition(
                &old.conditions,
                "Available",
                &d.available,
                generation,
                &now_s,
            ),
            condition(
                &old.conditions,
                "Progressing",
                &d.progressing,
                generation,
                &now_s,
            ),
            condition(&old.conditions, "Degraded", &d.degraded, generation, &now_s),
            condition(
                &old.conditions,
                "Upgrading",
                &d.roll.upgrading,
                generation,
                &now_s,
            ),
        ],
        observed_generation: generation,
        // Recorded once, from the first ring seen.
        cluster_id: old.cluster_id.clone().or_else(|| {
            ring.map(|o| o.view.cluster_id.clone())
                .filter(|c| !c.is_empty())
        }),
        // Recorded once, from the first valid spec: later changes are refused.
        ring_size: old
            .ring_size
            .or(if valid { Some(fc.spec.ring_size) } else { None }),
        intent: d.intent.clone(),
    }
}

async fn write_status(
    ctx: &Context,
    fc: &FlavioCluster,
    old: &FlavioClusterStatus,
    d: &Decision,
    ring: Option<&ring::Observed>,
    pods: &[PodView],
    now: Timestamp,
) -> Result<FlavioClusterStatus> {
    let s = status_of(fc, old, d, ring, pods, now);
    patch_status(ctx, fc, &s).await?;
    Ok(s)
}

async fn patch_status(ctx: &Context, fc: &FlavioCluster, s: &FlavioClusterStatus) -> Result<()> {
    let ns = fc.namespace().ok_or(Error::Missing("namespace"))?;
    let api: Api<FlavioCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let body = serde_json::json!({
        "apiVersion": "flaviodb.io/v1alpha1",
        "kind": "FlavioCluster",
        "status": s,
    });
    api.patch_status(&fc.name_any(), &ssa(), &Patch::Apply(body))
        .await?;
    Ok(())
}

/// Deletion: the children go with their owner (garbage collection); the
/// PVCs have no owner and are deleted only when `storage.whenDeleted` says so.
async fn cleanup(fc: &FlavioCluster, ctx: &Context) -> Result<Requeue> {
    if fc.spec.storage.when_deleted == Retention::Delete {
        let ns = fc.namespace().ok_or(Error::Missing("namespace"))?;
        let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        // Both labels: another application's PVCs that share the instance
        // label are not ours to delete.
        let sel = children::selector_string(fc);
        let pvcs = api.list(&ListParams::default().labels(&sel)).await?;
        for p in pvcs.items {
            api.delete(&p.name_any(), &DeleteParams::default()).await?;
            ctx.metrics.action("delete_pvc");
        }
        event(
            ctx,
            fc,
            false,
            "PersistentVolumeClaimsDeleted",
            "storage.whenDeleted: Delete".into(),
        )
        .await;
    }
    Ok(Requeue::await_change())
}
