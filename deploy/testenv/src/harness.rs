//! Helpers for integration tests that need the Kubernetes test environment.
//!
//! [`TestEnv::get`] attaches to a running environment (the kubeconfig under
//! `$FLAVIO_TESTENV_DIR`, default `/tmp/flavio-testenv`) or starts one with
//! `deploy/testenv/testenv up` (building the control plane on first use). An
//! environment a test process started is stopped again when the last
//! [`TestEnv`] of that process is dropped, unless `FLAVIO_TESTENV_KEEP=1`.
//! When the environment can't be had, tests skip, except with
//! `FLAVIO_TESTENV=required` (CI), where [`TestEnv::get`] returns an error so the
//! test fails. `FLAVIO_TESTENV=off` skips without trying.
//!
//! Each test works in its own [`TestNamespace`], deleted (and its pods' processes
//! stopped by the stand-in) by [`TestNamespace::cleanup`] or, on panic, by `Drop`.
//! Not covered: sharing one environment between test *processes* with
//! reference counting (an environment someone else started is never stopped).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};

use crate::standin::{CONTAINER_ID_SCHEME, KILL_ANNOTATION};
use crate::{Error, Result};

/// The repository root (this crate lives in `deploy/testenv`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `testenv` script.
pub fn testenv_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testenv")
}

/// The environment's state directory.
pub fn state_dir() -> PathBuf {
    std::env::var_os("FLAVIO_TESTENV_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/flavio-testenv"))
}

/// Is the environment mandatory (`FLAVIO_TESTENV=required`)?
pub fn required() -> bool {
    std::env::var("FLAVIO_TESTENV").is_ok_and(|v| v == "required")
}

/// The cargo target directory tests were built into.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The `flavio` binary that node pods run: `FLAVIO_BIN`, else the debug
/// build in [`target_dir`].
pub fn flavio_bin() -> PathBuf {
    std::env::var_os("FLAVIO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/flavio"))
}

/// [`flavio_bin`] when it is built. When it is not: `Ok(None)` ("skip this
/// test", said on stderr), or an error under `FLAVIO_TESTENV=required`.
pub fn built_flavio_bin() -> Result<Option<PathBuf>> {
    let bin = flavio_bin();
    if bin.exists() {
        return Ok(Some(bin));
    }
    let msg = format!(
        "{} missing: cargo build -p flavio-node --bin flavio",
        bin.display()
    );
    if required() {
        return Err(Error::Unavailable(msg));
    }
    eprintln!("flavio-testenv: SKIPPING test: {msg}");
    Ok(None)
}

/// Builds a client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

async fn reachable(kubeconfig: &Path) -> bool {
    if !kubeconfig.exists() {
        return false;
    }
    let Ok(client) = client_from(kubeconfig).await else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await,
        Ok(Ok(_))
    )
}

/// Stops the environment when the last test of this process lets go of it.
#[derive(Debug)]
struct StopOnDrop;

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if std::env::var("FLAVIO_TESTENV_KEEP").is_ok_and(|v| v == "1") {
            return;
        }
        eprintln!("flavio-testenv: stopping the environment this test process started");
        let _ = std::process::Command::new("bash")
            .arg(testenv_script())
            .arg("down")
            .status();
    }
}

static STARTED: Mutex<Weak<StopOnDrop>> = Mutex::new(Weak::new());
static START_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A handle on the running test environment.
#[derive(Debug, Clone)]
pub struct TestEnv {
    kubeconfig: PathBuf,
    state_dir: PathBuf,
    _stop: Option<Arc<StopOnDrop>>,
}

impl TestEnv {
    /// Attaches to or starts the environment; `Ok(None)` means "skip this test".
    pub async fn get() -> Result<Option<TestEnv>> {
        match Self::attach_or_start().await {
            Ok(env) => Ok(Some(env)),
            Err(e) if required() => Err(e),
            Err(e) => {
                eprintln!(
                    "flavio-testenv: SKIPPING test: {e} (set FLAVIO_TESTENV=required to fail instead)"
                );
                Ok(None)
            }
        }
    }

    async fn attach_or_start() -> Result<TestEnv> {
        let state = state_dir();
        let kubeconfig = state.join("kubeconfig");
        let off = std::env::var("FLAVIO_TESTENV").is_ok_and(|v| v == "off");
        let _lock = START_LOCK.lock().await;
        let existing = STARTED.lock().ok().and_then(|w| w.upgrade());
        if reachable(&kubeconfig).await {
            return Ok(TestEnv {
                kubeconfig,
                state_dir: state,
                _stop: existing,
            });
        }
        if off && !required() {
            return Err(Error::Unavailable("FLAVIO_TESTENV=off".into()));
        }
        eprintln!(
            "flavio-testenv: starting the test environment (first run builds Kubernetes, ~10 min)"
        );
        let script = testenv_script();
        let status = tokio::process::Command::new("bash")
            .arg(&script)
            .arg("up")
            .stdout(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::inherit())
            .status()
            .await
            .map_err(|e| Error::io(&script, e))?;
        if !status.success() || !reachable(&kubeconfig).await {
            return Err(Error::Unavailable(format!(
                "`{} up` failed ({status})",
                script.display()
            )));
        }
        let stop = Arc::new(StopOnDrop);
        if let Ok(mut w) = STARTED.lock() {
            *w = Arc::downgrade(&stop);
        }
        Ok(TestEnv {
            kubeconfig,
            state_dir: state,
            _stop: Some(stop),
        })
    }

    /// A fresh client (clients are bound to the runtime that made them).
    pub async fn client(&self) -> Result<Client> {
        client_from(&self.kubeconfig).await
    }

    /// The kubeconfig, for `kubectl`/`helm` or other processes.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The environment's state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Host directory backing a PersistentVolumeClaim.
    pub fn pvc_dir(&self, namespace: &str, claim: &str) -> PathBuf {
        self.state_dir
            .join("kubelet/pvc")
            .join(namespace)
            .join(claim)
    }

    /// Where the stand-in writes container output.
    pub fn log_dir(&self) -> PathBuf {
        self.state_dir.join("kubelet/logs")
    }

    /// Output of a pod's container (all its runs), as `kubectl logs` would show;
    /// empty when there is none. The newest pod of that name comes last.
    pub fn pod_logs(&self, namespace: &str, pod: &str, container: &str) -> String {
        crate::standin::container_log_files(&self.log_dir(), namespace, pod, container)
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect::<Vec<_>>()
            .join("")
    }

    /// Creates a uniquely named namespace whose default ServiceAccount is usable.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        let client = self.client().await?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "{prefix}-{:x}{:04x}",
            std::process::id() % 0xfff,
            nanos % 0xffff
        );
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"testenv.flaviodb.io/test": "true"}}
        }))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        wait_for(
            "the namespace's default ServiceAccount token",
            Duration::from_secs(30),
            || {
                let sas = sas.clone();
                async move {
                    Ok(sas
                        .get_opt("default")
                        .await?
                        .filter(|sa| sa.secrets.as_ref().is_some_and(|s| !s.is_empty())))
                }
            },
        )
        .await?;
        Ok(TestNamespace {
            name,
            kubeconfig: self.kubeconfig.clone(),
            client,
            cleaned: false,
        })
    }
}

/// A throw-away namespace; delete it with [`TestNamespace::cleanup`].
pub struct TestNamespace {
    /// The namespace name.
    pub name: String,
    kubeconfig: PathBuf,
    client: Client,
    cleaned: bool,
}

impl TestNamespace {
    /// A client for this namespace's runtime.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// An API handle for namespaced objects in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace and waits until its pods (and so their processes) are gone.
    pub async fn cleanup(mut self) -> Result<()> {
        self.cleaned = true;
        delete_namespace(&self.client, &self.name).await
    }
}

async fn delete_namespace(client: &Client, name: &str) -> Result<()> {
    let nss: Api<Namespace> = Api::all(client.clone());
    match nss.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), name);
    let gone = wait_for(
        "pods of the test namespace to stop",
        Duration::from_secs(60),
        || {
            let pods = pods.clone();
            async move {
                Ok(pods
                    .list(&ListParams::default())
                    .await?
                    .items
                    .is_empty()
                    .then_some(()))
            }
        },
    )
    .await;
    if gone.is_err() {
        // Last resort: force-delete; the stand-in then kills the processes.
        for p in pods.list(&ListParams::default()).await?.items {
            let _ = pods
                .delete(
                    &p.name_any(),
                    &DeleteParams {
                        grace_period_seconds: Some(0),
                        ..DeleteParams::default()
                    },
                )
                .await;
        }
    }
    gone
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        // A failed test: clean up on a thread with its own runtime.
        let name = self.name.clone();
        let kubeconfig = self.kubeconfig.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok(client) = client_from(&kubeconfig).await
                        && let Err(e) = delete_namespace(&client, &name).await
                    {
                        eprintln!("flavio-testenv: cleanup of namespace {name}: {e}");
                    }
                });
            }
        })
        .join();
    }
}

/// Polls `check` every 250 ms until it yields `Some`, or fails after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Fault injection: asks the stand-in to SIGKILL the pod's container processes.
pub async fn kill_pod_process(pods: &Api<Pod>, name: &str) -> Result<()> {
    let token = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        .to_string();
    let patch = serde_json::json!({"metadata": {"annotations": {KILL_ANNOTATION: token}}});
    pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// The host pid of a container, from the stand-in's `containerID`.
pub fn container_pid(pod: &Pod, container: &str) -> Option<i32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)?
        .container_id
        .as_deref()?
        .strip_prefix(CONTAINER_ID_SCHEME)?
        .parse()
        .ok()
}

/// Is `pid` a live (non-zombie) process?
pub fn pid_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s.get(i + 2..i + 3).map(str::to_string))
        })
        .is_some_and(|state| state != "Z")
}

/// Is the pod Ready?
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The restart count of a container.
pub fn restart_count(pod: &Pod, container: &str) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == container))
        .map_or(0, |c| c.restart_count)
}

/// Waits until the named pod is Ready and returns it.
pub async fn wait_pod_ready(pods: &Api<Pod>, name: &str, timeout: Duration) -> Result<Pod> {
    wait_for(&format!("pod {name} Ready"), timeout, || async move {
        Ok(pods.get_opt(name).await?.filter(pod_ready))
    })
    .await
}

/// Waits until the named pod no longer exists.
pub async fn wait_pod_gone(pods: &Api<Pod>, name: &str, timeout: Duration) -> Result<()> {
    wait_for(&format!("pod {name} gone"), timeout, || async move {
        Ok(pods.get_opt(name).await?.is_none().then_some(()))
    })
    .await
}

/// `kubectl exec` for the test environment: runs `argv` with the environment,
/// working directory and mounts of the pod's `container` (default: its first
/// container) and returns its output; see [`crate::exec`]. Times out after
/// `timeout` (the child is killed).
pub async fn exec_in_pod(
    pods: &Api<Pod>,
    name: &str,
    container: Option<&str>,
    argv: &[&str],
    timeout: Duration,
) -> Result<std::process::Output> {
    let pod = pods.get(name).await?;
    let ns = pod.namespace().unwrap_or_else(|| "default".into());
    let uid = pod.uid().unwrap_or_default();
    let container = match container {
        Some(c) => c.to_string(),
        None => pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .map(|c| c.name.clone())
            .ok_or_else(|| Error::container("NotFound", format!("pod {name} has no container")))?,
    };
    let spec = crate::exec::read_spec(&state_dir().join("kubelet"), &ns, name, &uid, &container)?;
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let mut cmd = tokio::process::Command::from(crate::exec::command(&spec, &argv)?);
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let what = format!("exec {argv:?} in {ns}/{name}");
    match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(out) => out.map_err(|e| Error::io(argv.first().map_or("", String::as_str), e)),
        Err(_) => Err(Error::Timeout {
            what,
            secs: timeout.as_secs(),
        }),
    }
}
