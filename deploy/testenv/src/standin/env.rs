//! What a container sees: environment, volumes as host directories, argv.
//!
//! Environment follows the kubelet: `envFrom` sources first, then `env` entries in
//! order, each plain value `$(VAR)`-expanded against what came before; `valueFrom`
//! resolves `fieldRef`, `resourceFieldRef` (as "0"/capacity), `secretKeyRef` and
//! `configMapKeyRef`. On top come `HOSTNAME`, `HOME`, `PATH` (the mapped binary's
//! directory first, so `sh -c 'flavio ...'` finds it) and the
//! `KUBERNETES_SERVICE_*` variables. Values starting with a mount path are then
//! rewritten to host paths. Secret, ConfigMap, downward API and projected volumes
//! are written when the pod starts; Secret, ConfigMap and projected ones are
//! written again every [`REFRESH_EVERY`] while it runs, changed files by a
//! rename, as the kubelet updates them (it takes up to a minute; this is
//! quicker, for tests).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use super::Config;
use crate::expand::expand;
use crate::paths::{Mount, rewrite_value};
use crate::{Error, Result};

/// Resolves a `fieldRef` path against the pod.
pub(crate) fn field_ref(pod: &Pod, ip: &str, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let key_in = |m: &Option<BTreeMap<String, String>>, prefix: &str| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(m.as_ref()?.get(key).cloned().unwrap_or_default())
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.podIPs" => Some(ip.to_string()),
        "status.hostIP" | "status.hostIPs" => Some("127.0.0.1".into()),
        p if p.starts_with("metadata.labels['") => key_in(&meta.labels, "metadata.labels['"),
        p if p.starts_with("metadata.annotations['") => {
            key_in(&meta.annotations, "metadata.annotations['")
        }
        _ => None,
    }
}

async fn get_secret(client: &Client, ns: &str, name: &str) -> Result<Option<Secret>> {
    Ok(Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?)
}

async fn get_config_map(client: &Client, ns: &str, name: &str) -> Result<Option<ConfigMap>> {
    Ok(Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?)
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    if let Some(d) = &s.string_data {
        for (k, v) in d {
            out.insert(k.clone(), v.clone().into_bytes());
        }
    }
    if let Some(d) = &s.data {
        for (k, v) in d {
            out.insert(k.clone(), v.0.clone());
        }
    }
    out
}

fn config_map_data(c: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    if let Some(d) = &c.binary_data {
        for (k, v) in d {
            out.insert(k.clone(), v.0.clone());
        }
    }
    if let Some(d) = &c.data {
        for (k, v) in d {
            out.insert(k.clone(), v.clone().into_bytes());
        }
    }
    out
}

fn config_error(msg: String) -> Error {
    Error::container("CreateContainerConfigError", msg)
}

/// Builds the container's environment (before mount rewriting).
pub(crate) async fn container_env(
    client: &Client,
    cfg: &Config,
    pod: &Pod,
    c: &Container,
    ip: &str,
    bin_dir: Option<&Path>,
) -> Result<Vec<(String, String)>> {
    let ns = pod.namespace().unwrap_or_else(|| "default".into());
    let mut vars: Vec<(String, String)> = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, k: String, v: String| {
        vars.retain(|(n, _)| *n != k);
        vars.push((k, v));
    };
    // Variables every container gets.
    let host_path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    let path = match bin_dir {
        Some(d) => format!("{}:{host_path}", d.display()),
        None => host_path,
    };
    set(&mut vars, "PATH".into(), path);
    let hostname = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .unwrap_or_else(|| pod.name_any());
    set(&mut vars, "HOSTNAME".into(), hostname);
    if let Some((host, port)) = &cfg.apiserver {
        set(&mut vars, "KUBERNETES_SERVICE_HOST".into(), host.clone());
        set(
            &mut vars,
            "KUBERNETES_SERVICE_PORT".into(),
            port.to_string(),
        );
        set(
            &mut vars,
            "KUBERNETES_SERVICE_PORT_HTTPS".into(),
            port.to_string(),
        );
    }
    for src in c.env_from.iter().flatten() {
        let prefix = src.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &src.secret_ref {
            match get_secret(client, &ns, &r.name).await? {
                Some(s) => secret_data(&s),
                None if r.optional == Some(true) => BTreeMap::new(),
                None => return Err(config_error(format!("secret {:?} not found", r.name))),
            }
        } else if let Some(r) = &src.config_map_ref {
            match get_config_map(client, &ns, &r.name).await? {
                Some(m) => config_map_data(&m),
                None if r.optional == Some(true) => BTreeMap::new(),
                None => return Err(config_error(format!("configmap {:?} not found", r.name))),
            }
        } else {
            BTreeMap::new()
        };
        for (k, v) in data {
            set(
                &mut vars,
                format!("{prefix}{k}"),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                field_ref(pod, ip, &f.field_path).ok_or_else(|| {
                    config_error(format!("unsupported fieldRef {:?}", f.field_path))
                })?
            } else if let Some(r) = &from.secret_key_ref {
                let secret = get_secret(client, &ns, &r.name).await?;
                match secret
                    .as_ref()
                    .map(secret_data)
                    .and_then(|d| d.get(&r.key).cloned())
                {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(config_error(format!(
                            "secret {:?} key {:?} not found",
                            r.name, r.key
                        )));
                    }
                }
            } else if let Some(r) = &from.config_map_key_ref {
                let cm = get_config_map(client, &ns, &r.name).await?;
                match cm
                    .as_ref()
                    .map(config_map_data)
                    .and_then(|d| d.get(&r.key).cloned())
                {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(config_error(format!(
                            "configmap {:?} key {:?} not found",
                            r.name, r.key
                        )));
                    }
                }
            } else if let Some(r) = &from.resource_field_ref {
                match r.resource.as_str() {
                    "limits.cpu" | "requests.cpu" => "2".into(),
                    "limits.memory" | "requests.memory" => (24u64 << 30).to_string(),
                    _ => "0".into(),
                }
            } else {
                String::new()
            }
        } else {
            let raw = e.value.clone().unwrap_or_default();
            let snapshot = vars.clone();
            expand(&raw, |name| {
                snapshot
                    .iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
        };
        set(&mut vars, e.name.clone(), value);
    }
    Ok(vars)
}

/// Where Kubernetes mounts a pod's service-account token, CA and namespace.
pub(crate) const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// In-cluster configuration for host processes.
///
/// Client libraries read the service-account files from the fixed path
/// [`SERVICE_ACCOUNT_DIR`], which a host process cannot have per pod (path
/// rewriting only reaches env and argv). So when the container mounts the
/// token volume (the ServiceAccount admission plugin adds it) and sets no
/// `KUBECONFIG` itself, this writes a kubeconfig into the pod directory that
/// says the same thing as the in-cluster files: the API server at
/// `KUBERNETES_SERVICE_HOST:PORT`, the mounted `ca.crt`, the mounted `token`
/// (as `tokenFile`, so a rotated token is re-read) and the pod's namespace as
/// the default. Clients that try `KUBECONFIG` before in-cluster files (kube-rs,
/// client-go, kubectl, helm) then act with the pod's service account.
pub(crate) fn in_cluster_kubeconfig(
    cfg: &Config,
    pod: &Pod,
    pod_dir: &Path,
    container: &str,
    vars: &mut Vec<(String, String)>,
    mounts: &[Mount],
) -> Result<()> {
    let Some((host, port)) = &cfg.apiserver else {
        return Ok(());
    };
    let Some(sa) = mounts.iter().find(|m| m.container == SERVICE_ACCOUNT_DIR) else {
        return Ok(());
    };
    if vars.iter().any(|(k, _)| k == "KUBECONFIG") {
        return Ok(());
    }
    let ns = pod.namespace().unwrap_or_else(|| "default".into());
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "in-cluster", "cluster": {
            "server": format!("https://{host}:{port}"),
            "certificate-authority": sa.host.join("ca.crt"),
        }}],
        "users": [{"name": "service-account", "user": {"tokenFile": sa.host.join("token")}}],
        "contexts": [{"name": "in-cluster", "context": {
            "cluster": "in-cluster", "user": "service-account", "namespace": ns,
        }}],
        "current-context": "in-cluster",
    });
    let path = pod_dir.join(format!("{container}.kubeconfig"));
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?).map_err(|e| Error::io(&path, e))?;
    vars.push(("KUBECONFIG".into(), path.display().to_string()));
    Ok(())
}

/// Rewrites env values that start with a mount path.
pub(crate) fn rewrite_env(vars: &mut [(String, String)], mounts: &[Mount]) {
    for (_, v) in vars.iter_mut() {
        *v = rewrite_value(v, mounts);
    }
}

/// Expands `$(VAR)` in command/args with `vars`, then rewrites mount paths.
pub(crate) fn expand_args(
    items: &[String],
    vars: &[(String, String)],
    mounts: &[Mount],
) -> Vec<String> {
    items
        .iter()
        .map(|a| {
            let e = expand(a, |name| {
                vars.iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            });
            rewrite_value(&e, mounts)
        })
        .collect()
}

/// Expansion for exec probes: only plain (`value:`) env entries, as the kubelet.
pub(crate) fn expand_probe(cmd: &[String], c: &Container, mounts: &[Mount]) -> Vec<String> {
    let statics: Vec<(String, String)> = c
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
        .collect();
    expand_args(cmd, &statics, mounts)
}

/// Picks the host program for argv[0].
///
/// No command: the mapped binary (the image entrypoint). A command whose base
/// name is the mapped binary's base name: the mapped binary. Otherwise an
/// absolute path as is, or a search of the container's `PATH`.
pub(crate) fn resolve_program(
    argv0: Option<&str>,
    mapped: Option<&Path>,
    vars: &[(String, String)],
) -> Result<PathBuf> {
    let not_found = |what: &str| {
        Error::container(
            "RunContainerError",
            format!("executable {what:?} not found"),
        )
    };
    let Some(argv0) = argv0 else {
        return mapped
            .map(Path::to_path_buf)
            .ok_or_else(|| not_found("<image entrypoint>"));
    };
    if let Some(m) = mapped {
        let base = Path::new(argv0).file_name();
        if base.is_some() && base == m.file_name() {
            return Ok(m.to_path_buf());
        }
    }
    if argv0.contains('/') {
        let p = PathBuf::from(argv0);
        return if p.exists() {
            Ok(p)
        } else {
            Err(not_found(argv0))
        };
    }
    let path = vars
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(argv0))
        .find(|p| p.is_file())
        .ok_or_else(|| not_found(argv0))
}

/// Writes the files that differ from what is there, each through a rename
/// (the kubelet swaps a whole directory; a reader never sees half a file
/// either way).
fn write_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    for (rel, data) in files {
        let p = dir.join(rel.trim_start_matches('/'));
        if std::fs::read(&p).is_ok_and(|old| old == *data) {
            continue;
        }
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let tmp = p.with_file_name(format!(
            ".{}.tmp",
            p.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        ));
        std::fs::write(&tmp, data).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}

/// Whether a volume's files come from API objects that may change (Secret,
/// ConfigMap, projected): those are refreshed while the pod runs.
pub(crate) fn refreshable(v: &Volume) -> bool {
    v.secret.is_some() || v.config_map.is_some() || v.projected.is_some()
}

fn select_items(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<k8s_openapi::api::core::v1::KeyToPath>>,
) -> BTreeMap<String, Vec<u8>> {
    match items {
        Some(items) if !items.is_empty() => items
            .iter()
            .filter_map(|i| data.get(&i.key).map(|d| (i.path.clone(), d.clone())))
            .collect(),
        _ => data,
    }
}

/// Marks a claim Bound, as a provisioner would; a missing claim is an error.
///
/// There are no PersistentVolumes: the claim's host directory is its volume.
async fn bind_claim(client: &Client, ns: &str, name: &str) -> Result<()> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvc = api.get_opt(name).await?.ok_or_else(|| {
        Error::container(
            "ContainerCreating",
            format!("persistentvolumeclaim {name:?} not found"),
        )
    })?;
    if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") {
        return Ok(());
    }
    let spec = pvc.spec.unwrap_or_default();
    let storage = spec
        .resources
        .and_then(|r| r.requests)
        .and_then(|r| r.get("storage").cloned())
        .map_or_else(|| "1Gi".to_string(), |q| q.0);
    let patch = serde_json::json!({"status": {
        "phase": "Bound",
        "accessModes": spec.access_modes.unwrap_or_default(),
        "capacity": {"storage": storage},
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// How often Secret, ConfigMap and projected volumes are brought up to date.
pub(crate) const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Lays out one volume on the host and returns its directory.
pub(crate) async fn prepare_volume(
    client: &Client,
    cfg: &Config,
    pod: &Pod,
    ip: &str,
    pod_dir: &Path,
    v: &Volume,
) -> Result<PathBuf> {
    let ns = pod.namespace().unwrap_or_else(|| "default".into());
    if let Some(pvc) = &v.persistent_volume_claim {
        bind_claim(client, &ns, &pvc.claim_name).await?;
        let dir = cfg.pvc_dir(&ns, &pvc.claim_name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        return Ok(dir);
    }
    if let Some(hp) = &v.host_path {
        let dir = PathBuf::from(&hp.path);
        if matches!(hp.type_.as_deref(), Some("DirectoryOrCreate")) {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        return Ok(dir);
    }
    let dir = pod_dir.join("volumes").join(&v.name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        match get_secret(client, &ns, &name).await? {
            Some(sec) => files.extend(select_items(secret_data(&sec), s.items.as_ref())),
            None if s.optional == Some(true) => {}
            None => return Err(config_error(format!("secret {name:?} not found"))),
        }
    }
    if let Some(c) = &v.config_map {
        match get_config_map(client, &ns, &c.name).await? {
            Some(cm) => files.extend(select_items(config_map_data(&cm), c.items.as_ref())),
            None if c.optional == Some(true) => {}
            None => return Err(config_error(format!("configmap {:?} not found", c.name))),
        }
    }
    if let Some(d) = &v.downward_api {
        for item in d.items.iter().flatten() {
            if let Some(f) = &item.field_ref {
                let val = field_ref(pod, ip, &f.field_path).unwrap_or_default();
                files.insert(item.path.clone(), val.into_bytes());
            }
        }
    }
    if let Some(p) = &v.projected {
        for src in p.sources.iter().flatten() {
            if let Some(s) = &src.secret
                && let Some(sec) = get_secret(client, &ns, &s.name).await?
            {
                files.extend(select_items(secret_data(&sec), s.items.as_ref()));
            }
            if let Some(c) = &src.config_map
                && let Some(cm) = get_config_map(client, &ns, &c.name).await?
            {
                files.extend(select_items(config_map_data(&cm), c.items.as_ref()));
            }
            if let Some(d) = &src.downward_api {
                for item in d.items.iter().flatten() {
                    if let Some(f) = &item.field_ref {
                        let val = field_ref(pod, ip, &f.field_path).unwrap_or_default();
                        files.insert(item.path.clone(), val.into_bytes());
                    }
                }
            }
        }
    }
    write_files(&dir, &files)?;
    Ok(dir)
}

/// The mounts of container `c`, given host dirs of the pod's volumes.
pub(crate) fn container_mounts(
    c: &Container,
    volumes: &BTreeMap<String, PathBuf>,
) -> Result<Vec<Mount>> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let base = volumes.get(&m.name).ok_or_else(|| {
            config_error(format!(
                "volumeMount {:?} names no volume of the pod",
                m.name
            ))
        })?;
        let host = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let p = base.join(sub);
                if !p.exists() {
                    std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
                }
                p
            }
            None => base.clone(),
        };
        out.push(Mount::new(&m.mount_path, host));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(path: &str) -> Vec<(String, String)> {
        vec![("PATH".to_string(), path.to_string())]
    }

    #[test]
    fn program_resolution() -> Result<()> {
        let mapped = Path::new("/opt/x/target/debug/flavio");
        // No command: the image entrypoint.
        assert_eq!(resolve_program(None, Some(mapped), &vars(""))?, mapped);
        // The entrypoint's name, bare or with an image path, is the mapped binary.
        assert_eq!(
            resolve_program(Some("flavio"), Some(mapped), &vars(""))?,
            mapped
        );
        assert_eq!(
            resolve_program(Some("/usr/local/bin/flavio"), Some(mapped), &vars(""))?,
            mapped
        );
        // Anything else comes from the container PATH or is an absolute host path.
        assert_eq!(
            resolve_program(Some("sh"), Some(mapped), &vars("/nonexistent:/bin"))?,
            PathBuf::from("/bin/sh")
        );
        assert_eq!(
            resolve_program(Some("/bin/sh"), None, &vars(""))?,
            PathBuf::from("/bin/sh")
        );
        assert!(
            resolve_program(Some("no-such-program-here"), Some(mapped), &vars("/bin")).is_err()
        );
        assert!(resolve_program(None, None, &vars("/bin")).is_err());
        Ok(())
    }

    #[test]
    fn field_refs() -> Result<()> {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "u",
                         "labels": {"a": "b"}, "annotations": {"k": "v"}},
            "spec": {"nodeName": "node", "serviceAccountName": "sa", "containers": []}
        }))?;
        let f = |p: &str| field_ref(&pod, "127.0.0.9", p);
        assert_eq!(f("metadata.name").as_deref(), Some("p"));
        assert_eq!(f("metadata.namespace").as_deref(), Some("n"));
        assert_eq!(f("metadata.uid").as_deref(), Some("u"));
        assert_eq!(f("metadata.labels['a']").as_deref(), Some("b"));
        assert_eq!(f("metadata.annotations['k']").as_deref(), Some("v"));
        assert_eq!(f("metadata.labels['zz']").as_deref(), Some(""));
        assert_eq!(f("spec.nodeName").as_deref(), Some("node"));
        assert_eq!(f("spec.serviceAccountName").as_deref(), Some("sa"));
        assert_eq!(f("status.podIP").as_deref(), Some("127.0.0.9"));
        assert_eq!(f("status.hostIP").as_deref(), Some("127.0.0.1"));
        assert_eq!(f("spec.bogus"), None);
        Ok(())
    }
}
